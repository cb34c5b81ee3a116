"""Recognisers for personal data as speech recognition writes it, built from rules/recognizers.yaml.

Speech-recognition text reads numbers out ("four one five, five five five"), spells codes letter by
letter ("X-ray romeo four seven"), says e-mail addresses aloud ("david dot okafor at example dot com")
and writes names in lower case. Presidio's recognisers expect written text, so these add scanners over a
token stream, one module per family of personal data, as Presidio lays out its own recognisers:

    schema.py       the rule files' schema; reading and combining them
    vocabulary.py   tokens, spans, and the word lists (number words from qa_service.spoken)
    amounts.py      amounts, counts and durations: numbers that are ordinary speech
    sequences.py    digit and letter sequences: cards, phones, passports, references, postcodes
    dates.py        spoken dates and years; which dates can identify someone
    addresses.py    street addresses said aloud
    emails.py       e-mail addresses said aloud
    name_cues.py    names after "my name is" and in answers to a name question
    statements.py   conversation context: questions, their answers, what follows a mention
    rules.py        `SpeechRules`: the families compiled over one vocabulary, plus precision checks
    presidio.py     the adapter: `SpeechRecognizer`, pattern recognisers, the offline e-mail recogniser

Rules are data: the packaged YAML plus any files a deployment adds, validated on load.
"""

from qa_service.stages.recognizers.emails import offline_tld_extractor
from qa_service.stages.recognizers.presidio import SpeechRecognizer, offline_email_recognizer
from qa_service.stages.recognizers.rules import PACKAGED_RULES, SpeechRules, load_rules
from qa_service.stages.recognizers.sequences import luhn_ok
from qa_service.stages.recognizers.statements import Prompt
from qa_service.stages.recognizers.vocabulary import Span, Token

__all__ = [
    "PACKAGED_RULES",
    "Prompt",
    "Span",
    "SpeechRecognizer",
    "SpeechRules",
    "Token",
    "load_rules",
    "luhn_ok",
    "offline_email_recognizer",
    "offline_tld_extractor",
]
