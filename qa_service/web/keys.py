"""The keys page for admins: every API key, a form to make one (its secret shown once), revoking.

The same use cases as the keys API (`auth.issue_key`, `auth.revoke_key`, `teams.make_scope`); the
forms post with the session cookie and its form token. Every other role gets a 403 page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from qa_service.auth import issue_key, revoke_key
from qa_service.errors import InputError, NotFound
from qa_service.services.teams import make_scope
from qa_service.storage.listings import KEYS
from qa_service.storage.repository import ROLES, StoredKey
from qa_service.web.pages import page_cursor, pager_links, render, signed_form, signed_page

router = APIRouter(include_in_schema=False)

ROLE_NOTES = {
    "admin": "everything, keys included",
    "qa": "uploads, reviews, rules, rescores",
    "supervisor": "reads scorecards and reports",
    "telephony": "posts calls from the phone system",
    "agent": "one agent's own scorecards",
}


def _refused(request: Request, key: StoredKey) -> Response | None:
    if key.role == "admin":
        return None
    message = "Only an admin key lists, makes and revokes keys."
    return render(request, "message.html", {"key": key, "title": "Admins only", "message": message}, 403)


def _names(text: str) -> list[str]:
    """Team or vendor names typed into one field, split on commas."""
    return [n for n in (part.strip() for part in text.split(",")) if n]


def _page(request: Request, key: StoredKey, status: int = 200, errors: list[str] | None = None,
          **extra: object) -> Response:
    """The page of keys the query's cursor names (the first without one), with the form."""
    errors = list(errors or [])
    cursor = page_cursor(request, errors, KEYS.decode)
    keys = request.app.state.repo.key_page(cursor)
    context = {"key": key, "keys": keys.items, "pager": pager_links(request, keys, cursor), "cursor": cursor,
               "roles": ROLES, "notes": ROLE_NOTES, "errors": errors, **extra}
    return render(request, "keys.html", context, status)


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request) -> Response:
    """API keys, newest first, a page at a time, with their role, scope and prefix; the form to make one."""
    key = signed_page(request, _refused)
    return key if isinstance(key, Response) else _page(request, key)


@router.post("/keys", response_class=HTMLResponse)
async def create_key_from_page(request: Request) -> Response:
    """Make a key and show it this once (the page is not cached; the key is stored only as a hash)."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    refused = _refused(request, key)
    if refused is not None:
        return refused
    role, name = str(form.get("role") or ""), str(form.get("name") or "")
    fields = {"role": role, "name": name, "teams": str(form.get("teams") or ""),
              "vendors": str(form.get("vendors") or ""), "agent_id": str(form.get("agent_id") or "")}
    try:
        scope = make_scope(role, _names(fields["teams"]), _names(fields["vendors"]),
                           fields["agent_id"].strip() or None)
        stored, secret = await run_in_threadpool(issue_key, request.app.state.repo, role, name, scope)
    except InputError as exc:
        return _page(request, key, 422, errors=[f"Key not made: {exc}."], fields=fields)
    return _page(request, key, 201, made=stored, secret=secret)


@router.post("/keys/{key_id}/revoke")
async def revoke_from_page(request: Request, key_id: str) -> Response:
    """Revoke a key: it stops working at once, its sessions too. Back to the page of keys it was on."""
    posted = await signed_form(request)
    if isinstance(posted, Response):
        return posted
    refused = _refused(request, posted.key)
    if refused is not None:
        return refused
    try:
        await run_in_threadpool(revoke_key, request.app.state.repo, key_id)
    except NotFound:
        return render(request, "message.html", {"key": posted.key, "title": "No such key",
                                                "message": "There is no API key with this id."}, 404)
    cursor = str(posted.form.get("cursor") or "")
    back = "?" + urlencode({"cursor": cursor}) if cursor else ""
    return RedirectResponse(f"/keys{back}#key-{key_id}", status_code=303)
