"""A call's scorecard history: each version, what it said, and why the next one was made.

A new version comes from scoring again: by hand under changed rules (a rescore), or when a policy pack
version is published (a rescan); reviews change no version but the verdict that counts for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa_service.storage.history import Version
from qa_service.storage.repository import Repository


@dataclass(frozen=True)
class Entry:
    """One version as the call page lists it."""

    version: Version
    why: str  # why this version was made
    reviews: int  # reviews made of this version

    @property
    def said(self) -> str:
        """What the version said, e.g. "87.5 PASS under rubric visa-intake 2026.10"."""
        rubric = self.version.rubric
        verdict = "PASS" if self.version.passed else "FAIL"
        return f"{self.version.score:g} {verdict} under rubric {_rules(rubric)}"


def _rules(ref: dict[str, object]) -> str:
    return f"{ref.get('id', '?')} {ref.get('version', '?')}"


def why_made(before: Version | None, now: Version) -> str:
    """Why a version was made, from what changed since the version before it."""
    if before is None:
        return "first scoring"
    changes = []
    if _rules(before.rubric) != _rules(now.rubric) or before.rubric.get("sha256") != now.rubric.get("sha256"):
        changes.append(f"rescored under rubric {_rules(now.rubric)}")
    if _rules(before.policies) != _rules(now.policies) or \
            before.policies.get("sha256") != now.policies.get("sha256"):
        changes.append(f"rescanned for policy pack {_rules(now.policies)}")
    if changes:
        return "; ".join(changes)
    return "rescored under the same rules" if now.rescored else "scored again"


def call_history(*, store: Repository, call_id: str) -> list[Entry]:
    """The call's scorecard versions, newest first, each with why it was made and how many reviews it
    had (the caller has checked that the key reads the call)."""
    versions = store.history.versions(call_id)
    reviews: dict[int, int] = {}
    for review in store.reviews.for_call(call_id):
        reviews[review.scorecard_version] = reviews.get(review.scorecard_version, 0) + 1
    entries = [Entry(v, why_made(versions[i - 1] if i else None, v), reviews.get(v.version, 0))
               for i, v in enumerate(versions)]
    return entries[::-1]
