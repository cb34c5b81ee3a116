"""Score a call against a rubric and a policy pack as they stood on the call's date.

Runs on the unredacted transcript in memory: evidence points at segments by index, so the caller can
swap in the redacted text before anything is stored. Compiled rules are cached per (rubric, policy
pack, pipeline), so rescoring many stored calls pays for tokenising and matching only.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from difflib import SequenceMatcher
from typing import Any

from qa_service.records import (
    CriterionResult,
    Evidence,
    ResponseMeasure,
    ScoreResult,
    Segment,
    Transcript,
    Violation,
)
from qa_service.rules.schema import Criterion, NumberFact, PolicyPack, Rubric, TermFact
from qa_service.spoken import canonical_unit, format_value, number_to_words
from qa_service.stages.matching import (
    NEGATIONS,
    NLP,
    Hit,
    Lemmatizer,
    Mode,
    NTok,
    PhraseSet,
    Utterance,
    build_utterances,
    clause_after,
    clause_before,
    negated_by_window,
    pipes_for,
)
from qa_service.stages.response import channel_of, duration_words, timed, waits
from qa_service.totals import Charge, Line, provisional_reasons, tally

# Words that show a superseded value is being spoken of as history ("it used to be 65", "up from 595").
HISTORY_CUES = frozenset({"was", "were", "used", "previously", "formerly", "until", "old", "earlier", "prior",
                          "instead", "changed", "rose", "raised", "increased", "went", "longer", "replaced"})
# The same in Chinese, where each character is a token: looked for in the clause's characters joined
# ("以前是640" it used to be 640, "原来", "从640涨到" up from 640, "改成" changed to).
HISTORY_CUES_ZH = ("以前", "之前", "原来", "原先", "过去", "曾经", "从前", "旧", "涨", "上调", "改成", "改为",
                   "调整", "不再", "降")
# Words that show an obsolete thing is being named as gone: before it ("instead of the paper form",
# "the old paper form") or after it ("paper forms were withdrawn", "paper forms are no longer used").
# Stems, because recognisers trade word forms ("withdrawal" for "withdrawn").
WITHDRAWN_STEMS = ("withdr", "abolish", "discontinu", "scrap", "replac", "remov", "retir", "obsolet", "phas",
                   "previous", "former")
WITHDRAWN_WORDS = frozenset({"gone", "stopped", "ended", "anymore", "longer", "closed", "used"})
BEFORE_ONLY = frozenset({"instead", "rather", "old"})  # "post the form rather than ..." is still advice


def _withdrawn_cue(words: Sequence[str], extra: frozenset[str] = frozenset()) -> bool:
    return any(w in WITHDRAWN_WORDS or w in extra or w.startswith(WITHDRAWN_STEMS) for w in words)


# Recogniser confidence below which a stated number is not trusted enough to report it as outdated.
MIN_NUMBER_CONFIDENCE = 0.3
UNSURE_NEXT_WORD = 0.5
# A phrase heard but for one word the recogniser was unsure of (below this confidence) is a near match:
# a reviewer listens to it, the verdict does not rest on it.
NEAR_CONFIDENCE = 0.6
# Deciding words heard with a lower mean confidence than this make an auto-fail violation weak evidence.
WEAK_CONFIDENCE = 0.5


@dataclass
class CompiledRules:
    """A rubric and policy pack turned into matchers for one spaCy pipeline."""

    rubric: Rubric | None  # None: a policy pack's phrases alone (`compile_policy`)
    policies: PolicyPack
    lemma: Lemmatizer
    phrases: PhraseSet
    matcher: Any  # spacy.matcher.Matcher or None
    pipes: tuple[str, ...]
    lemma_patterns: bool = False
    anchors: frozenset[str] | None = None  # see _anchors
    caseless: Any = None  # the patterns without their tests of letter case, for text written without capitals
    near: PhraseSet | None = None  # the rubric's phrases as near matches ("n:c:" and "n:p:" labels)
    uses_norm: bool = False  # a pattern tests NORM


_PerNLP = OrderedDict[tuple[str, str], CompiledRules]
_CACHE: weakref.WeakKeyDictionary[Any, _PerNLP] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def compile_policy(policies: PolicyPack, nlp: NLP) -> CompiledRules:
    """The phrases of a policy pack alone (no rubric), built once per (policy sha, pipeline)."""
    return compile_rules(None, policies, nlp)


def compile_rules(rubric: Rubric | None, policies: PolicyPack, nlp: NLP) -> CompiledRules:
    """Matchers for a rubric and policy pack, built once per (rubric sha, policy sha, pipeline)."""
    key = (rubric.sha256 if rubric is not None else "", policies.sha256)
    with _CACHE_LOCK:
        per_nlp = _CACHE.get(nlp)
        if per_nlp is not None and key in per_nlp:
            per_nlp.move_to_end(key)
            return per_nlp[key]
    compiled = _compile(rubric, policies, nlp)
    with _CACHE_LOCK:
        per_nlp = _CACHE.setdefault(nlp, OrderedDict())
        per_nlp[key] = compiled
        while len(per_nlp) > _CACHE_SIZE:
            per_nlp.popitem(last=False)
    return compiled


def _compile(rubric: Rubric | None, policies: PolicyPack, nlp: NLP) -> CompiledRules:
    lemma = Lemmatizer(nlp)
    labelled: list[tuple[str, str, bool]] = []  # (label, phrase, lenient)
    near: list[tuple[str, str, Mode]] = []
    patterns: list[tuple[str, list[dict[str, Any]]]] = []
    for c in rubric.criteria if rubric is not None else ():
        labelled += [(f"c:{c.id}", p, True) for p in c.phrases]
        near += [(f"n:c:{c.id}", p, "near") for p in c.phrases]
        patterns += [(f"c:{c.id}", p) for p in c.patterns]
        if c.applies_when is not None:
            labelled += [(f"a:{c.id}", p, True) for p in c.applies_when.phrases]
            patterns += [(f"a:{c.id}", p) for p in c.applies_when.patterns]
    for item in rubric.prohibited if rubric is not None else ():
        labelled += [(f"p:{item.id}", p, False) for p in item.phrases]
        near += [(f"n:p:{item.id}", p, "near") for p in item.phrases]
        patterns += [(f"p:{item.id}", p) for p in item.patterns]
    for fact in policies.facts:
        if isinstance(fact, NumberFact):
            labelled += [(f"t:{fact.id}", p, True) for p in fact.topic]
            labelled += [(f"u:{fact.id}", w, False) for w in _topic_words(fact, nlp)]
        else:
            labelled += [(f"o:{fact.id}", p, False) for p in fact.obsolete_phrases]
    matcher = _matcher(patterns, nlp) if patterns else None
    uncased = [(label, p) for label, p in ((label, _without_case(p)) for label, p in patterns) if p]
    caseless = _matcher(uncased, nlp) if uncased and uncased != patterns else matcher
    uses_lemma = any(str(key).upper() == "LEMMA" for _, p in patterns for spec in p for key in spec)
    return CompiledRules(rubric, policies, lemma, PhraseSet(labelled, nlp, lemma), matcher,
                         pipes_for((p for _, p in patterns), nlp), uses_lemma,
                         _anchors([p for _, p in patterns]), caseless,
                         PhraseSet(near, nlp, lemma) if near else None,
                         any(str(key).upper() == "NORM" for _, p in patterns for spec in p for key in spec))


def _matcher(patterns: Sequence[tuple[str, list[dict[str, Any]]]], nlp: NLP) -> Any:
    from spacy.matcher import Matcher

    matcher = Matcher(nlp.vocab, validate=True)
    grouped: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for label, pattern in patterns:
        grouped[label].append(pattern)
    for label, group in grouped.items():
        matcher.add(label, group)
    return matcher


_CASE_KEYS = ("IS_TITLE", "IS_UPPER", "IS_LOWER")


def _without_case(pattern: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A pattern without its tests of letter case, which text written all in lower case cannot pass:
    a recogniser given the rubric's phrases writes "this is ben speaking". None when nothing but
    letter case was tested: such a pattern says nothing about lower-case text."""
    out = [{k: v for k, v in spec.items() if str(k).upper() not in _CASE_KEYS} for spec in pattern]
    return out if any(set(spec) - {"OP"} for spec in out) else None


_LITERAL_KEYS = ("LOWER", "LEMMA", "ORTH", "TEXT")


def _anchors(patterns: Sequence[Sequence[dict[str, Any]]]) -> frozenset[str] | None:
    """Words one of which an utterance must contain for any pattern to match (None: no such set).

    Each pattern contributes the literal values of its first required token with a literal test;
    utterances with none of them skip the Matcher, which walks every token in Python.
    """
    words: set[str] = set()
    for pattern in patterns:
        found = False
        for spec in pattern:
            if str(spec.get("OP", "1")) in ("?", "*", "!"):
                continue
            for key, test in spec.items():
                if str(key).upper() not in _LITERAL_KEYS:
                    continue
                if isinstance(test, str):
                    words.add(test.lower())
                    found = True
                elif isinstance(test, dict) and isinstance(test.get("IN"), list) \
                        and all(isinstance(v, str) for v in test["IN"]) and len(test) == 1:
                    words.update(v.lower() for v in test["IN"])
                    found = True
                if found:
                    break
            if found:
                break
        if not found:
            return None
    return frozenset(words)


def _may_match(rules: CompiledRules, utt: Utterance) -> bool:
    anchors = rules.anchors
    if anchors is None or "lemmatizer" in rules.pipes:
        return True  # the pipeline's own lemmas may differ from ours: run the Matcher
    return any(w in anchors or rules.lemma(w) in anchors for w in utt.lows)


def _topic_words(fact: NumberFact, nlp: NLP) -> list[str]:
    """Distinctive single words of multi-word topics ("english" of "english test").

    When the recogniser garbles the rest of the topic, such a word still counts, but only for a value
    said with the fact's unit ("valid for three years"), so the unit stands in for the lost word.
    """
    singles = {t.lower() for t in fact.topic if len(t.split()) == 1}
    words: list[str] = []
    for topic in fact.topic:
        doc = nlp.tokenizer(topic)
        if len(doc) < 2:
            continue
        for tok in doc:
            low = tok.lower_
            if len(low) >= 4 and tok.is_alpha and not tok.is_stop and low not in singles and low not in words:
                words.append(low)
    return words if fact.unit or fact.unit_aliases else []


# ------------------------------------------------------------------------------------------- scoring


def score(transcript: Transcript, rubric: Rubric, policies: PolicyPack, nlp: NLP,
          call_date: date, lengths: Sequence[Sequence[int]] | None = None) -> ScoreResult:
    """Score one call: criteria, prohibited items and policy facts as they stood on call_date.

    `lengths` (the token lengths kept with a stored transcript) spare the tokenizer on a rescore.
    """
    rules = compile_rules(rubric, policies, nlp)
    if rules.uses_norm:
        lengths = None  # NORM comes from the tokenizer's exceptions, which a rebuilt Doc lacks
    utts = build_utterances(transcript, nlp, rules.lemma, rules.pipes, set_lemmas=rules.lemma_patterns,
                            lengths=lengths)
    hits = _find(rules, utts)
    call = _Call(transcript, utts, hits, rules)

    criteria = _score_criteria(call, rubric)
    outdated, to_check = policy_items(call, policies, call_date)
    violations = _prohibited(call, rubric) + outdated
    violations.sort(key=lambda v: (v.evidence.start, v.id))
    to_check += _nearly_prohibited(call, rubric)
    to_check.sort(key=lambda v: (v.evidence.start, v.id))

    totals = tally((_line(c) for c in criteria), charges=[_charge(v) for v in violations],
                   pass_mark=rubric.pass_mark)
    passed = bool(totals.passed)
    reasons = () if passed else provisional_reasons(
        [(c.id, _line(c), c.doubt) for c in criteria], [(v.id, _charge(v), v.doubt) for v in violations],
        pass_mark=rubric.pass_mark)
    return ScoreResult(criteria=tuple(criteria), violations=tuple(violations), score=totals.score,
                       auto_fail=totals.auto_fail, passed=passed, sections=totals.sections,
                       to_check=tuple(to_check), provisional=bool(reasons), provisional_reasons=reasons,
                       pass_mark=rubric.pass_mark, deducted_points=totals.deducted)


def _costed(items: Sequence[Violation], policies: PolicyPack) -> list[Violation]:
    """Outdated-policy items with what their policy pack says one costs (an item to check carries
    the cost it would have once a reviewer confirms it)."""
    out = []
    for v in items:
        cost = policies.consequence(v.policy_id or v.id)
        out.append(replace(v, consequence=cost.kind, deducted_points=cost.points,
                           auto_fail=cost.kind == "auto_fail"))
    return out


def _charge(v: Violation) -> Charge:
    """What a violation costs, for the totals (a fact's deduction comes off once per call)."""
    return Charge(f"{v.kind}:{v.policy_id or v.id}", v.auto_fail, v.deducted_points)


def policy_items(call: _Call, policies: PolicyPack,
                 call_date: date) -> tuple[list[Violation], list[Violation]]:
    """A call's outdated-policy violations and policy items to check: all that a policy pack decides
    on a scorecard (`policy_check` computes only these, for a rescan)."""
    outdated, to_check = _policy(call, policies, call_date)
    return _costed(outdated, policies), _costed(to_check, policies)


def policy_check(transcript: Transcript, policies: PolicyPack, nlp: NLP, call_date: date,
                 lengths: Sequence[Sequence[int]] | None = None,
                 keep: Callable[[int], bool] | None = None) -> tuple[list[Violation], list[Violation]]:
    """The policy items `score` would give a call, without the rubric: only the speech an outdated
    mention counts in (the agent's, or unattributed) is matched, and only against the pack's phrases.
    With `keep`, only those utterances (by index) are read: the items found are those they hold."""
    rules = compile_policy(policies, nlp)
    utts = build_utterances(transcript, nlp, rules.lemma, set_lemmas=False, lengths=lengths, docs=False,
                            keep=keep)
    call = _Call(transcript, utts, _find(rules, utts, speaker="agent"), rules)
    outdated, to_check = policy_items(call, policies, call_date)
    return (sorted(outdated, key=lambda v: (v.evidence.start, v.id)),
            sorted(to_check, key=lambda v: (v.evidence.start, v.id)))


def _line(c: CriterionResult) -> Line:
    """A criterion for the totals."""
    return Line(c.section, c.applicable, c.passed, c.points, c.max_points, c.auto_fail)


def _criterion(rubric: Rubric, cid: str) -> Criterion:
    return next(c for c in rubric.criteria if c.id == cid)


def _find(rules: CompiledRules, utts: Sequence[Utterance], speaker: str = "any") -> dict[str, list[Hit]]:
    """All hits by label, in call order, one per (utterance, start); only in `speaker`'s speech."""
    found: dict[str, dict[tuple[int, int], Hit]] = defaultdict(dict)
    for utt in utts:
        if not _speaker_ok(utt.speaker, speaker):
            continue
        for hit in rules.phrases.find(utt.toks, utt.index):
            found[hit.label].setdefault((hit.utterance, hit.start), hit)
        if rules.near is not None and min(utt.token_prob, default=1.0) < NEAR_CONFIDENCE:
            # A near match rests on a word the recogniser was unsure of: only such utterances have one.
            for hit in rules.near.find(utt.toks, utt.index):
                found[hit.label].setdefault((hit.utterance, hit.start), hit)
        if rules.matcher is not None and _may_match(rules, utt):
            strings = utt.doc.vocab.strings
            matcher = rules.matcher if any(c.isupper() for c in utt.text) else rules.caseless
            for match_id, start, end in matcher(utt.doc):
                label = strings[match_id]
                found[label].setdefault((utt.index, start), Hit(label, utt.index, start, end))

    def when(h: Hit) -> tuple[float, int, int]:
        return _order(utts, h)

    return {label: sorted(by_start.values(), key=when) for label, by_start in found.items()}


def _order(utts: Sequence[Utterance], hit: Hit) -> tuple[float, int, int]:
    # Time first: on stereo calls one speaker's utterance may run on past the other's next one.
    return (utts[hit.utterance].time_of(hit.start), hit.utterance, hit.start)


@dataclass
class _Call:
    transcript: Transcript
    utts: Sequence[Utterance]
    hits: dict[str, list[Hit]]
    rules: CompiledRules

    def evidence(self, hit: Hit) -> Evidence:
        """The segments a hit spans, with their times and text (unredacted; the caller swaps text)."""
        utt = self.utts[hit.utterance]
        first = utt.segment_of(hit.start)
        last = utt.segment_of(max(hit.start, hit.end - 1))
        idxs = utt.segments[utt.segments.index(first): utt.segments.index(last) + 1]
        segs = [self.transcript.segments[k] for k in idxs]
        return Evidence(segments=tuple(idxs), start=segs[0].start, end=max(s.end for s in segs),
                        speaker=segs[0].speaker, text=" ".join(s.text.strip() for s in segs))

    def order(self, hit: Hit) -> tuple[float, int, int]:
        """Sort key placing a hit in the call: when its stretch of speech began, then text order."""
        return _order(self.utts, hit)

    def start_time(self, hit: Hit) -> float:
        """When the stretch of speech holding the hit's first token began."""
        return self.utts[hit.utterance].time_of(hit.start)

    def by(self, label: str, speaker: str) -> list[Hit]:
        """Hits of a label said by a speaker ("any" for anyone; unattributed speech counts for anyone)."""
        return [h for h in self.hits.get(label, []) if _speaker_ok(self.utts[h.utterance].speaker, speaker)]

    def certainty(self, hit: Hit) -> tuple[float, float]:
        """The recogniser's mean confidence in a hit's words, and how closely they followed the phrase."""
        return self.utts[hit.utterance].confidence(hit.start, hit.end), hit.match

    def slip_confidence(self, hit: Hit) -> float:
        """The recogniser's confidence in the word a hit stepped over as misheard (1.0 without one)."""
        if hit.slip is None:
            return 1.0
        return self.utts[hit.utterance].confidence(hit.slip, hit.slip + 1)

    def near(self, label: str, speaker: str) -> list[Hit]:
        """Near matches of a label ("n:" hits) whose misheard word the recogniser was unsure of: what may
        have been said, for a person to check."""
        return [h for h in self.by(label, speaker)
                if h.slip is not None and self.slip_confidence(h) < NEAR_CONFIDENCE]

    def voiced_by_other(self, label: str, speaker: str) -> list[tuple[Hit, float]]:
        """Hits of a label said by another party than `speaker` in speech whose party was told apart
        by voice with less than full certainty (mono recordings), with that certainty."""
        out = []
        for hit in self.hits.get(label, []):
            utt = self.utts[hit.utterance]
            certainty = self.transcript.segments[utt.segment_of(hit.start)].confidence
            if utt.speaker not in (speaker, "unknown") and certainty is not None and certainty < 1.0:
                out.append((hit, certainty))
        return out

    def weakness(self, hit: Hit) -> str:
        """Why a hit is weak evidence (a misheard word stepped over, words the recogniser was unsure
        of), or "" when it is firm."""
        confidence, _ = self.certainty(hit)
        if hit.slip is not None:
            return f'one word of the phrase was misheard ("{hit.slip_for}")'
        if confidence < WEAK_CONFIDENCE:
            return f"the recogniser was unsure of these words (confidence {confidence:.2f})"
        return ""


def _speaker_ok(actual: str, wanted: str) -> bool:
    return wanted == "any" or actual == wanted or actual == "unknown"


def _score_criteria(call: _Call, rubric: Rubric) -> list[CriterionResult]:
    results: dict[str, CriterionResult] = {}
    first_ok: dict[str, Hit | None] = {}
    doubtful: set[str] = set()

    def evaluate(c: Criterion) -> None:
        if c.id in results:
            return
        applicable = c.applies_when is None or bool(call.by(f"a:{c.id}", c.applies_when.speaker))
        if c.response_time is not None:
            results[c.id] = _response_time(call.transcript, c, applicable)
            first_ok[c.id] = None
            return
        # Negation is not checked here: on phone audio recognisers turn "is there anything else" into
        # "didn't there anything else" far more often than agents say a required line in the negative
        # (docs/decisions/0009-measured-options.md).
        hits = call.by(f"c:{c.id}", c.speaker)
        reason = ""
        ok = hits
        if c.within_seconds is not None:
            ok = [h for h in ok if call.start_time(h) <= c.within_seconds]
            if hits and not ok:
                reason = f"said at {call.start_time(hits[0]):.0f} s, after the {c.within_seconds:g} s limit"
        if c.after is not None:
            other = _criterion(rubric, c.after)
            evaluate(other)
            anchor = first_ok[other.id]
            if anchor is None:
                if ok:
                    reason = f"{other.id} did not happen, so this cannot come after it"
                ok = []
            else:
                late = [h for h in ok if call.order(h) > call.order(anchor)]
                if ok and not late:
                    reason = f"said before {other.id}"
                ok = late
        if not hits and not reason:
            reason = "not said" if c.speaker == "any" else f"not said by the {c.speaker}"
        passed = bool(ok)
        first_ok[c.id] = ok[0] if ok else None
        if not applicable:
            reason = "not applicable: the topic did not come up"
        shown = ok[:1] if ok else hits[:1]
        doubt = ""
        if applicable and not passed:
            near = [h for h in call.near(f"n:c:{c.id}", c.speaker)
                    if c.within_seconds is None or call.start_time(h) <= c.within_seconds]
            voiced = [] if hits or c.speaker == "any" else call.voiced_by_other(f"c:{c.id}", c.speaker)
            if hits and c.after in doubtful:
                doubt = f"it must follow {c.after}, whose verdict is uncertain"
            elif voiced:
                hit, certainty = voiced[0]
                shown = [hit]
                party = call.utts[hit.utterance].speaker
                doubt = (f"heard at {call.start_time(hit):.0f} s from the {party}, a voice told apart with "
                         f"confidence {certainty:.2f}")
            elif near and not hits:
                shown = near[:1]
                doubt = (f'nearly heard at {call.start_time(near[0]):.0f} s, "{near[0].slip_for}" unclear '
                         f"(confidence {call.slip_confidence(near[0]):.2f})")
        if doubt:
            doubtful.add(c.id)
        confidence, match = call.certainty(shown[0]) if shown else (None, None)
        results[c.id] = CriterionResult(
            id=c.id, title=c.title, section=c.section, passed=passed or not applicable,
            points=c.points if passed and applicable else 0.0, max_points=c.points if applicable else 0.0,
            evidence=tuple(call.evidence(h) for h in shown), applicable=applicable,
            reason="" if passed and applicable else reason, auto_fail=c.auto_fail, confidence=confidence,
            match=match, doubt=doubt)

    for c in rubric.criteria:
        evaluate(c)
    return [results[c.id] for c in rubric.criteria]


def _response_time(transcript: Transcript, c: Criterion, applicable: bool) -> CriterionResult:
    """A response-time criterion: the conversation's longest or first wait for the agent, against the
    limit for its channel (stages/response.py says what a wait is)."""
    rule = c.response_time
    assert rule is not None
    segs = transcript.segments
    channel = channel_of(transcript)
    limit = rule.limit(channel)
    found = waits(segs)
    wait = found.longest if rule.measure == "longest" else found.first
    late = found.unanswered if rule.unanswered == "fail" else None

    def when(i: int) -> str:
        return _moment(transcript, segs[i].start)

    def evidence(i: int) -> Evidence:
        seg = segs[i]
        return Evidence(segments=(i,), start=seg.start, end=seg.end, speaker=seg.speaker, text=seg.text)

    measure = ResponseMeasure(
        measure=rule.measure, channel=channel, limit_s=limit, wait_s=wait.seconds if wait else None,
        answered=len(found.answered), mean_wait_s=found.mean_seconds, unanswered=found.unanswered is not None,
        asked_at=_stamp(transcript, segs[wait.asked].start) if wait else None,
        replied_at=_stamp(transcript, segs[wait.replied].start) if wait and wait.replied is not None
        else None)
    shown: list[Evidence] = []
    if wait is not None and wait.replied is not None:
        shown = [evidence(wait.asked), evidence(wait.replied)]
    reason = ""
    if not applicable:
        reason = "not applicable: the topic did not come up"
    elif not timed(transcript):
        applicable = False
        reason = ("not applicable: the transcript gives no times (estimated from word counts), so replies "
                  "cannot be timed")
    elif limit is None:
        applicable, reason = False, f"not applicable: the rule sets no limit for {_CHANNEL_NAMES[channel]}"
    elif wait is None and late is None:
        applicable, reason = False, "not applicable: no customer message had a reply to time"
    passed = applicable and late is None and wait is not None and (wait.seconds or 0.0) <= (limit or 0.0)
    if applicable and not passed:
        if wait is not None and limit is not None and (wait.seconds or 0.0) > limit:
            what = "first reply" if rule.measure == "first" else "reply"
            reason = (f"the customer waited {duration_words(wait.seconds or 0.0)} ({wait.seconds:.0f} s) for "
                      f"the agent's {what}: wrote at {when(wait.asked)}, answered at "
                      f"{when(wait.replied or 0)}; the limit for {_CHANNEL_NAMES[channel]} is "
                      f"{duration_words(limit)} ({limit:g} s)")
        elif late is not None:
            shown = [evidence(late.asked)]
            reason = (f"the customer's message at {when(late.asked)} had no reply before the conversation "
                      "ended")
    return CriterionResult(
        id=c.id, title=c.title, section=c.section, passed=passed or not applicable,
        points=c.points if passed and applicable else 0.0, max_points=c.points if applicable else 0.0,
        evidence=tuple(shown), applicable=applicable, reason=reason, auto_fail=c.auto_fail,
        response=measure)


_CHANNEL_NAMES = {"call": "calls", "chat": "chats", "email": "e-mails", "im": "instant messages"}


def _stamp(transcript: Transcript, seconds: float) -> str | None:
    """The date and time of a moment of the conversation, when its turns carried them."""
    if transcript.started_at is None:
        return None
    return (transcript.started_at + timedelta(seconds=seconds)).isoformat()


def _moment(transcript: Transcript, seconds: float) -> str:
    return _stamp(transcript, seconds) or f"{seconds:.0f} s"


def _negated(call: _Call, hit: Hit) -> bool:
    # A token window, not the dependency parse: see negated_by_window for the measurement.
    return negated_by_window(call.utts[hit.utterance], hit.start, hit.end)


def _prohibited(call: _Call, rubric: Rubric) -> list[Violation]:
    out: list[Violation] = []
    for item in rubric.prohibited:
        seen: set[int] = set()
        for hit in call.by(f"p:{item.id}", item.speaker):
            if hit.utterance in seen or _negated(call, hit):
                continue
            seen.add(hit.utterance)
            confidence, match = call.certainty(hit)
            out.append(Violation(id=item.id, kind="prohibited", title=item.title, evidence=call.evidence(hit),
                                 detail=f"said: {item.title.lower()}", auto_fail=item.auto_fail,
                                 confidence=confidence, match=match, doubt=call.weakness(hit)))
    return out


def _nearly_prohibited(call: _Call, rubric: Rubric) -> list[Violation]:
    """Prohibited phrases nearly heard, one per item and utterance, where none was heard outright."""
    out: list[Violation] = []
    for item in rubric.prohibited:
        seen = {h.utterance for h in call.by(f"p:{item.id}", item.speaker)}
        for hit in call.near(f"n:p:{item.id}", item.speaker):
            if hit.utterance in seen or _negated(call, hit):
                continue
            seen.add(hit.utterance)
            confidence, match = call.certainty(hit)
            unclear = f'"{hit.slip_for}" unclear (confidence {call.slip_confidence(hit):.2f})'
            out.append(Violation(id=item.id, kind="prohibited", title=item.title, evidence=call.evidence(hit),
                                 detail=f"nearly heard, {unclear}: {item.title.lower()}; not counted unless "
                                        "a reviewer confirms it", auto_fail=item.auto_fail,
                                 confidence=confidence, match=match, doubt=f"nearly heard, {unclear}"))
    return out


# ----------------------------------------------------------------------------------- policy facts


def in_force(fact: NumberFact, on: date) -> float:
    """The value of a number fact in force on a date."""
    for old in sorted(fact.superseded, key=lambda o: o.until):
        if on <= old.until:
            return old.value
    return fact.current.value


def _units(fact: NumberFact) -> set[str]:
    units = {canonical_unit(u) for u in fact.unit_aliases}
    if fact.unit:
        units.add(canonical_unit(fact.unit))
    return units


def _policy(call: _Call, policies: PolicyPack, call_date: date) -> tuple[list[Violation], list[Violation]]:
    """Outdated-policy violations, and the mentions that rest on a number the recogniser was unsure of."""
    out: list[Violation] = []
    to_check: list[Violation] = []
    numbers = [f for f in policies.facts if isinstance(f, NumberFact)]
    if numbers:
        out, to_check = _number_facts(call, numbers, call_date)
    for fact in policies.facts:
        if isinstance(fact, TermFact) and call_date >= fact.since:
            out += _term_fact(call, fact)
    return out, to_check


def _number_facts(call: _Call, facts: Sequence[NumberFact],
                  call_date: date) -> tuple[list[Violation], list[Violation]]:
    out: list[Violation] = []
    unsure: dict[str, Violation] = {}
    reported_in_call: set[str] = set()
    for utt in call.utts:
        if not _speaker_ok(utt.speaker, "agent"):
            continue
        words = [t for t in utt.toks if not t.punct]
        pos_of = {t.start: i for i, t in enumerate(words)}
        nums = [(i, t) for i, t in enumerate(words) if t.number is not None]
        if not nums:
            continue
        # Each number goes to the fact whose topic phrase is nearest (within that fact's window).
        best: dict[int, list[tuple[int, NumberFact]]] = defaultdict(list)
        for fact in facts:
            units = _units(fact)
            topic_hits = [(h, False) for h in call.hits.get(f"t:{fact.id}", [])]
            topic_hits += [(h, True) for h in call.hits.get(f"u:{fact.id}", [])]
            for hit, needs_unit in topic_hits:
                if hit.utterance != utt.index:
                    continue
                t_first = pos_of.get(hit.start)
                t_last = max((i for i, t in enumerate(words) if t.start < hit.end), default=t_first)
                if t_first is None or t_last is None:
                    continue
                for i, tok in nums:
                    gap = i - t_last if i > t_last else t_first - i if i < t_first else None
                    if gap is None or gap > fact.window:
                        continue
                    if tok.unit and units and tok.unit not in units:
                        continue  # "twelve weeks" is not a fee
                    if needs_unit and tok.unit not in units:
                        continue
                    best[i].append((gap, fact))
        reported: set[str] = set()
        for i, cands in best.items():
            nearest = min(g for g, _ in cands)
            tok = words[i]
            for gap, fact in cands:
                if gap != nearest or fact.id in reported:
                    continue
                value = tok.number
                assert value is not None
                current = in_force(fact, call_date)
                old = [o for o in fact.superseded if o.value == value and o.until < call_date]
                if value == current or _spoken_as_history(utt, tok):
                    continue
                doubt = _doubt(utt, tok)
                if not old:
                    # Not a value that ever applied, but perhaps one misheard: "three hundred and may"
                    # for "three hundred and eighty".
                    maybe = [o for o in fact.superseded if o.until < call_date and could_be(value, o.value)]
                    if doubt and maybe:
                        found = _outdated_number(call, utt, tok, fact, maybe[0].until, current, call_date,
                                                 maybe=maybe[0].value)
                        found = replace(found, detail=f"{found.detail}; {doubt}", doubt=doubt)
                        unsure.setdefault(fact.id, found)
                    continue
                found = _outdated_number(call, utt, tok, fact, old[0].until, current, call_date)
                if doubt:  # a number the recogniser was guessing at is no ground for a violation
                    unsure.setdefault(fact.id, replace(found, detail=f"{found.detail}; {doubt}", doubt=doubt))
                    continue
                reported.add(fact.id)
                out.append(found)
        reported_in_call |= reported
        for i, _tok in nums:
            if i not in best:
                for found in _topic_unclear(call, utt, words, i, facts, call_date):
                    unsure.setdefault(found.id, found)
    return out, [v for fid, v in unsure.items() if fid not in reported_in_call]


def _topic_unclear(call: _Call, utt: Utterance, words: Sequence[NTok], i: int, facts: Sequence[NumberFact],
                   call_date: date) -> list[Violation]:
    """An outdated value said with its fact's unit where no topic was heard, but words before it were
    unclear: "the undefeated five hundred and ninety five dollars" for "the visa fee is ...". For a
    reviewer, never a violation; not when the value is in force for a fact of that unit."""
    tok = words[i]
    if tok.unit is None or _spoken_as_history(utt, tok):
        return []
    same_unit = [f for f in facts if tok.unit in _units(f)]
    if any(in_force(f, call_date) == tok.number for f in same_unit):
        return []
    before = [t for t in words[max(0, i - max((f.window for f in same_unit), default=0)):i] if not t.filler]
    unclear = [t for t in before if utt.confidence(t.start, t.end) < NEAR_CONFIDENCE]
    if not unclear:
        return []
    out: list[Violation] = []
    for fact in same_unit:
        old = [o for o in fact.superseded if o.value == tok.number and o.until < call_date]
        if old:
            found = _outdated_number(call, utt, tok, fact, old[0].until, in_force(fact, call_date), call_date)
            doubt = f"no topic heard, and {len(unclear)} word(s) before the number were unclear"
            out.append(replace(found, detail=f"{found.detail}; not counted: {doubt}", doubt=doubt))
    return out


def _doubt(utt: Utterance, tok: NTok) -> str | None:
    """Why the recogniser's number is not to be trusted as said, or None when it is."""
    confidence = utt.confidence(tok.start, tok.end)
    if confidence < MIN_NUMBER_CONFIDENCE:
        return f"not counted: the recogniser was unsure of the number (confidence {confidence:.2f})"
    if _maybe_cut_short(utt, tok):
        return "not counted: the word after the number was unclear, so more of it may have been said"
    return None


def could_be(heard: float, value: float) -> bool:
    """Whether a number heard may be a mishearing of another: the start of it as spoken ("three hundred"
    of "three hundred and eighty") or spoken much alike ("sixty five" and "sixty nine")."""
    if not (float(heard).is_integer() and float(value).is_integer()) or heard == value:
        return False
    a, b = number_to_words(int(heard)), number_to_words(int(value))
    return (_round(heard) and b.startswith(a + " ")) or SequenceMatcher(None, a, b).ratio() >= 0.8


def _round(value: float) -> bool:
    """A number that may be the start of a longer one: "sixty" of "sixty seven", "300" of "380"."""
    return (20 <= value <= 90 and value % 10 == 0) or (value >= 100 and value % 100 == 0)


def _maybe_cut_short(utt: Utterance, tok: NTok) -> bool:
    """A round number ("sixty") followed by a word the recogniser was unsure of may have lost its end.

    "sixty seven" heard as "sixty, and" must not become a claim that someone said 60.
    """
    if not _round(tok.number or 0):
        return False
    k = tok.end
    while k < len(utt.lows) and (utt.is_punct(k) or utt.lows[k] == "and"):
        k += 1  # "three hundred and ..." goes on: the word after "and" is the one that may be lost
    if k >= len(utt.lows):
        return False
    return utt.confidence(k, k + 1) < UNSURE_NEXT_WORD


def _spoken_as_history(utt: Utterance, tok: NTok) -> bool:
    before = clause_before(utt, tok.start, limit=8)
    if before and before[-1] in ("from", "从"):
        return True  # "up from 595", "changed from 65"
    joined = "".join(before)
    if not joined.isascii() and any(cue in joined for cue in HISTORY_CUES_ZH):
        return True
    return any(w in HISTORY_CUES or w in NEGATIONS for w in before)


def _outdated_number(call: _Call, utt: Utterance, tok: NTok, fact: NumberFact, until: date, current: float,
                     call_date: date, *, maybe: float | None = None) -> Violation:
    """An outdated value stated (or, with `maybe`, perhaps stated: the value it may have been)."""
    unit = f" {fact.unit}" if fact.unit else ""
    since = fact.current.since if current == fact.current.value else None
    now = f"{format_value(current)}{unit}" + (f" since {since.isoformat()}" if since else "")
    said = f"stated {format_value(tok.number or 0)}{unit}" if maybe is None else \
        f"heard {format_value(tok.number or 0)}, which may have been {format_value(maybe)}{unit},"
    detail = (f"{said} for {fact.title.lower()}; that value applied until {until.isoformat()}, "
              f"on {call_date.isoformat()} it is {now}")
    hit = Hit(f"t:{fact.id}", utt.index, tok.start, tok.end)
    confidence = utt.confidence(tok.start, tok.end)
    # Weak evidence (not so weak as to be only listed to check): a FAIL resting on it is provisional.
    doubt = f"the recogniser was unsure of the number (confidence {confidence:.2f})" \
        if confidence < WEAK_CONFIDENCE else ""
    return Violation(id=fact.id, kind="outdated_policy", title=fact.title,
                     evidence=call.evidence(hit), detail=detail, policy_id=fact.id,
                     confidence=confidence, match=1.0, doubt=doubt)


def _term_fact(call: _Call, fact: TermFact) -> list[Violation]:
    out: list[Violation] = []
    for hit in call.by(f"o:{fact.id}", "agent"):
        utt = call.utts[hit.utterance]
        before = clause_before(utt, hit.start, limit=8)
        after = [w for w in clause_after(utt, hit.end, limit=8) if not w.startswith(("'", "’"))]
        if any(w in NEGATIONS for w in before) or _withdrawn_cue(before, BEFORE_ONLY) \
                or _withdrawn_cue(after) or any(w in NEGATIONS for w in after[:2]):
            continue  # "we no longer accept paper forms", "paper forms were withdrawn", "... are not taken"
        # The detail names the rule, not the words said: it is stored as is, outside redaction.
        now = f"; now: {fact.replacement}" if fact.replacement else ""
        detail = f"referred to what no longer applies since {fact.since.isoformat()} ({fact.title}){now}"
        confidence, match = call.certainty(hit)
        out.append(Violation(id=fact.id, kind="outdated_policy", title=fact.title,
                             evidence=call.evidence(hit), detail=detail, policy_id=fact.id,
                             confidence=confidence, match=match, doubt=call.weakness(hit)))
        break
    return out


def evidence_text_from(result: ScoreResult, segments: Sequence[Segment]) -> ScoreResult:
    """Every evidence text replaced with the text of these segments (the ones it points to)."""

    def clean(e: Evidence) -> Evidence:
        return replace(e, text=" ".join(segments[i].text for i in e.segments if i < len(segments)))

    def cleaned(items: Sequence[Violation]) -> tuple[Violation, ...]:
        return tuple(replace(v, evidence=clean(v.evidence)) for v in items)

    criteria = tuple(replace(c, evidence=tuple(clean(e) for e in c.evidence)) for c in result.criteria)
    return replace(result, criteria=criteria, violations=cleaned(result.violations),
                   to_check=cleaned(result.to_check))
