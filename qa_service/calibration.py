"""Calibration sessions as pure functions: what a reviewer answers for a call, and how far reviewers
agree with each other and with the machine.

A session is a set of calls (each pinned to the scorecard version it was opened with) and a set of
reviewers. Each reviewer sends one answer sheet per call: every criterion `pass`, `fail` or `na`
(did not apply to this call) and every violation `confirm` (it was said and breaks the rule) or
`dismiss`. Nobody sees anyone's answers, nor the machine's verdicts on criteria, until the session
is revealed (every reviewer sent every call, or QA closed it). Answers are practice: they never
change a scorecard or an aggregate.

Agreement, per item (a criterion id, or a violation's rule id, over the session's calls that carry
it; docs/decisions/0017-calibration-agreement.md says why these figures):
- `percent_agreement`: the mean over calls of the share of reviewer pairs that gave the same answer
  (Fleiss' P-bar);
- `unanimous`: the share of calls where every reviewer who answered gave the same answer;
- `kappa`: Fleiss' kappa, (P-bar - P_e) / (1 - P_e) with P_e the sum of squared answer shares; with
  each call's own number of answers when a session closed early (calls with fewer than two answers
  are left out); None when every answer was the same (P_e = 1: chance explains all of it);
- against the machine: per reviewer, the share of their answers equal to the machine's verdict, and
  for the group, the share of calls whose strict-majority answer equals it (ties are counted apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SessionStatus = Literal["open", "closed"]
ItemKind = Literal["criterion", "violation"]

CRITERION_ANSWERS: tuple[str, ...] = ("pass", "fail", "na")
VIOLATION_ANSWERS: tuple[str, ...] = ("confirm", "dismiss")
MAX_NAME_CHARS = 200
MAX_CALLS = 100
MAX_REVIEWERS = 20


class CalibrationError(ValueError):
    """An answer sheet or a session that cannot be taken as it is (says what to fix)."""


@dataclass(frozen=True)
class SessionCall:
    """A call in a session, pinned to the scorecard version the session was opened with."""

    call_id: str
    scorecard_version: int
    position: int


@dataclass(frozen=True)
class Reviewer:
    """A key asked to score the session's calls (named as the key was when the session opened)."""

    key_id: str
    name: str


@dataclass(frozen=True)
class CalibrationSession:
    """A calibration session: its calls, its reviewers, whether it is still open."""

    id: str
    name: str
    status: SessionStatus
    created_by_key_id: str | None
    created_by_name: str
    created_at: datetime
    calls: tuple[SessionCall, ...]
    reviewers: tuple[Reviewer, ...]
    closed_at: datetime | None = None
    closed_by_name: str | None = None

    def reviewer(self, key_id: str) -> Reviewer | None:
        """The reviewer with this key id, if the key is one."""
        return next((r for r in self.reviewers if r.key_id == key_id), None)

    def call(self, call_id: str) -> SessionCall | None:
        """The session's entry for this call, if the call is in it."""
        return next((c for c in self.calls if c.call_id == call_id), None)


@dataclass(frozen=True)
class Sheet:
    """One reviewer's answers for one call of a session: criterion id -> pass/fail/na, violation id ->
    confirm/dismiss."""

    session_id: str
    call_id: str
    reviewer_key_id: str
    criteria: Mapping[str, str]
    violations: Mapping[str, str]
    submitted_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"call_id": self.call_id, "reviewer_key_id": self.reviewer_key_id,
                "criteria": dict(self.criteria), "violations": dict(self.violations),
                "submitted_at": self.submitted_at.isoformat()}


# -- what a reviewer is asked, and what the machine said --------------------------------------------

def questions(card: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What a reviewer answers for a scorecard, without the machine's verdicts: each criterion's id,
    title and section, and each violation's id, kind, title and what was said (a violation is the
    machine's claim to judge, so its quote is shown; its detail and the criteria's evidence are not)."""
    criteria = [{"id": str(c.get("id")), "title": c.get("title") or str(c.get("id")),
                 "section": c.get("section") or ""} for c in card.get("criteria") or []]
    violations = [{"id": str(v.get("id")), "kind": v.get("kind"), "title": v.get("title") or str(v.get("id")),
                   "speaker": v.get("speaker"), "start": v.get("start"), "end": v.get("end"),
                   "text": v.get("text") or ""} for v in card.get("violations") or []]
    return {"criteria": criteria, "violations": violations}


def machine_answers(card: Mapping[str, Any]) -> dict[tuple[ItemKind, str], str]:
    """The machine's answer to each question of a scorecard: a criterion's pass, fail or na (not
    applicable), and `confirm` for each violation it found."""
    out: dict[tuple[ItemKind, str], str] = {}
    for c in card.get("criteria") or []:
        applicable = bool(c.get("applicable", True))
        verdict = "na" if not applicable else "pass" if c.get("passed") else "fail"
        out[("criterion", str(c.get("id")))] = verdict
    for v in card.get("violations") or []:
        out[("violation", str(v.get("id")))] = "confirm"
    return out


def check_sheet(card: Mapping[str, Any], criteria: Mapping[str, str], violations: Mapping[str, str]) -> None:
    """Raise CalibrationError unless the sheet answers every criterion and violation of the scorecard,
    with an allowed answer, and nothing else."""
    asked = questions(card)
    problems: list[str] = []
    for kind, given, allowed, items in (("criterion", criteria, CRITERION_ANSWERS, asked["criteria"]),
                                        ("violation", violations, VIOLATION_ANSWERS, asked["violations"])):
        ids = [i["id"] for i in items]
        missing = [i for i in ids if i not in given]
        unknown = sorted(set(given) - set(ids))
        if missing:
            problems.append(f"no answer for {kind} {', '.join(missing)}")
        if unknown:
            problems.append(f"the call has no {kind} {', '.join(unknown)}")
        for item_id, answer in given.items():
            if item_id in ids and answer not in allowed:
                problems.append(f"{kind} {item_id}: answer {answer!r} is not one of {', '.join(allowed)}")
    if problems:
        raise CalibrationError("; ".join(problems))


# -- agreement --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ItemAgreement:
    """How far the reviewers agree on one item over the session's calls, and with the machine."""

    kind: str  # criterion, violation, or "all" for the figures over every item
    id: str
    title: str
    calls: int  # calls with at least two answers: those the figures among reviewers read
    answers: int
    percent_agreement: float | None
    unanimous: float | None
    kappa: float | None
    machine_agreement: float | None  # share of all answers equal to the machine's
    group_machine_agreement: float | None  # share of calls with a majority whose majority equals the machine
    no_majority: int  # calls where the reviewers' answers tied
    by_reviewer: dict[str, float | None] = field(default_factory=dict)  # key id -> share equal to machine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "id": self.id, "title": self.title, "calls": self.calls,
                "answers": self.answers, "percent_agreement": self.percent_agreement,
                "unanimous": self.unanimous, "kappa": self.kappa,
                "machine_agreement": self.machine_agreement,
                "group_machine_agreement": self.group_machine_agreement, "no_majority": self.no_majority,
                "reviewers_with_machine": self.by_reviewer}


@dataclass(frozen=True)
class Agreement:
    """A revealed session's figures: per item, over every item, and each reviewer against the machine."""

    items: list[ItemAgreement]
    overall: ItemAgreement
    reviewers: list[dict[str, Any]]  # key_id, name, answers, machine_agreement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"items": [i.to_dict() for i in self.items], "overall": self.overall.to_dict(),
                "reviewers": self.reviewers}


def fleiss(subjects: Sequence[Sequence[str]]) -> tuple[float | None, float | None, float | None, int]:
    """Percent agreement (mean pairwise, P-bar), unanimous share and Fleiss' kappa over subjects, each
    the answers given for one call; subjects with fewer than two answers are left out. Returns
    (percent, unanimous, kappa, subjects read); kappa is None when P_e is 1."""
    rated = [list(s) for s in subjects if len(s) >= 2]
    if not rated:
        return None, None, None, 0
    per_subject = []
    totals: Counter[str] = Counter()
    for answers in rated:
        counts = Counter(answers)
        n = len(answers)
        per_subject.append((sum(k * k for k in counts.values()) - n) / (n * (n - 1)))
        totals.update(counts)
    p_bar = sum(per_subject) / len(rated)
    all_answers = sum(totals.values())
    p_e = sum((k / all_answers) ** 2 for k in totals.values())
    kappa = None if p_e >= 1.0 - 1e-12 else (p_bar - p_e) / (1.0 - p_e)
    unanimous = sum(1 for s in rated if len(set(s)) == 1) / len(rated)
    return _r(p_bar), _r(unanimous), _r(kappa), len(rated)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def agreement(session: CalibrationSession, cards: Mapping[str, Mapping[str, Any]],
              sheets: Iterable[Sheet]) -> Agreement:
    """The figures of a session from the pinned scorecards (by call id) and every sheet sent."""
    names = {r.key_id: r.name for r in session.reviewers}
    # (kind, item id) -> call id -> reviewer -> answer
    grid: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    titles: dict[tuple[str, str], str] = {}
    machine: dict[tuple[str, str, str], str] = {}
    order: list[tuple[str, str]] = []
    for c in session.calls:
        card = cards.get(c.call_id)
        if card is None:
            continue
        asked = questions(card)
        for kind, asked_items in (("criterion", asked["criteria"]), ("violation", asked["violations"])):
            for item in asked_items:
                k = (kind, item["id"])
                if k not in titles:
                    titles[k] = str(item["title"])
                    order.append(k)
                grid.setdefault(k, {}).setdefault(c.call_id, {})
        for (kind, item_id), answer in machine_answers(card).items():
            machine[(c.call_id, kind, item_id)] = answer
    for s in sheets:
        if s.call_id not in cards or s.reviewer_key_id not in names:
            continue
        for kind, answers in (("criterion", s.criteria), ("violation", s.violations)):
            for item_id, answer in answers.items():
                cell = grid.get((kind, item_id), {}).get(s.call_id)
                if cell is not None:
                    cell[s.reviewer_key_id] = answer

    def figures(kind: str, item_id: str, title: str,
                cells: list[tuple[str, str, str, dict[str, str]]]) -> ItemAgreement:
        percent, unanimous, kappa, read = fleiss([list(answers.values()) for *_, answers in cells])
        hits = total = 0
        per: dict[str, list[int]] = {}
        majority_hits = majority_calls = ties = 0
        for call_id, k, i, answers in cells:
            truth = machine.get((call_id, k, i))
            if truth is None or not answers:
                continue
            for reviewer, answer in answers.items():
                same = int(answer == truth)
                hits += same
                total += 1
                tally = per.setdefault(reviewer, [0, 0])
                tally[0] += same
                tally[1] += 1
            top = Counter(answers.values()).most_common()
            if len(top) > 1 and top[0][1] == top[1][1]:
                ties += 1
                continue
            majority_calls += 1
            majority_hits += int(top[0][0] == truth)
        return ItemAgreement(
            kind=kind, id=item_id, title=title, calls=read,
            answers=sum(len(a) for *_, a in cells), percent_agreement=percent, unanimous=unanimous,
            kappa=kappa, machine_agreement=_share(hits, total),
            group_machine_agreement=_share(majority_hits, majority_calls),
            no_majority=ties,
            by_reviewer={r: _share(h, n) for r, (h, n) in per.items()})

    items: list[ItemAgreement] = []
    everything: list[tuple[str, str, str, dict[str, str]]] = []
    for kind, item_id in order:
        cells = [(call_id, kind, item_id, answers) for call_id, answers in grid[(kind, item_id)].items()]
        everything.extend(cells)
        items.append(figures(kind, item_id, titles[(kind, item_id)], cells))
    overall = figures("all", "*", "Every item", everything)
    answered: Counter[str] = Counter()
    for *_, answers in everything:
        answered.update(answers.keys())
    reviewers = [{"key_id": r.key_id, "name": r.name, "answers": answered[r.key_id],
                  "machine_agreement": overall.by_reviewer.get(r.key_id)} for r in session.reviewers]
    return Agreement(items=items, overall=overall, reviewers=reviewers)


def complete(session: CalibrationSession, sheets: Iterable[Sheet]) -> bool:
    """Whether every reviewer has sent a sheet for every call of the session."""
    sent = {(s.call_id, s.reviewer_key_id) for s in sheets}
    return all((c.call_id, r.key_id) in sent for c in session.calls for r in session.reviewers)
