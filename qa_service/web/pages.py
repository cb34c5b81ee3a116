"""The pages people use: sign in with an API key, agents, an agent's trend, calls, one call,
certifications.

Server-rendered with Jinja2 from the same read-side views as the API; every page works without
script (a small static script only saves a reload when a criterion is clicked). Sessions are
signed cookies naming a session the database keeps, and every form carries a token (see
`session.py`); the pages accept the roles that may read scorecards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from qa_service.access.keys import READ_OWN_SCORES, READ_RESCORES, sign_in_attempt
from qa_service.access.ratelimit import limit_rate
from qa_service.access.session import (
    COOKIE_NAME,
    FORM_FIELD,
    MAX_AGE_S,
    SIGN_IN_COOKIE,
    SIGN_IN_MAX_AGE_S,
    cross_site,
    form_token,
    make_token,
    new_session_id,
    read_session,
    session_secret,
    sign_in_token,
    token_matches,
)
from qa_service.auth import verify_key
from qa_service.errors import AuthError, Forbidden, InputError, NotFound
from qa_service.rescan import published_pack
from qa_service.review import MAX_REASON_CHARS
from qa_service.services import certification as certs
from qa_service.services import teams
from qa_service.services.calls import readable_call
from qa_service.services.disputes import call_disputes, list_disputes, window_closes
from qa_service.services.exports import (
    CSV_MEDIA_TYPE,
    RangeNotSatisfiable,
    attachment,
    audio_type,
    csv_rows,
    redacted_audio,
    stored_body,
)
from qa_service.services.history import call_history
from qa_service.services.rescores import list_runs
from qa_service.services.reviews import may_review, page_review
from qa_service.stages.response import duration_words
from qa_service.storage import listings
from qa_service.storage.paging import MAX_PAGE_SIZE, Paged
from qa_service.storage.repository import CALL_STATUSES, StoredKey
from qa_service.storage.views import AGENTS, Filters, Page, decode_cursor
from qa_service.web import callview, charts

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["clock"] = callview.clock
templates.env.filters["redacted"] = callview.redacted_html
templates.env.filters["bar"] = charts.bar
templates.env.filters["wait"] = lambda s: "–" if s is None else duration_words(float(s))
templates.env.globals["rate_class"] = charts.rate_class
templates.env.globals["reason_max"] = MAX_REASON_CHARS

PAGE_SIZE = 25
AGENTS_PAGE_SIZE = 100
NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # what new_session_id makes
# Pages carry scorecards: no caching, no framing, scripts and styles from this origin only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; media-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def static_files() -> StaticFiles:
    """The stylesheet and script the pages load, served by the app itself (mount at /static)."""
    return StaticFiles(directory=str(HERE / "static"))


# -- session -----------------------------------------------------------------------------------

def signed_in(request: Request) -> StoredKey | None:
    """The API key behind the session cookie, if the session is live and the key unrevoked and allowed
    to read scorecards; the session is kept on `request.state.web_session` for the pages' forms."""
    session = read_session(session_secret(request.app.state), request.cookies.get(COOKIE_NAME))
    if session is None:
        return None
    repo = request.app.state.repo
    key: StoredKey | None = repo.key_by_hash(session.key_hash)
    if key is None or key.revoked or (key.role != "admin" and key.role not in READ_OWN_SCORES):
        return None
    if not repo.sessions.is_live(session.id, key.id):
        return None  # signed out, or expired on the server
    request.state.web_session = session
    return limit_rate(request, key)  # a session counts against its key's limit, like the key itself


def form_refused(request: Request, form: FormData, key: StoredKey) -> Response | None:
    """A 403 page when a signed-in form post came from another site or lacks its token, else None."""
    session = getattr(request.state, "web_session", None)
    if (session is not None and not cross_site(request.headers, request.url.netloc)
            and token_matches(form_token(session_secret(request.app.state), session.id),
                              form.get(FORM_FIELD))):
        return None
    return render(request, "message.html", {
        "key": key, "title": "Form refused",
        "message": "This form came from another site, or from a page older than your session: "
                   "go back, reload the page and send it again."}, 403)


@dataclass(frozen=True)
class Posted:
    """A form posted by a signed-in browser that passed the form checks."""

    key: StoredKey
    form: FormData


async def signed_form(request: Request, **form_options: Any) -> Posted | Response:
    """The signed-in key and the posted form, or the response that ends the request instead: the way to
    the sign-in page for a stranger, a 403 page for a form from another site or without its token.
    `form_options` go to Starlette's form parser (limits on an upload's parts)."""
    key = await run_in_threadpool(signed_in, request)
    if key is None:
        return to_sign_in(request)
    form = await request.form(**form_options)
    refused = form_refused(request, form, key)
    if refused is not None:
        await form.close()
        return refused
    return Posted(key, form)


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int,
                samesite: Literal["lax", "strict"]) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite=samesite,
                        secure=_secure(request), path="/")


def _secure(request: Request) -> bool:
    return bool(request.app.state.settings.secure_cookies) or request.url.scheme == "https"


def to_sign_in(request: Request) -> RedirectResponse:
    """To the sign-in page, which comes back here once signed in."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/?{urlencode({'next': target})}", status_code=303)


DEFAULT_PAGE = "/agents"


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" and "/\host" would send the browser elsewhere.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return DEFAULT_PAGE


def own_agent(key: StoredKey | None) -> str | None:
    """The agent an agent's key is bound to (None for every other key)."""
    return key.scope.agent if key is not None and key.scope is not None else None


def home(key: StoredKey) -> str:
    """Where a signed-in key starts: an agent's own page for an agent's key, the agents otherwise."""
    agent = own_agent(key)
    return f"/agents/{quote(agent, safe='')}" if agent is not None else DEFAULT_PAGE


def signed_page(request: Request,
                refuse: Callable[[Request, StoredKey], Response | None]) -> StoredKey | Response:
    """The signed-in key of a page's reader, or the response that ends the request instead: the way to
    the sign-in page for a stranger, `refuse`'s 403 page for a key the page is not for."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    refused = refuse(request, key)
    return key if refused is None else refused


def staff_only(request: Request, key: StoredKey) -> Response | None:
    """A 403 page for an agent's key on a page that lists other agents' data, else None."""
    if own_agent(key) is None:
        return None
    return render(request, "message.html", {
        "key": key, "title": "Not for an agent's key",
        "message": "This page covers other agents' calls. Your own scorecards are on your page."}, 403)


templates.env.globals["home"] = home


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A page from its template, with the form token of the session and the security headers."""
    session = getattr(request.state, "web_session", None)
    if session is not None and "csrf" not in context:
        context = {**context, "csrf": form_token(session_secret(request.app.state), session.id)}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _sign_in_form(request: Request, target: str, error: str | None = None, status: int = 200) -> Response:
    # The form's token is bound to a random value in its own cookie, kept while it is there, so two
    # sign-in tabs do not undo each other.
    nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
    if not NONCE.fullmatch(nonce):
        nonce = new_session_id()
    csrf = sign_in_token(session_secret(request.app.state), nonce)
    response = render(request, "signin.html", {"next": target, "error": error, "key": None, "csrf": csrf},
                       status)
    _set_cookie(request, response, SIGN_IN_COOKIE, nonce, SIGN_IN_MAX_AGE_S, "strict")
    return response


@router.get("/", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on to the agents when already signed in)."""
    key = signed_in(request)
    if key is not None:
        target = _safe_next(next)
        return RedirectResponse(home(key) if target == DEFAULT_PAGE else target, status_code=303)
    return _sign_in_form(request, _safe_next(next))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check a pasted API key and start a session; the key itself is not kept in the cookie."""
    form = await request.form()
    api_key = str(form.get("api_key") or "").strip()
    target = _safe_next(str(form.get("next") or ""))
    state = request.app.state
    secret = session_secret(state)
    # Every attempt counts against the client address, a refused form too.
    await run_in_threadpool(sign_in_attempt, request, api_key)
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    if (cross_site(request.headers, request.url.netloc) or not nonce
            or not token_matches(sign_in_token(secret, nonce), form.get(FORM_FIELD))):
        return _sign_in_form(request, target, "This sign-in form had expired or came from another site: "
                                              "paste the key here and sign in again.", 403)
    try:
        key = await run_in_threadpool(verify_key, state.repo, api_key)
        if key.role != "admin" and key.role not in READ_OWN_SCORES:
            raise Forbidden(f"a {key.role} key cannot view scorecards; use a supervisor, QA or agent key")
    except (AuthError, Forbidden) as exc:
        status = 403 if isinstance(exc, Forbidden) else 401
        message = str(exc) if isinstance(exc, Forbidden) else "That key is not valid (or has been revoked)."
        return _sign_in_form(request, target, message, status)
    session_id = new_session_id()  # a new one on every sign-in: a planted cookie cannot be taken over
    await run_in_threadpool(state.repo.sessions.start, session_id, key.id, MAX_AGE_S)
    response = RedirectResponse(home(key) if target == DEFAULT_PAGE else target, status_code=303)
    token = make_token(secret, key.key_hash, session_id)
    _set_cookie(request, response, COOKIE_NAME, token, MAX_AGE_S, "lax")
    response.delete_cookie(SIGN_IN_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))
    log.info("web session started for key %s (%s)", key.id, key.role)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session on the server (for every API process) and clear its cookie."""
    key = await run_in_threadpool(signed_in, request)
    if key is not None:
        refused = form_refused(request, await request.form(), key)
        if refused is not None:
            return refused
        await run_in_threadpool(request.app.state.repo.sessions.end, request.state.web_session.id)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response


# -- filters from query strings ----------------------------------------------------------------

def _filters(request: Request, errors: list[str], *, agent: bool = True) -> Filters:
    """Filters from a page's query string; bad values are reported on the page, not as JSON 422."""
    q = request.query_params

    def day(name: str) -> date | None:
        value = (q.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.append(f"'{name}' must be a date like 2026-11-02")
            return None

    date_from, date_to = day("from"), day("to")
    if date_from and date_to and date_from > date_to:
        errors.append("'from' is after 'to'")
        date_from = date_to = None
    verdict = q.get("verdict") or None
    if verdict not in (None, "pass", "fail"):
        errors.append("verdict must be pass or fail")
        verdict = None
    status = q.get("status") or None
    if status not in (None, *CALL_STATUSES):
        errors.append("unknown status")
        status = None
    return Filters(agent_id=(q.get("agent_id") or None) if agent else None, date_from=date_from,
                   date_to=date_to, rubric_id=q.get("rubric_id") or None,
                   verdict=verdict, violation=q.get("violation") or None,  # type: ignore[arg-type]
                   status=status, team=q.get("team") or None, vendor=q.get("vendor") or None)


def page_cursor(request: Request, errors: list[str],
            read: Callable[[str], object] = decode_cursor, param: str = "cursor") -> str | None:
    """The page's cursor, in query parameter `param` (None: the first page); one the listing did not give
    (`read` refuses it) is reported on the page, which then shows the first page."""
    value = request.query_params.get(param) or None
    if value is not None:
        try:
            read(value)
        except InputError as exc:
            errors.append(str(exc))
            return None
    return value


def _query(request: Request, **changes: Any) -> str:
    """The current query string with some parameters changed (for pager and filter links)."""
    params = {k: v for k, v in request.query_params.items() if v}
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = str(v)
    return "?" + urlencode(params) if params else "?"


def pager_links(request: Request, page: Page | Paged[Any], cursor: str | None,
           param: str = "cursor") -> dict[str, Any]:
    """Links to the first page (when this is not it) and to the next one (when there is one)."""
    return {"shown": len(page.items),
            "first": _query(request, **{param: None}) if cursor is not None else None,
            "next": _query(request, **{param: page.next_cursor}) if page.next_cursor else None}


# -- pages -------------------------------------------------------------------------------------

@router.get("/agents", response_class=HTMLResponse)
def agents_page(request: Request) -> Response:
    """Every agent with scored calls in a date range, with pass-rate and score bars."""
    key = signed_page(request, staff_only)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    f = _filters(request, errors, agent=False)
    cursor = page_cursor(request, errors, AGENTS.decode)
    page = request.app.state.repo.views.agents_page(teams.scoped(key, Filters(
        date_from=f.date_from, date_to=f.date_to, team=f.team, vendor=f.vendor)), cursor, AGENTS_PAGE_SIZE)
    return render(request, "agents.html", {"key": key, "errors": errors, "f": f, "agents": page.items,
                                           "pager": pager_links(request, page, cursor)})


@router.get("/agents/{agent_id}", response_class=HTMLResponse)
def agent_page(request: Request, agent_id: str) -> Response:
    """One agent: totals, weekly trend chart, pass rate per criterion and the agent's calls."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    repo = request.app.state.repo
    try:
        teams.readable_agent(repo, key, agent_id)
    except NotFound:
        return render(request, "message.html", {
            "key": key, "title": "No such agent", "message": "There is no agent with this id in your teams."},
            404)
    except Forbidden:
        return staff_only(request, key) or to_sign_in(request)
    errors: list[str] = []
    f = teams.scoped(key, _filters(request, errors, agent=False))
    views = repo.views
    cursor = page_cursor(request, errors)
    report = views.agent_report(agent_id, f, cursor, PAGE_SIZE)
    chart = charts.trend_chart([
        charts.TrendPoint(label=f"{w.week_start.day} {w.week_start:%b}", mean_score=w.mean_score,
                          pass_rate=w.pass_rate, count=w.count) for w in report.trend])
    return render(request, "agent.html", {
        "key": key, "errors": errors, "f": report.filters, "r": report, "chart": chart,
        "violations": views.violation_ids(teams.scoped(key, Filters(agent_id=agent_id))),
        "pager": pager_links(request, report.calls, cursor),
        "csv": f"/agents/{quote(agent_id, safe='')}/scorecards.csv"
               + _query(request, cursor=None).rstrip("?"),
        # Disputes are few beside calls: the page shows the agent's first (and largest) page of them.
        "disputes": list_disputes(store=repo, key=key, agent_id=agent_id, page_size=MAX_PAGE_SIZE).items,
        "own": own_agent(key) == agent_id,
    })


@router.get("/agents/{agent_id}/scorecards.csv")
def agent_csv(request: Request, agent_id: str) -> Response:
    """The agent's filtered scorecards as CSV, for a signed-in browser."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    try:
        teams.readable_agent(request.app.state.repo, key, agent_id)
    except NotFound:
        return Response("no such agent in your teams", status_code=404, media_type="text/plain")
    except Forbidden:
        return Response("an agent key reads its own scorecards only", status_code=403,
                        media_type="text/plain")
    errors: list[str] = []
    f = _filters(request, errors, agent=False)
    f = teams.scoped(key, Filters(agent_id=agent_id, date_from=f.date_from, date_to=f.date_to,
                                  rubric_id=f.rubric_id, verdict=f.verdict, violation=f.violation))
    return StreamingResponse(csv_rows(request.app.state.repo.views, f), media_type=CSV_MEDIA_TYPE,
                             headers=attachment("scorecards.csv"))


@router.get("/calls", response_class=HTMLResponse)
def calls_page(request: Request) -> Response:
    """Calls newest first, filtered by agent, dates, verdict, violation and status."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    errors: list[str] = []
    f = teams.scoped(key, _filters(request, errors))
    views = request.app.state.repo.views
    cursor = page_cursor(request, errors)
    page = views.calls(f, cursor, PAGE_SIZE)
    return render(request, "calls.html", {
        "key": key, "errors": errors, "f": f, "calls": page.items,
        "pager": pager_links(request, page, cursor),
        "agents": views.agent_ids(teams.scoped(key, Filters())),
        "violations": views.violation_ids(teams.scoped(key, Filters())), "statuses": CALL_STATUSES,
    })


@router.get("/calls/{call_id}", response_class=HTMLResponse)
def call_page(request: Request, call_id: str, c: str | None = None, v: int | None = None) -> Response:
    """One call: verdict, criteria with their evidence marked in the redacted transcript, violations,
    talk-time metrics and the redacted audio when it is kept."""
    key = signed_in(request)
    if key is None:
        return to_sign_in(request)
    repo = request.app.state.repo
    try:
        call = readable_call(repo, key, call_id)
    except NotFound:
        return render(request, "message.html", {"key": key, "title": "No such call",
                                                 "message": "There is no call with this id."}, 404)
    card = None
    if call.status == "done":
        card = repo.get_scorecard(call.id)
    view = callview.build(card.data) if card is not None else None
    audio = redacted_audio(request.app.state.inputs, call.id) is not None
    acks, disputes = call_disputes(store=repo, key=key, call_id=call.id)
    window = request.app.state.settings.dispute_window_days
    closes = window_closes(card, window) if card is not None else None
    return render(request, "call.html", {
        "key": key, "call": call, "card": card, "data": card.data if card else {}, "view": view,
        "audio": audio, "selected": c, "selected_violation": v,
        "review": page_review(store=repo, stored=card, dual=request.app.state.settings.dual_review_kinds)
        if card is not None else None,
        "can_review": may_review(key.role),
        "acks": acks, "disputes": disputes,
        "open_targets": {(d.target_kind, d.target_id) for d in disputes if d.status == "open"},
        "acknowledged": card is not None and any(a.scorecard_version == card.version for a in acks),
        "is_agent": own_agent(key) is not None,
        "can_dispute": own_agent(key) is not None and closes is not None and datetime.now(UTC) <= closes,
        "dispute_closes": closes,
        "history": call_history(store=repo, call_id=call.id) if card is not None else [],
    })


@router.get("/calls/{call_id}/audio")
def call_audio_page(request: Request, call_id: str) -> Response:
    """The redacted recording for the call page's player (session cookie instead of a bearer key)."""
    key = signed_in(request)
    if key is None:
        return Response(status_code=401)
    call = readable_call(request.app.state.repo, key, call_id)
    inputs = request.app.state.inputs
    ref = redacted_audio(inputs, call.id)
    if ref is None:
        return Response("no redacted audio is kept for this call", status_code=404, media_type="text/plain")
    try:
        body = stored_body(inputs, ref, request.headers.get("range"))
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    return StreamingResponse(body.chunks, status_code=body.status, headers=body.headers,
                             media_type=audio_type(ref))


@router.get("/certifications", response_class=HTMLResponse)
def certifications_page(request: Request) -> Response:
    """Certifications expiring soon, lapsed ones, and one agent's certifications and training."""
    key = signed_page(request, staff_only)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    value = (request.query_params.get("within_days") or "").strip()
    within = certs.DEFAULT_WITHIN_DAYS
    if value:
        if value.isdigit() and int(value) <= 3650:
            within = int(value)
        else:
            errors.append("'within_days' must be a whole number of days from 0 to 3650")
    agent_id = (request.query_params.get("agent_id") or "").strip() or None
    repo = request.app.state.repo
    today = datetime.now(UTC).date()
    agent_items = []
    training = []
    if agent_id is not None:
        agent_items = [certs.Expiring(c, (c.expires_on - today).days)
                       for c in teams.visible(repo, key, repo.certification.certifications(agent_id=agent_id),
                                              lambda c: c.agent_id)]
        training = teams.visible(repo, key, repo.certification.training(agent_id=agent_id),
                                 lambda r: r.agent_id)
    # Each list pages on its own: its cursor has its own parameter.
    soon_after = page_cursor(request, errors, listings.EXPIRING.decode, "expiring_cursor")
    expiring = certs.expiring(store=repo, today=today, within_days=within, scope=key.scope, cursor=soon_after)
    gone_after = page_cursor(request, errors, listings.LAPSED.decode, "lapsed_cursor")
    lapsed = certs.lapsed(store=repo, today=today, scope=key.scope, cursor=gone_after)
    return render(request, "certifications.html", {
        "key": key, "errors": errors, "within_days": within, "default_days": certs.DEFAULT_WITHIN_DAYS,
        "agent_id": agent_id, "agent_items": agent_items, "training": training,
        "expiring": expiring.items, "lapsed": lapsed.items,
        "expiring_pages": pager_links(request, expiring, soon_after, "expiring_cursor"),
        "lapsed_pages": pager_links(request, lapsed, gone_after, "lapsed_cursor"),
    })


@router.get("/rescores", response_class=HTMLResponse)
def rescores_page(request: Request) -> Response:
    """Rescore runs, newest first: hand-started rescores and the rescans of published policy packs."""
    key = signed_page(request, _rescores_refused)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    cursor = page_cursor(request, errors, listings.RESCORES.decode)
    runs = list_runs(store=request.app.state.repo, cursor=cursor, page_size=PAGE_SIZE)
    return render(request, "rescores.html", {
        "key": key, "errors": errors, "runs": [_run_view(r) for r in runs.items],
        "pager": pager_links(request, runs, cursor)})


@router.get("/rescores/{run_id}", response_class=HTMLResponse)
def rescore_page(request: Request, run_id: str) -> Response:
    """One run's report: what it read, the calls and agents that flip, the violations that appear or
    go, the calls that now quote outdated policy, and the refresher list."""
    key = signed_page(request, _rescores_refused)
    if isinstance(key, Response):
        return key
    repo = request.app.state.repo
    try:
        run = repo.get_rescore_run(run_id)
    except (NotFound, ValueError):
        return render(request, "message.html", {"key": key, "title": "No such rescore run",
                                                "message": "There is no rescore run with this id."}, 404)
    summary = run.summary or {}
    external = {}
    for call_id in _summary_call_ids(summary):
        try:
            external[call_id] = repo.get_call(call_id).external_id
        except NotFound:  # erased since the run
            external[call_id] = None
    return render(request, "rescore.html", {"key": key, "run": _run_view(run), "s": summary,
                                            "external": external})


def _rescores_refused(request: Request, key: StoredKey) -> Response | None:
    """A 403 page for keys that may not read rescore runs (a run covers every team's calls)."""
    if key.role not in ("admin", *READ_RESCORES) or key.scope is not None:
        return render(request, "message.html", {
            "key": key, "title": "Not for this key",
            "message": "Rescore runs cover every team's calls: an unscoped QA or supervisor key reads them."},
            403)
    return None


SHOWN_CALLS = 200  # calls listed per section of a run's page; the API has them all


def _run_view(run: Any) -> dict[str, Any]:
    """A run as the pages show it: what it rescored (a rubric, or a published policy pack) and its counts."""
    pack = published_pack(run.rubric_id)
    if pack is not None:
        what = f"policy pack {pack} {run.policy_pack_version} published"
    else:
        what = f"rubric {run.rubric_id} {run.rubric_version}"
        if run.policy_pack_id:
            what += f" with policy pack {run.policy_pack_id} {run.policy_pack_version}"
    summary = run.summary or {}
    return {"id": run.id, "status": run.status, "what": what, "rescan": pack is not None,
            "dry_run": run.dry_run, "created_at": run.created_at, "finished_at": run.finished_at,
            "requested_by": run.requested_by_name, "failure_reason": run.failure_reason,
            "calls": summary.get("calls"), "changed": len(summary.get("flipped_calls") or [])
            if summary else None, "flipped_to_fail": summary.get("flipped_to_fail"),
            "flipped_to_pass": summary.get("flipped_to_pass"),
            "now_outdated": sum(len(v) for v in (summary.get("now_outdated") or {}).values())}


def _summary_call_ids(summary: dict[str, Any]) -> list[str]:
    ids = [c["call_id"] for c in summary.get("flipped_calls") or []]
    ids += [c["call_id"] for calls in (summary.get("now_outdated") or {}).values() for c in calls]
    return list(dict.fromkeys(ids))[:SHOWN_CALLS]


@router.get("/vendors", response_class=HTMLResponse)
def vendors_page(request: Request) -> Response:
    """Vendors side by side: calls, mean score, pass rate and pass rate per criterion."""
    return _comparison_page(request, "vendor")


@router.get("/teams", response_class=HTMLResponse)
def teams_page(request: Request) -> Response:
    """Teams side by side: calls, mean score, pass rate and pass rate per criterion."""
    return _comparison_page(request, "team")


def _comparison_page(request: Request, by: teams.Group) -> Response:
    key = signed_page(request, staff_only)
    if isinstance(key, Response):
        return key
    errors: list[str] = []
    f = _filters(request, errors, agent=False)
    f = Filters(date_from=f.date_from, date_to=f.date_to, rubric_id=f.rubric_id)
    comparison = teams.compare(store=request.app.state.repo, key=key, by=by, f=f)
    return render(request, "compare.html", {"key": key, "errors": errors, "f": f, "c": comparison})
