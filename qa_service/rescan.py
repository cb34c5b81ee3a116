"""Rescan on publish: what a new policy pack version changes on the calls already scored.

Which calls. A policy pack's facts are read against the call's date, so two versions of a pack can
only disagree on calls dated where what they say differs. `effective_from(old, new)` is the earliest
date on which the facts of `new`, as scoring reads them on that date, differ from those of `old`:
per fact, in the pack's order, everything but its dates (topic, unit, window, phrases, ...), the
value in force on the date, the superseded values already past on the date (with their `until`),
and whether a term fact is in force yet (with its `since`). The date from which the value in force
applies is left out: a violation's detail quotes it ("it is 420 euros since 2026-08-01"), and only
that wording changes when the next version turns the value into a superseded one. A fact added or
removed, or a phrase changed, differs on every date (the effective date is then `date.min`: every
call). None: the versions agree on every date. A stored call is rescanned when it is dated on or
after the effective date of the new version against the version the call was scored with.

How. Nothing is transcribed again. The scorecard keeps, beside its redacted transcript, the token
lengths of each utterance and the numbers it says (`tokens`), so a rescan cuts the text into the same
tokens without running spaCy. A policy pack decides only a scorecard's outdated-policy items (criteria
and prohibited items read the rubric alone). `change_between` says which facts a new version changes
and, for number facts, which values are in question; a call that holds no item of a changed fact and
says no value in question is not read (`may_change`), and of the others only the utterances saying
one or holding such an item are (`utterances_to_read`). When the items the new version gives equal
the stored ones, the scorecard stands. Otherwise the call gets its new items and is totalled again by
the one rule (`patched_card`; a card the totals cannot be read from is rescored in full), stored as a
new scorecard version and counted in the impact. Calls scored before tokens were kept are tokenised
as a rescore does. docs/decisions/0014-rescan-on-publish.md has the measurements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

from qa_service.records import RulesRef, Violation, violation_fields
from qa_service.rescore import (
    TOKENS_KEY,
    CallImpact,
    ImpactReport,
    group_mentions,
    impact,
    outdated_mentions,
    readable_transcript,
    rescore_card,
    stored_lengths,
    tokenizer_name,
)

# ------------------------------------------------------------------------------ the effective date


def _fact_view(fact: Any, on: dt.date) -> Any:
    """What scoring reads of one fact on a date (see the module docstring)."""
    # What a mention costs (`outdated`) is left out: it is not a fact of a date, and a new cost applies
    # to calls scored from now on (a rescore with the pack re-costs past calls on purpose).
    if fact.kind == "term":
        static = fact.model_dump(mode="json", exclude={"since", "outdated"})
        return ("term", static, fact.since.isoformat()) if on >= fact.since else ("term", static, None)
    from qa_service.stages.score import in_force

    static = fact.model_dump(mode="json", exclude={"current", "superseded", "outdated"})
    past = tuple((o.value, o.until.isoformat()) for o in fact.superseded if o.until < on)
    # Not the date the value in force took effect: a violation's detail quotes it, but a value that
    # becomes a superseded one on a later date does not change what calls before that date said.
    return ("number", static, in_force(fact, on), past)


def _pack_view(pack: Any, on: dt.date) -> Any:
    extra = pack.model_dump(mode="json",
                            exclude={"id", "version", "title", "jurisdiction", "facts", "outdated"})
    return (extra, tuple(_fact_view(f, on) for f in pack.facts))


def _turning_dates(pack: Any) -> set[dt.date]:
    """The dates on which what a pack says may change: the day after each `until`, each `since`."""
    out: set[dt.date] = set()
    for fact in pack.facts:
        if fact.kind == "term":
            out.add(fact.since)
        else:
            out.update(o.until + dt.timedelta(days=1) for o in fact.superseded if o.until < dt.date.max)
    return out


def effective_from(old: Any, new: Any) -> dt.date | None:
    """The earliest date from which `new` says something else than `old` (`date.min`: from the start;
    None: never)."""
    for day in sorted({dt.date.min} | _turning_dates(old) | _turning_dates(new)):
        if _pack_view(old, day) != _pack_view(new, day):
            return day
    return None


# ----------------------------------------------------------------------------------- stored tokens


def token_record(card: dict[str, Any], nlp: Any) -> dict[str, Any]:
    """The token lengths of each utterance of a scorecard's redacted transcript, to keep with it.

    Lengths only: with the stored text they give back every token, and they hold no text of their own.
    """
    from qa_service.spoken import find_numbers
    from qa_service.stages.matching import token_lengths, tokenize, utterance_texts

    _, readable = readable_transcript(card)
    docs = [tokenize(nlp, text) for text in utterance_texts(readable)]
    return {"tokenizer": tokenizer_name(nlp), "lengths": [token_lengths(doc) for doc in docs],
            "numbers": [sorted({n.value for n in find_numbers([t.lower_ for t in doc])}) for doc in docs]}


def with_tokens(card: dict[str, Any], nlp: Any) -> dict[str, Any]:
    """The scorecard with its token lengths (as stored from now on)."""
    return {**card, TOKENS_KEY: token_record(card, nlp)}


# ------------------------------------------------------------------------------------- the rescan


def _policy_rows(items: Iterable[Violation], segments: Any) -> list[dict[str, Any]]:
    """Policy items as the scorecard stores them (evidence text from the stored, redacted segments)."""
    def clean(v: Violation) -> Violation:
        text = " ".join(segments[i].text for i in v.evidence.segments if i < len(segments))
        return replace(v, evidence=replace(v.evidence, text=text))

    return [violation_fields(clean(v)) for v in items]


def _stored_policy_rows(card: dict[str, Any], field: str) -> list[dict[str, Any]]:
    return [v for v in card.get(field) or [] if v.get("kind") == "outdated_policy"]


def same_policy_items(card: dict[str, Any], policies: Any, nlp: Any, change: Change | None = None) -> bool:
    """Whether the new pack gives a stored scorecard exactly its outdated-policy items (violations and
    items to check), so that its score and verdict stand as they are."""
    return new_policy_rows(card, policies, nlp, change) is None


def new_policy_rows(card: dict[str, Any], policies: Any, nlp: Any, change: Change | None = None
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The outdated-policy violations and items to check the new pack gives a stored scorecard, as
    the scorecard stores them; None when they are the ones it has.

    With the `change` from the call's pack version, a call it cannot touch is not read at all
    (`may_change`), and otherwise, where the stored numbers allow, only the utterances that say a
    number in question or hold an item of a changed fact are read (`utterances_to_read`): the items
    of the other facts are the stored ones."""
    from qa_service.stages.matching import group_segments
    from qa_service.stages.score import policy_check

    if change is not None and not may_change(card, change):
        return None
    day = dt.date.fromisoformat(card["call_date"])
    old = (_stored_policy_rows(card, "violations"), _stored_policy_rows(card, "to_check"))
    wanted = None
    if change is not None:
        light, _ = readable_transcript(card, words_of=())
        groups = group_segments(light.segments)
        wanted = utterances_to_read(card, change, light.segments, groups)
    if wanted is None:
        stored, readable = readable_transcript(card)
        outdated, to_check = policy_check(readable, policies, nlp, day, lengths=stored_lengths(card, nlp))
        rows = (_policy_rows(outdated, stored.segments), _policy_rows(to_check, stored.segments))
        return None if rows == old else rows
    assert change is not None
    segments = {k for u in wanted for k in groups[u][1]}
    stored, readable = readable_transcript(card, words_of=segments)
    outdated, to_check = policy_check(readable, policies, nlp, day, lengths=stored_lengths(card, nlp),
                                      keep=wanted.__contains__)
    # The items of changed facts can only be where a number in question is said or where they were:
    # those found there replace the stored ones; the other facts' items stand.
    new = tuple(_by_time([r for r in before if _fact_id(r) not in change.facts]
                         + [r for r in _policy_rows(found, stored.segments) if _fact_id(r) in change.facts])
                for before, found in zip(old, (outdated, to_check), strict=True))
    return None if new == tuple(_by_time(part) for part in old) else (new[0], new[1])


def _by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r.get("start") or 0.0, str(r.get("id"))))


def patched_card(card: dict[str, Any], rubric: Any, policies: Any, violations: list[dict[str, Any]],
                 to_check: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scorecard with new outdated-policy items, totalled again as scoring totals it (criteria and
    prohibited items read the rubric only, so a full rescore gives them unchanged); None when the card
    was scored with another text of the rubric, or before scorecards carried what the totals need."""
    from qa_service.totals import retotal, stored_reasons

    criteria = card.get("criteria") or []
    ref = card.get("rubric") or {}
    if (ref.get("sha256") != rubric.sha256 or card.get("pass_mark") != rubric.pass_mark
            or any("auto_fail" not in c or "doubt" not in c for c in criteria)):
        return None
    kept = [v for v in card.get("violations") or [] if v.get("kind") != "outdated_policy"]
    checks = [v for v in card.get("to_check") or [] if v.get("kind") != "outdated_policy"]
    all_violations = _by_time(kept + violations)
    totals = retotal(criteria, all_violations, pass_mark=rubric.pass_mark)
    passed = bool(totals.passed)
    reasons = [] if passed else list(stored_reasons(criteria, all_violations, pass_mark=rubric.pass_mark))
    return {
        **card,
        "rubric": asdict(RulesRef(rubric.id, rubric.version, rubric.sha256)),
        "policies": asdict(RulesRef(policies.id, policies.version, policies.sha256)),
        "violations": all_violations,
        "to_check": _by_time(checks + to_check),
        "score": round(totals.score, 2),
        "deducted_points": round(totals.deducted, 2),
        "auto_fail": totals.auto_fail,
        "passed": passed,
        "provisional": bool(reasons),
        "provisional_reasons": reasons,
        "rescored_from": {"rubric": card.get("rubric"), "policies": card.get("policies"),
                          "score": card.get("score"), "passed": card.get("passed")},
    }


# ------------------------------------------------------------------------ what a new version changes


@dataclass(frozen=True)
class Change:
    """What differs between two versions of a pack, as far as a stored call's items go.

    `facts`: the ids of the facts whose items may differ (added, removed or changed in any way).
    `values`: every value, in either version, of the number facts whose values or dates differ: a
    call says one of them (or a number that may be one misheard) or these facts give it nothing new.
    `everywhere`: a change no stored number rules out (a phrase, topic, unit or window, a fact added,
    removed or moved, a term fact, a pack-wide setting other than `outdated`): every call is read whole.
    """

    facts: frozenset[str]
    values: frozenset[float]
    everywhere: bool


def change_between(old: Any, new: Any) -> Change:
    """The Change from pack version `old` to `new`."""
    wide = {"id", "version", "title", "jurisdiction", "facts", "outdated"}
    if old.model_dump(mode="json", exclude=wide) != new.model_dump(mode="json", exclude=wide):
        return Change(frozenset(), frozenset(), everywhere=True)
    before = {f.id: f for f in old.facts}
    after = {f.id: f for f in new.facts}
    if list(before) != list(after):
        return Change(frozenset(before) | frozenset(after), frozenset(), everywhere=True)
    facts: set[str] = set(after) if old.outdated != new.outdated else set()
    values: set[float] = set()
    matching = {"title", "current", "superseded", "outdated"}
    for fid, a in before.items():
        b = after[fid]
        if a == b:
            continue
        facts.add(fid)
        if a.kind != "number" or b.kind != "number" or (
                a.model_dump(mode="json", exclude=matching) != b.model_dump(mode="json", exclude=matching)):
            return Change(frozenset(facts | set(after)), frozenset(), everywhere=True)
        if (a.current, a.superseded) != (b.current, b.superseded):
            values.update(o.value for f in (a, b) for o in (f.current, *f.superseded))
    return Change(frozenset(facts), frozenset(values), everywhere=False)


def _fact_id(row: dict[str, Any]) -> str:
    return str(row.get("policy_id") or row.get("id"))


def _stored_numbers(card: dict[str, Any]) -> list[list[float]] | None:
    record = card.get(TOKENS_KEY)
    numbers = record.get("numbers") if isinstance(record, dict) else None
    return numbers if isinstance(numbers, list) else None


@lru_cache(maxsize=65536)
def _in_question(said: float, values: frozenset[float]) -> bool:
    from qa_service.stages.score import could_be

    return said in values or any(could_be(said, v) for v in values)


def may_change(card: dict[str, Any], change: Change) -> bool:
    """Whether the new version may give the call other policy items: it holds an item of a changed
    fact, or says a number in question, or the change reaches every call (or the call's numbers were
    not kept)."""
    if change.everywhere or any(_fact_id(row) in change.facts for field in ("violations", "to_check")
                                for row in _stored_policy_rows(card, field)):
        return True
    said = _stored_numbers(card)
    return said is None or any(_in_question(n, change.values) for per in said for n in per)


def utterances_to_read(card: dict[str, Any], change: Change, segments: Sequence[Any],
                       groups: Sequence[tuple[str, list[int]]]) -> set[int] | None:
    """The utterances (by index) a call the change may touch needs read: those saying a number in
    question and those holding a stored item of a changed fact; None: all of them (the change reaches
    every call, or the call's numbers were not kept)."""
    said = _stored_numbers(card)
    if change.everywhere or said is None or len(said) != len(groups):
        return None
    wanted = {u for u, per in enumerate(said) if any(_in_question(n, change.values) for n in per)}
    for field in ("violations", "to_check"):
        for row in _stored_policy_rows(card, field):
            if _fact_id(row) not in change.facts:
                continue
            start = row.get("start")
            if not isinstance(start, int | float):
                return None
            held = {u for u, (_, idxs) in enumerate(groups)
                    if min(segments[k].start for k in idxs) - 0.05 <= start
                    <= max(segments[k].end for k in idxs) + 0.05}
            if not held:
                return None
            wanted |= held
    return wanted


def rescan_card(card: dict[str, Any], rubric: Any, policies: Any, nlp: Any,
                change: Change | None = None) -> dict[str, Any] | None:
    """The new scorecard of a stored one under a new policy pack, or None when it would not change
    (`change`: from the call's pack version, to skip what it cannot touch)."""
    rows = new_policy_rows(card, policies, nlp, change)
    if rows is None:
        return None
    return patched_card(card, rubric, policies, *rows) or rescore_card(card, rubric, policies, nlp)


def rescan(cards: Iterable[tuple[str, dict[str, Any]]], rubric_for: Callable[[dict[str, Any]], Any],
           policies: Any, nlp: Any, *,
           save: Callable[[str, dict[str, Any]], Any] | None = None,
           annotate: Callable[[dict[str, Any], Any, Any], dict[str, Any]] | None = None,
           change_for: Callable[[dict[str, Any]], Change | None] | None = None) -> ImpactReport:
    """Rescan (call id, scorecard) pairs under a new pack; `save` stores each changed scorecard,
    `annotate(card, rubric, policies)` adds what the stored records say (certification findings and
    repeats) to it, `change_for(card)` says what changed since the card's pack version.

    The report lists the calls that changed; every call scanned counts in `calls` and gives its
    outdated mentions (new or standing) to the refresher list.
    """
    report = ImpactReport()
    mentions: list[tuple[str, str, dict[str, str]]] = []
    for call_id, card in cards:
        rubric = rubric_for(card)
        new = rescan_card(card, rubric, policies, nlp, change_for(card) if change_for is not None else None)
        report.calls += 1
        if new is not None:
            if annotate is not None:
                new = annotate(new, rubric, policies)
            if save is not None:
                save(call_id, new)
            report.changes.append(impact(call_id, card, new))
        mentions.extend(outdated_mentions(call_id, new if new is not None else card))
    report.mentions = mentions
    return report


def partial(report: ImpactReport) -> dict[str, Any]:
    """A chunk's report as JSON, to merge with the other chunks of its run (`merge`)."""
    return {"calls": report.calls, "changes": [asdict(c) for c in report.changes],
            "mentions": [list(m) for m in report.mentions]}


def merge(parts: Iterable[dict[str, Any]]) -> ImpactReport:
    """One report from the partial reports of a run's chunks."""
    report = ImpactReport()
    mentions: list[tuple[str, str, dict[str, str]]] = []
    for part in parts:
        report.calls += int(part["calls"])
        report.changes += [CallImpact(**{**c, "new_violations": tuple(c["new_violations"]),
                                         "vanished_violations": tuple(c["vanished_violations"])})
                           for c in part["changes"]]
        mentions += [(a, f, dict(call)) for a, f, call in part["mentions"]]
    report.changes.sort(key=lambda c: (c.call_date, c.call_id))
    report.refresher = group_mentions(mentions)
    return report


# ------------------------------------------------------------------------------- the stored calls

# A publish rescan is a rescore run whose rubric field names the pack (each call keeps its own
# rubric): one storing rescan per pack at a time, by the rescore runs' own rule.
PUBLISH_PREFIX = "policy-pack:"


def publish_rubric_id(pack_id: str) -> str:
    """The rubric field of the rescore run that rescans the calls of a policy pack."""
    return PUBLISH_PREFIX + pack_id


def published_pack(rubric_id: str) -> str | None:
    """The policy pack id a rescore run rescans on publish, or None for an ordinary rescore run."""
    return rubric_id[len(PUBLISH_PREFIX):] if rubric_id.startswith(PUBLISH_PREFIX) else None


def effective_dates(repo: Any, policies: Any,
                    pack_version: Callable[[str], Any]) -> dict[str, dt.date | None]:
    """Per stored version of the pack other than this one, the date this one takes effect against it."""
    versions = {r.version for r in repo.list_rules("policy_pack") if r.id == policies.id} - {policies.version}
    return {v: effective_from(pack_version(v), policies) for v in sorted(versions)}


def date_spans(first: dt.date, today: dt.date, parts: int) -> list[tuple[dt.date, dt.date | None]]:
    """[first, today] cut into `parts` spans of (about) equal days, the last one open-ended (calls dated
    later still count); one span from `first` when there are fewer days than parts."""
    days = (today - first).days + 1
    if parts <= 1 or days < parts:
        return [(first, None)]
    edges = [first + dt.timedelta(days=days * i // parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1] - dt.timedelta(days=1) if i < parts - 1 else None) for i in range(parts)]


def rescan_stored(repo: Any, policies: Any, nlp: Any, *, pack_version: Callable[[str], Any],
                  rubric: Callable[[str, str], Any], store: bool = True, batch: int = 500,
                  span: tuple[dt.date, dt.date | None] | None = None) -> ImpactReport:
    """Rescan the latest scorecards of the calls scored with this pack id (another version of it),
    dated on or after the new version's effective date against that version; store changed ones.
    `span`: only the calls dated within it (a run split across workers)."""
    effective = effective_dates(repo, policies, pack_version)
    dates = [d for d in effective.values() if d is not None]
    report = ImpactReport()
    report.notes = {"effective_from": {v: None if d is None else d.isoformat() for v, d in effective.items()}}
    if not dates:
        return report
    pending: list[tuple[str, dict[str, Any]]] = []

    def save(call_id: str, card: dict[str, Any]) -> None:
        pending.append((call_id, card))
        if len(pending) >= batch:
            repo.add_scorecard_versions(pending)
            pending.clear()

    def in_scope(card: dict[str, Any]) -> bool:
        ref = card.get("policies") or {}
        since = effective.get(str(ref.get("version"))) if ref.get("id") == policies.id else None
        return since is not None and card["call_date"] >= since.isoformat()

    first, last = min(dates), None
    if span is not None:
        first, last = max(span[0], first), span[1]
    stored = repo.latest_scorecards(None if first == dt.date.min else first, last)
    cards = ((s.call_id, s.data) for s in stored if in_scope(s.data))
    from qa_service.services.certification import CertificationCheck

    changes = {v: change_between(pack_version(v), policies) for v in effective}

    def change_for(card: dict[str, Any]) -> Change | None:
        return changes.get(str((card.get("policies") or {}).get("version")))

    found = rescan(cards, lambda card: rubric(card["rubric"]["id"], card["rubric"]["version"]), policies, nlp,
                   save=save if store else None, annotate=CertificationCheck(repo).annotate,
                   change_for=change_for)
    if pending:
        repo.add_scorecard_versions(pending)
    found.refresher = group_mentions(found.mentions)
    found.notes = report.notes
    return found
