"""The speech rules as Presidio recognisers: the scanners as one `EntityRecognizer`, the rule files'
`patterns` as Presidio's own `PatternRecognizer`s, and Presidio's e-mail recogniser kept offline."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from qa_service.errors import ConfigError
from qa_service.stages.recognizers.emails import offline_tld_extractor

if TYPE_CHECKING:
    from qa_service.stages.recognizers.rules import SpeechRules


class SpeechRecognizer(EntityRecognizer):
    """Presidio recogniser over speech text: sequences, spoken dates and e-mails, cued names."""

    def __init__(self, rules: SpeechRules) -> None:
        entities = sorted(
            {r.entity for r in rules.source.sequences} | {"DATE_TIME", "EMAIL_ADDRESS", "PERSON"}
        )
        self.rules = rules
        super().__init__(supported_entities=entities, name="SpeechRecognizer", supported_language="en")

    def load(self) -> None:
        """Nothing to load: the rules are compiled already."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        """Spans the speech scanners find in `text`, as Presidio results."""
        wanted = set(entities or self.supported_entities)
        meta = {
            RecognizerResult.RECOGNIZER_NAME_KEY: "SpeechRecognizer",
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        return [
            RecognizerResult(s.entity_type, s.start, s.end, s.score, recognition_metadata=dict(meta))
            for s in self.rules.scan(text)
            if s.entity_type in wanted
        ]


def pattern_recognizers(rules: SpeechRules) -> list[Any]:
    """Presidio pattern recognisers for the rules' `patterns`, with {street_types} and {months} filled."""
    fills = {
        "street_types": "|".join(map(re.escape, rules.vocab.street_types)),
        "months": "|".join(map(re.escape, sorted(rules.vocab.months))),
    }
    out = []
    for p in rules.source.patterns:
        regex = p.regex
        for key, alt in fills.items():
            regex = regex.replace("{" + key + "}", alt)
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(
                f"recogniser pattern {p.name!r} is not a valid regular expression: {exc}"
            ) from None
        flags = 0 if p.case_sensitive else re.IGNORECASE
        rec = PatternRecognizer(
            supported_entity=p.entity,
            name=f"speech_{p.name}",
            patterns=[Pattern(p.name, regex, p.score)],
            context=p.context,
            global_regex_flags=flags | re.MULTILINE,
        )
        out.append(rec)
    return out


def offline_email_recognizer() -> Any:
    """Presidio's e-mail recogniser, validating domains on tldextract's bundled snapshot."""

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_tld_extractor()(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()
