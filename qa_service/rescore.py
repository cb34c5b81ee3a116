"""Rescore stored calls with changed rules, without re-transcribing, and report the impact.

Scoring reads the stored (redacted) transcript; personal data is gone but everything a rule reads
(phrases, fees, points, dates) is kept. Each rescored call gets a new scorecard version; earlier
versions stay. The impact report says which calls and agents flip verdict, how scores move, which
violations are new or gone, and which agents still quote outdated policy (the refresher list).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from typing import Any

from qa_service.records import RulesRef, Segment, Transcript, result_fields, word_from_row


@dataclass(frozen=True)
class CallImpact:
    """How one call's scorecard changed."""

    call_id: str
    agent_id: str
    call_date: str
    old_score: float
    new_score: float
    old_passed: bool
    new_passed: bool
    new_violations: tuple[str, ...]
    vanished_violations: tuple[str, ...]

    @property
    def flipped(self) -> bool:
        return self.old_passed != self.new_passed


@dataclass
class ImpactReport:
    """What a rescore changed, over all the calls it touched."""

    calls: int = 0
    changes: list[CallImpact] = field(default_factory=list)  # a rescan lists only the calls that changed
    refresher: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    mentions: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # a rescan chunk's
    notes: dict[str, Any] = field(default_factory=dict)  # more for the summary (a rescan's effective dates)

    @property
    def flipped(self) -> list[CallImpact]:
        return [c for c in self.changes if c.flipped]

    def summary(self) -> dict[str, Any]:
        """Counts and per-agent flips, ready for JSON."""
        deltas = [c.new_score - c.old_score for c in self.changes]
        agents: dict[str, Counter[str]] = defaultdict(Counter)
        for c in self.flipped:
            agents[c.agent_id]["to_pass" if c.new_passed else "to_fail"] += 1
        new = Counter(v for c in self.changes for v in c.new_violations)
        gone = Counter(v for c in self.changes for v in c.vanished_violations)
        return {
            "calls": self.calls,
            "score_changed": sum(1 for d in deltas if abs(d) > 1e-9),
            # Over every call: a call left out of `changes` did not change.
            "mean_score_change": round(sum(deltas) / max(self.calls, len(deltas)), 2) if deltas else 0.0,
            "flipped_to_fail": sum(1 for c in self.flipped if not c.new_passed),
            "flipped_to_pass": sum(1 for c in self.flipped if c.new_passed),
            "agents_with_flips": {a: dict(n) for a, n in sorted(agents.items())},
            "new_violations": dict(new.most_common()),
            "vanished_violations": dict(gone.most_common()),
            "flipped_calls": [asdict(c) for c in self.flipped],
            "refresher": self.refresher,
            "now_outdated": now_outdated(self.changes),
            **self.notes,
        }


def now_outdated(changes: Iterable[CallImpact]) -> dict[str, list[dict[str, str]]]:
    """Per policy fact, the calls that now state it outdated and did not before (new violations)."""
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for c in changes:
        for key in c.new_violations:
            kind, _, fact = key.partition(":")
            if kind == "outdated_policy":
                out[fact].append({"call_id": c.call_id, "agent_id": c.agent_id, "call_date": c.call_date})
    return {fact: sorted(calls, key=lambda x: (x["call_date"], x["call_id"]))
            for fact, calls in sorted(out.items())}


def transcript_from_card(card: dict[str, Any], words_of: Container[int] | None = None) -> Transcript:
    """The stored, redacted transcript of a scorecard as a Transcript record (with `words_of`, the
    word timings of those segments only: a rescan reads no other)."""
    segments = tuple(Segment(s["speaker"], float(s["start"]), float(s["end"]), s["text"],
                             words=tuple(word_from_row(w) for w in s.get("words", ()))
                             if words_of is None or k in words_of else (),
                             confidence=None if s.get("confidence") is None else float(s["confidence"]))
                     for k, s in enumerate(card.get("transcript", [])))
    models = card.get("models") or {}
    started = card.get("started_at")
    # How its times were made (measured, given, or estimated from word counts) and its channel: a
    # response-time rule reads both.
    timing = (models.get("asr") or {}).get("timing")
    return Transcript(segments=segments, duration_s=float(card.get("duration_s", 0.0)),
                      language=card.get("language", "en"), source="text",
                      model={"timing": timing} if timing else {}, channel=card.get("channel") or "call",
                      started_at=datetime.fromisoformat(started) if started else None)


# The first scoring read the words behind each placeholder; a rescore reads a word of the same shape
# in its place, so that a pattern such as "this is {IS_TITLE} speaking" still finds a name. The
# evidence quotes the stored text, placeholders and all.
STAND_INS = {"<PERSON>": "Alex"}


def rescore_card(card: dict[str, Any], rubric: Any, policies: Any, nlp: Any) -> dict[str, Any]:
    """A new scorecard for a stored one under other rules; transcript, redactions and metrics are kept."""
    # Imported here: the API reads refresher lists without spaCy.
    from qa_service.stages.score import evidence_text_from, score

    transcript, readable = readable_transcript(card)
    result = score(readable, rubric, policies, nlp, date.fromisoformat(card["call_date"]),
                   lengths=stored_lengths(card, nlp))
    result = evidence_text_from(result, transcript.segments)
    return {
        **card,
        "rubric": asdict(RulesRef(rubric.id, rubric.version, rubric.sha256)),
        "policies": asdict(RulesRef(policies.id, policies.version, policies.sha256)),
        **result_fields(result),
        "rescored_from": {"rubric": card.get("rubric"), "policies": card.get("policies"),
                          "score": card.get("score"), "passed": card.get("passed")},
    }


TOKENS_KEY = "tokens"  # the token lengths kept with a scorecard (qa_service/rescan.py)


def tokenizer_name(nlp: Any) -> str:
    """Which tokenizer cut the stored tokens: the pipeline's name and version and spaCy's version."""
    import spacy

    known = _TOKENIZER_NAMES.get(id(nlp))
    if known is not None and known[0] is nlp:
        return known[1]
    meta = getattr(nlp, "meta", {}) or {}  # spaCy builds this anew on each read: slow
    name = f"{meta.get('lang', '?')}_{meta.get('name', '?')}-{meta.get('version', '?')}"
    name += f"/spacy-{spacy.__version__}"
    _TOKENIZER_NAMES[id(nlp)] = (nlp, name)
    return name


_TOKENIZER_NAMES: dict[int, tuple[Any, str]] = {}


def stored_lengths(card: dict[str, Any], nlp: Any) -> list[list[int]] | None:
    """The stored token lengths of a scorecard, when the same tokenizer cut them (else None)."""
    record = card.get(TOKENS_KEY)
    if not isinstance(record, dict) or record.get("tokenizer") != tokenizer_name(nlp):
        return None
    lengths = record.get("lengths")
    return lengths if isinstance(lengths, list) else None


def readable_transcript(card: dict[str, Any], words_of: Container[int] | None = None
                        ) -> tuple[Transcript, Transcript]:
    """A scorecard's stored transcript, and the same with stand-ins for placeholders (what is scored)."""
    transcript = transcript_from_card(card, words_of)
    return transcript, replace(transcript, segments=tuple(_stand_ins(s) for s in transcript.segments))


def _stand_ins(segment: Segment) -> Segment:
    if "<" not in segment.text:
        return segment

    def fill(text: str) -> str:
        for placeholder, word in STAND_INS.items():
            text = text.replace(placeholder, word)
        return text

    return replace(segment, text=fill(segment.text),
                   words=tuple(replace(w, text=fill(w.text)) for w in segment.words))


def impact(call_id: str, old: dict[str, Any], new: dict[str, Any]) -> CallImpact:
    """Compare two scorecards of one call."""
    before, after = _violation_keys(old), _violation_keys(new)
    return CallImpact(
        call_id=call_id, agent_id=new["agent_id"], call_date=new["call_date"],
        old_score=float(old.get("score", 0.0)), new_score=float(new["score"]),
        old_passed=bool(old.get("passed")), new_passed=bool(new["passed"]),
        new_violations=tuple(sorted(after - before)), vanished_violations=tuple(sorted(before - after)),
    )


def _violation_keys(card: dict[str, Any]) -> set[str]:
    return {f"{v['kind']}:{v.get('policy_id') or v['id']}" for v in card.get("violations", [])}


def outdated_mentions(call_id: str, card: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(agent, policy fact, mention) for each outdated-policy mention on a scorecard that counts.

    On a scorecard with its `review` section (`review.apply_reviews`), a violation a reviewer
    dismissed is left out and an item to check a reviewer confirmed is in; each mention says whether
    a reviewer confirmed it. Items to check that nobody confirmed are left out.
    """
    items = (card.get("review") or {}).get("items", [])
    verdicts = {(i["target"], str(i["id"])): i["reviewed"] for i in items}
    for target, key in (("violation", "violations"), ("to_check", "to_check")):
        for v in card.get(key) or []:
            if v.get("kind") != "outdated_policy":
                continue
            reviewed = verdicts.get((target, str(v.get("id"))))
            if reviewed == "dismissed" or (target == "to_check" and reviewed != "violation"):
                continue
            yield card["agent_id"], v.get("policy_id") or v["id"], {
                "call_id": call_id, "call_date": card["call_date"], "detail": v.get("detail", ""),
                "consequence": v.get("consequence") or "note",
                "confirmed": reviewed in ("confirmed", "violation")}


Refresher = dict[str, dict[str, list[dict[str, Any]]]]


def refresher_list(cards: Iterable[tuple[str, dict[str, Any]]]) -> Refresher:
    """Per agent and policy fact, the calls in which the agent stated outdated policy (as reviewed, for
    scorecards that carry their `review` section)."""
    return _group(m for call_id, card in cards for m in outdated_mentions(call_id, card))


def group_mentions(mentions: Iterable[tuple[str, str, dict[str, Any]]]) -> Refresher:
    """(agent, fact, call) mentions grouped per agent and fact, as the refresher list shows them."""
    return _group(mentions)


def _group(mentions: Iterable[tuple[str, str, dict[str, Any]]]) -> Refresher:
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for agent, fact, call in mentions:
        out[agent][fact].append(call)
    return {agent: dict(facts) for agent, facts in sorted(out.items())}


def rescore(cards: Iterable[tuple[str, dict[str, Any]]], rubric: Any,
            policies_for: Callable[[dict[str, Any]], Any], nlp: Any, *,
            save: Callable[[str, dict[str, Any]], Any] | None = None,
            progress: Callable[[int], Any] | None = None,
            annotate: Callable[[dict[str, Any], Any, Any], dict[str, Any]] | None = None) -> ImpactReport:
    """Rescore (call id, scorecard) pairs; `save` stores each new scorecard, `progress` counts calls,
    `annotate(card, rubric, policies)` adds what the stored records say (certification findings)."""
    report = ImpactReport()
    mentions: list[tuple[str, str, dict[str, Any]]] = []
    for call_id, card in cards:
        policies = policies_for(card)
        new = rescore_card(card, rubric, policies, nlp)
        if annotate is not None:
            new = annotate(new, rubric, policies)
        if save is not None:
            save(call_id, new)
        report.calls += 1
        report.changes.append(impact(call_id, card, new))
        mentions.extend(outdated_mentions(call_id, new))
        if progress is not None:
            progress(1)
    report.refresher = _group(mentions)
    return report


def rescore_stored(repo: Any, rubric: Any, policies: Any | None, nlp: Any, *, since: date | None = None,
                   until: date | None = None, store: bool = True, batch: int = 500,
                   progress: Callable[[int], Any] | None = None) -> ImpactReport:
    """Rescore the latest scorecard of every stored call scored with this rubric id in a date range.

    Without `policies` each call keeps the policy pack it was scored with (loaded from storage).
    With `store`, the new rules are saved and each call gets a new scorecard version.
    """
    from qa_service.rules.load import load_policy_pack
    from qa_service.services.certification import CertificationCheck

    stored_packs: dict[tuple[str, str], Any] = {}

    def policies_for(card: dict[str, Any]) -> Any:
        if policies is not None:
            return policies
        key = (card["policies"]["id"], card["policies"]["version"])
        if key not in stored_packs:
            text = repo.get_rules("policy_pack", *key).text
            stored_packs[key] = load_policy_pack(text, name=f"policy pack {key[0]} {key[1]}")
        return stored_packs[key]

    pending: list[tuple[str, dict[str, Any]]] = []

    def save(call_id: str, card: dict[str, Any]) -> None:
        pending.append((call_id, card))
        if len(pending) >= batch:
            repo.add_scorecard_versions(pending)
            pending.clear()

    if store:
        for kind, rules in (("rubric", rubric), ("policy_pack", policies)):
            if rules is not None:
                repo.put_rules(kind, rules.id, rules.version, rules.sha256, rules.text)
    cards = ((s.call_id, s.data) for s in repo.latest_scorecards(since, until, rubric_id=rubric.id))
    # Findings and repeat marks come from the agents' records as they stand now, under the new rules.
    check = CertificationCheck(repo)
    report = rescore(cards, rubric, policies_for, nlp, save=save if store else None, progress=progress,
                     annotate=check.annotate)
    if pending:
        repo.add_scorecard_versions(pending)
    return report
