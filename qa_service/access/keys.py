"""The API key behind a request, checked against the roles a route or page allows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from qa_service.access.ratelimit import limit_rate, limit_sign_in
from qa_service.auth import presented, require_role, verify_key
from qa_service.storage.repository import StoredKey

_bearer = HTTPBearer(auto_error=False, description="An API key made with `qa-service keys create`")
# Where a handler that takes a key from a form leaves it (as `auth.Presented`) for the audit trail,
# which sees the bearer header itself but never a body.
PRESENTED_STATE = "presented_key"

# Who may do what; admin may do everything.
SUBMIT = ("qa", "telephony")
READ_CALL = ("qa", "telephony", "supervisor", "agent")
READ_SCORES = ("qa", "supervisor")
# Reads an agent's key may make too, of its own agent's calls only (the key's scope narrows them): a
# route that reads scores takes READ_SCORES unless it is meant for agents as well.
READ_OWN_SCORES = ("qa", "supervisor", "agent")
RAISE_DISPUTES = ("agent",)  # acknowledge and dispute a scorecard (the agent's own key)
RESOLVE_DISPUTES = ("qa",)
MANAGE_RULES = ("qa",)
READ_RULES = ("qa", "telephony", "supervisor")
RETRY = ("qa",)
START_RESCORE = ("qa",)
READ_RESCORES = ("qa", "supervisor")
MANAGE_CERTIFICATIONS = ("qa",)  # certifications and training records
READ_CERTIFICATIONS = ("qa", "supervisor")
MANAGE_TEAMS = ("qa",)  # agents' teams and vendors (unscoped keys only)
MANAGE_KEYS: tuple[str, ...] = ()  # no role but admin: list, create and revoke keys, read the audit log


def requires(*roles: str) -> Any:
    """A dependency that lets through keys with one of these roles (or admin): 401 / 403 / 429 otherwise."""

    def check(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> StoredKey:
        key = credentials.credentials if credentials is not None else None
        return require_role(limit_rate(request, verify_key(request.app.state.repo, key)), roles)

    return Depends(check)


def sign_in_attempt(request: Request, api_key: str) -> None:
    """Before a pasted key is checked: count the sign-in attempt against the client address (429 beyond
    QA_SIGN_IN_PER_MINUTE) and note the key's prefix for the audit trail."""
    setattr(request.state, PRESENTED_STATE, presented(api_key))
    limit_sign_in(request)
