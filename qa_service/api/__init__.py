"""The HTTP API: app factory (`create_app`), routes, request/response schemas, dependencies."""

from __future__ import annotations

from typing import Any

__all__ = ["app_from_env", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `python -m qa_service.api.rulecheck` does not load the web stack.
    if name in __all__:
        from qa_service.api import app

        return getattr(app, name)
    raise AttributeError(name)
