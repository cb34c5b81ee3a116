"""Calibration sessions: QA opens one over some calls and reviewers, each reviewer scores each call on
their own, and once every answer is in (or QA closes it) the session shows how far they agree.

- Who: a QA or admin key opens and closes sessions and may be a reviewer; reviewers are QA or admin
  keys, named by key id or by name. Supervisors read sessions (progress before the reveal, the
  figures after).
- Blind: before the reveal a reader sees only their own answers, and the questions carry none of the
  machine's verdicts on criteria (violations are the machine's claims to judge, so their quotes are
  shown). Other reviewers' answers, the machine's verdicts and the figures appear when every reviewer
  has sent every call, or when QA closes the session; then no sheet changes any more.
- Practice: answers never change a scorecard, the review queue or an aggregate.
- Scope: a session names calls of any team. A key scoped to teams or vendors opens sessions over its
  own calls only, is asked to review only when every call is inside its scope, and reads a session
  only when every call is (refused otherwise, as for a rescore run that covers other teams); the list
  leaves out the sessions it may not read.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from qa_service.calibration import (
    MAX_CALLS,
    MAX_NAME_CHARS,
    MAX_REVIEWERS,
    CalibrationError,
    CalibrationSession,
    Reviewer,
    SessionCall,
    Sheet,
    agreement,
    check_sheet,
    complete,
    machine_answers,
    questions,
)
from qa_service.errors import Forbidden, InputError, NotFound
from qa_service.services.calls import readable_call
from qa_service.services.reviews import may_review
from qa_service.services.teams import reach
from qa_service.storage import listings, paging
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, Paged
from qa_service.storage.repository import Repository, StoredCall, StoredKey

ALL_SENT = "every reviewer answered every call"


class BadCalibration(InputError):
    """A session or answer sheet that cannot be taken as sent (HTTP 422)."""


def _now() -> datetime:
    return datetime.now(UTC)


def create_session(*, store: Repository, key: StoredKey, name: str, calls: Sequence[str],
                   reviewers: Sequence[str]) -> CalibrationSession:
    """Open a session over these calls (ids; each pinned to its latest scorecard) for these reviewers
    (key ids or names); BadCalibration naming every problem, NotFound for a call the key may not read."""
    if not may_review(key.role):
        raise Forbidden("only QA reviewers open calibration sessions")
    problems: list[str] = []
    name = name.strip()
    if not name:
        problems.append("name is empty")
    elif len(name) > MAX_NAME_CHARS:
        problems.append(f"name is longer than {MAX_NAME_CHARS} characters")
    wanted = list(dict.fromkeys(c.strip() for c in calls if c.strip()))
    if not wanted:
        problems.append("name at least one call")
    elif len(wanted) > MAX_CALLS:
        problems.append(f"a session holds at most {MAX_CALLS} calls ({len(wanted)} named)")
    named = list(dict.fromkeys(r.strip() for r in reviewers if r.strip()))
    if len(named) < 2:
        problems.append("name at least two reviewers: agreement needs two")
    elif len(named) > MAX_REVIEWERS:
        problems.append(f"a session has at most {MAX_REVIEWERS} reviewers ({len(named)} named)")
    if problems:
        raise BadCalibration("; ".join(problems))
    pinned: list[SessionCall] = []
    stored_calls: list[StoredCall] = []
    for position, call_id in enumerate(wanted):
        call = readable_call(store, key, call_id)  # a scoped key opens sessions over its own calls
        if call.id in {c.call_id for c in pinned}:
            continue
        try:
            card = store.get_scorecard(call.id)
        except NotFound:
            problems.append(f"call {call_id} has no scorecard yet")
            continue
        pinned.append(SessionCall(call_id=call.id, scorecard_version=card.version, position=position))
        stored_calls.append(call)
    found = _reviewers(store, named, problems)
    for reviewer_key in found:
        inside = reach(store, reviewer_key)
        if any(not inside.call(c.agent_id, c.call_date) for c in stored_calls):
            problems.append(f"reviewer {reviewer_key.name!r} is scoped to teams or vendors that do not "
                            f"hold every call of the session")
    if problems:
        raise BadCalibration("; ".join(problems))
    session = CalibrationSession(
        id=str(uuid.uuid4()), name=name, status="open", created_by_key_id=key.id, created_by_name=key.name,
        created_at=_now(), calls=tuple(pinned),
        reviewers=tuple(Reviewer(key_id=k.id, name=k.name) for k in found))
    return store.calibration.add_session(session)


def _reviewers(store: Repository, named: Sequence[str], problems: list[str]) -> list[StoredKey]:
    """The live QA or admin keys with these ids or names, in that order (problems for the others)."""
    keys = [k for k in store.list_keys() if not k.revoked]
    found: list[StoredKey] = []
    for who in named:
        by_id = [k for k in keys if k.id == who]
        matches = by_id or [k for k in keys if k.name == who]
        if not matches:
            problems.append(f"no live API key with id or name {who!r}")
        elif len(matches) > 1:
            problems.append(f"{len(matches)} keys are named {who!r}: name the reviewer by key id")
        elif not may_review(matches[0].role):
            problems.append(f"{who!r} is a {matches[0].role} key; reviewers are QA or admin keys")
        elif matches[0].id in {k.id for k in found}:
            problems.append(f"{who!r} is named twice")
        else:
            found.append(matches[0])
    return found


def readable_session(store: Repository, key: StoredKey, session_id: str) -> CalibrationSession:
    """The session, when the key may read it: NotFound when there is none, Forbidden when the key is
    scoped and a call of the session is outside its scope."""
    session = store.calibration.get_session(session_id)
    if key.scope is not None and not _inside(store, key, session):
        raise Forbidden("this calibration session holds calls of other teams; a key scoped to teams or "
                        "vendors cannot read it")
    return session


def _inside(store: Repository, key: StoredKey, session: CalibrationSession,
            calls: Sequence[StoredCall] | None = None) -> bool:
    inside = reach(store, key)
    return all(inside.call(call.agent_id, call.call_date) for call in calls or _calls(store, session))


def _calls(store: Repository, session: CalibrationSession) -> list[StoredCall]:
    """The session's calls still stored, in its order."""
    found = []
    for c in session.calls:
        try:
            found.append(store.get_call(c.call_id))
        except NotFound:
            continue
    return found


def list_sessions(*, store: Repository, key: StoredKey, cursor: str | None = None,
                  page_size: int = DEFAULT_PAGE_SIZE) -> Paged[dict[str, Any]]:
    """One page of the sessions the key may read, newest first, each with its progress, after the session
    the cursor names; InputError for a cursor this listing did not give."""
    page_size = paging.page_size_within(page_size)
    after = listings.CALIBRATIONS.after(cursor)
    shown: list[tuple[CalibrationSession, list[StoredCall]]] = []
    # A scoped key's share is found after reading: read on in the listing's order until one more
    # session than the page has passed (or none is left), so no page is short and none repeats one.
    while len(shown) <= page_size:
        batch = store.calibration.list_sessions(after, limit=page_size + 1)
        for session in batch:
            calls = _calls(store, session)
            if key.scope is None or _inside(store, key, session, calls):
                shown.append((session, calls))
        if len(batch) <= page_size:
            break
        after = (batch[-1].created_at, batch[-1].id)
    found = listings.CALIBRATIONS.page([session for session, _ in shown], page_size)
    calls_of = {session.id: calls for session, calls in shown}
    items = [_summary(s, store.calibration.sheets(s.id), key)
             | {"external_ids": [c.external_id or c.id for c in calls_of[s.id]]} for s in found.items]
    return Paged(items=items, page_size=found.page_size, next_cursor=found.next_cursor)


def _summary(session: CalibrationSession, sheets: Sequence[Sheet], key: StoredKey) -> dict[str, Any]:
    sent: dict[str, int] = {}
    for s in sheets:
        sent[s.reviewer_key_id] = sent.get(s.reviewer_key_id, 0) + 1
    return {
        "id": session.id, "name": session.name, "status": session.status,
        "revealed": session.status == "closed",
        "created_by": session.created_by_name, "created_at": session.created_at.isoformat(),
        "closed_at": session.closed_at.isoformat() if session.closed_at else None,
        "closed_by": session.closed_by_name,
        "calls": [c.call_id for c in session.calls],
        "reviewers": [{"key_id": r.key_id, "name": r.name, "sheets": sent.get(r.key_id, 0)}
                      for r in session.reviewers],
        "you_review": session.reviewer(key.id) is not None,
        "your_sheets": sent.get(key.id, 0),
    }


def _cards(store: Repository, session: CalibrationSession) -> dict[str, dict[str, Any]]:
    """The pinned scorecard of each call still stored (retention may have dropped an earlier version:
    then the call's latest stands in)."""
    cards: dict[str, dict[str, Any]] = {}
    for c in session.calls:
        try:
            cards[c.call_id] = store.get_scorecard(c.call_id, c.scorecard_version).data
        except NotFound:
            try:
                cards[c.call_id] = store.get_scorecard(c.call_id).data
            except NotFound:
                continue
    return cards


def session_view(*, store: Repository, key: StoredKey, session_id: str,
                 with_transcripts: bool = False) -> dict[str, Any]:
    """What the key sees of a session: before the reveal its own answers and the questions alone; after
    it every answer, the machine's verdicts and the agreement figures."""
    session = readable_session(store, key, session_id)
    sheets = store.calibration.sheets(session.id)
    view = _summary(session, sheets, key)
    revealed = session.status == "closed"
    cards = _cards(store, session)
    mine = {s.call_id: s for s in sheets if s.reviewer_key_id == key.id}
    calls = []
    for c in session.calls:
        card = cards.get(c.call_id)
        if card is None:
            continue
        try:
            call = store.get_call(c.call_id)
        except NotFound:
            continue
        entry: dict[str, Any] = {
            "call_id": c.call_id, "external_id": call.external_id, "agent_id": call.agent_id,
            "call_date": call.call_date.isoformat(), "scorecard_version": c.scorecard_version,
            "questions": questions(card),
            "your_answers": mine[c.call_id].to_dict() if c.call_id in mine else None,
        }
        if with_transcripts:
            entry["transcript"] = card.get("transcript") or []
        if revealed:
            entry["machine"] = {f"{kind}:{item_id}": answer
                                for (kind, item_id), answer in machine_answers(card).items()}
            entry["answers"] = [s.to_dict() | {"reviewer": _name(session, s.reviewer_key_id)}
                                for s in sheets if s.call_id == c.call_id]
        calls.append(entry)
    view["calls_detail"] = calls
    view["agreement"] = agreement(session, cards, sheets).to_dict() if revealed else None
    return view


def _name(session: CalibrationSession, key_id: str) -> str:
    reviewer = session.reviewer(key_id)
    return reviewer.name if reviewer else key_id


def submit_sheet(*, store: Repository, key: StoredKey, session_id: str, call_id: str,
                 criteria: Mapping[str, str], violations: Mapping[str, str]) -> dict[str, Any]:
    """Store the key's answers for one call of the session (replacing its earlier ones); the last sheet
    of the last reviewer reveals the session. Forbidden for a key that is not one of its reviewers,
    Conflict once it is revealed, BadCalibration for a sheet that does not answer exactly the call's
    criteria and violations."""
    session = store.calibration.get_session(session_id)
    if session.reviewer(key.id) is None:
        raise Forbidden("you are not a reviewer of this calibration session")
    pinned = session.call(_canonical(call_id))
    if pinned is None and (by_sender := store.find_call(call_id)) is not None:
        pinned = session.call(by_sender.id)  # the call named by the id its sender gave it
    if pinned is None:
        raise NotFound(f"the calibration session has no call {call_id!r}")
    cards = _cards(store, session)
    card = cards.get(pinned.call_id)
    if card is None:
        raise NotFound(f"call {call_id!r} has no scorecard any more")
    try:
        check_sheet(card, criteria, violations)
    except CalibrationError as exc:
        raise BadCalibration(str(exc)) from None
    sheet = store.calibration.put_sheet(Sheet(
        session_id=session.id, call_id=pinned.call_id, reviewer_key_id=key.id, criteria=dict(criteria),
        violations=dict(violations), submitted_at=_now()))
    if complete(session, store.calibration.sheets(session.id)):
        store.calibration.close_session(session.id, ALL_SENT, _now())
    return sheet.to_dict()


def close_session(*, store: Repository, key: StoredKey, session_id: str) -> CalibrationSession:
    """Close a session before every answer is in (QA or admin): its answers and figures are revealed as
    they stand."""
    if not may_review(key.role):
        raise Forbidden("only QA reviewers close calibration sessions")
    session = readable_session(store, key, session_id)
    return store.calibration.close_session(session.id, key.name, _now())


def _canonical(call_id: str) -> str:
    try:
        return str(uuid.UUID(call_id))
    except ValueError:
        return call_id
