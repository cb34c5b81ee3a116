"""Speaker roles on mono recordings (placeholder: labels stay "unknown")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qa_service.records import Segment


def attribute_speakers(
    samples: np.ndarray, segments: Sequence[Segment], *, agent_phrases: Sequence[str] = ()
) -> tuple[list[Segment], dict[str, Any]]:
    """Label mono segments as agent or customer; returns the segments and how they were labelled."""
    return list(segments), {"method": "none"}
