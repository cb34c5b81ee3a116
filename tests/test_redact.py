"""Redaction with the real Presidio engines over the packaged spaCy model (no fakes)."""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from qa_service.errors import ConfigError
from qa_service.records import Segment, Transcript, Word
from qa_service.stages.redact import PresidioRedactor, Redactor, load_redactor


@pytest.fixture(scope="module")
def redactor() -> PresidioRedactor:
    return load_redactor(allow_list=["Northwind Migration Advisers", "Ana"])


def _segment(
    text: str, speaker: str = "customer", start: float = 0.0, seconds_per_word: float = 0.4
) -> Segment:
    """A segment with word timestamps laid out evenly, the way the recogniser reports them."""
    words = []
    t = start
    for m in re.finditer(r"\S+", text):
        words.append(Word(" " + m.group(), round(t, 3), round(t + seconds_per_word * 0.9, 3)))
        t += seconds_per_word
    return Segment(speaker=speaker, start=start, end=round(t, 3), text=text, words=tuple(words))


def _call(*turns: tuple[str, str]) -> Transcript:
    segs, t = [], 0.0
    for speaker, text in turns:
        seg = _segment(text, speaker, t)
        segs.append(seg)
        t = seg.end + 0.5
    return Transcript(segments=tuple(segs), duration_s=t)


def _redacted_text(redactor: PresidioRedactor, text: str) -> str:
    return redactor.redact(_call(("customer", text))).transcript.segments[0].text


def _digits(text: str) -> str:
    spoken = {
        "zero": "0",
        "oh": "0",
        "one": "1",
        "two": "2",
        "three": "3",
        "four": "4",
        "five": "5",
        "six": "6",
        "seven": "7",
        "eight": "8",
        "nine": "9",
    }
    return "".join(
        spoken.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w in spoken or w.isdigit()
    )


POSITIVE = [
    # (text, the raw part that must be gone, entity type expected in its place)
    ("My name is David Okafor and I would like to ask about a visa.", "Okafor", "PERSON"),
    ("yes my name is james whitfield", "whitfield", "PERSON"),
    ("good morning, I am tumbecker, I want to know the points", "tumbecker", "PERSON"),  # a name run together
    ("Hi, I'm Maria Gonzalez. I failed my visa application last year.", "Gonzalez", "PERSON"),
    ("my number is 415-555-0132 if you need it", "555-0132", "PHONE_NUMBER"),
    ("my number is four one five, five five five, zero one three two", "zero one three two", "PHONE_NUMBER"),
    (
        "you can call me on zero seven seven zero zero, nine zero zero, one two three",
        "nine zero zero",
        "PHONE_NUMBER",
    ),
    ("call me on +44 7700 900123 any time", "900123", "PHONE_NUMBER"),
    ("send it to david.okafor@example.com please", "okafor@example", "EMAIL_ADDRESS"),
    ("send me the checklist at david dot okafor at example dot com?", "okafor", "EMAIL_ADDRESS"),
    ("my email is j smith ninety nine at outlook dot com", "smith ninety nine", "EMAIL_ADDRESS"),
    ("you can email me at john at gmail", "john", "EMAIL_ADDRESS"),
    ("my card is 4111 1111 1111 1111", "1111 1111", "CREDIT_CARD"),
    ("My card number is $41, 1, 1, 1, 1,", "41, 1, 1, 1, 1", "ID"),  # a stray "$" and a cut-short card
    (
        "the card number is four one one one, one one one one, one one one one, one one one one",
        "one one one one",
        "CREDIT_CARD",
    ),
    ("card number 4 5 3 2 0 1 5 1 1 2 8 3 0 3 6 6", "0 1 5 1", "CREDIT_CARD"),  # valid Luhn, no grouping
    # A card number the recogniser cut to its first four digits, "card" misheard: still a card's digits.
    ("current number is for one one one one", "one one one one", "ID"),
    ("the card ending in 4 4 2 1, yes", "4 4 2 1", "ID"),
    ("I was born on the fourteenth of March nineteen eighty seven", "nineteen eighty seven", "DATE_TIME"),
    ("April ninth, nineteen eighty.", "nineteen eighty", "DATE_TIME"),
    ("It is June 2nd, 1990.", "1990", "DATE_TIME"),
    ("the expiry is oh nine twenty eight", "twenty eight", "DATE_TIME"),
    ("my passport number is X, R, four, seven, one, two, nine, eight, three", "nine, eight", "US_PASSPORT"),
    ("my reference number is N W, seven seven three, one nine two", "one nine two", "ID"),
    ("reference x-ray romeo four seven one two", "romeo", "ID"),
    ("my post code is N W one, four R Y", "four R Y", "LOCATION"),
    ("I live at 14 Baker Street in town", "Baker", "LOCATION"),
    ("my new address is twenty two Maple Avenue", "Maple", "LOCATION"),
    ("fine, my postcode is LS6, 2QD", "2QD", "LOCATION"),
    ("it is HK 447 912 0", "447 912", "ID"),
    ("The case number is 729, free free 1, 0, 5.", "1, 0, 5", "ID"),
    # Card, expiry and code in one breath: too long for one card, still one identifier.
    ("A visa card number is 5-4-5-4-5-4-5-4-5-4-5-4-5-4-5-4-1-1-2-7-4-4-2.", "5-4-5-4", "ID"),
    # Calls in Chinese: a number read digit by digit.
    ("我的电话号码是幺三八，零零一三，八零零零。", "零零一三", "ID"),
    ("身份证号码是一一零一零五一九八七", "零五一九八七", "ID"),
    ("你好，我叫王小明，想咨询一下技术工人签证。", "王小明", "PERSON"),
    ("我的名字是李娜。", "李娜", "PERSON"),
    ("好的，王先生，请问您的出生日期？", "王先", "PERSON"),
]


@pytest.mark.parametrize(("text", "raw", "entity"), POSITIVE, ids=[p[1] for p in POSITIVE])
def test_personal_data_is_replaced(redactor: PresidioRedactor, text: str, raw: str, entity: str) -> None:
    out = _redacted_text(redactor, text)
    assert raw.lower() not in out.lower()
    assert f"<{entity}>" in out
    # No 4-digit run of the original number survives, whether written as digits or words.
    original, left = _digits(raw), _digits(out)
    if len(original) >= 4:
        assert not any(original[i : i + 4] in left for i in range(len(original) - 3))


NEGATIVE = [
    "Processing takes about twelve weeks once your file is complete.",
    "We will review your points together next week, and I will email the checklist today.",
    "Under the current rules the pass mark is sixty seven points.",
    "The application fee is six hundred and forty dollars.",
    "The visa fee is $595, and our assessment is $100.",
    "The package is $2,000 or $1,420.50 in two payments.",
    "The pass mark is 67 points and processing takes 12 weeks.",
    "Hello, thank you for calling. Have a good day!",
    "I will email you at the end of the week.",
    "Your appointment is on the 3rd of June at 10 am.",
    "We are open from nine to five, Monday to Friday.",
    "It costs about 12 pounds 50, or two thousand and fifty dollars for the family.",
    "Good morning, how can I help you today?",
    "Is there anything else I can help you with?",
    "Great. Sure, that is fine, thanks.",
    "I have been waiting for three months and called twice.",
    "The rules changed in July.",
    "The number is about two thousand dollars a year.",
    "The number is fifteen hundred, or twelve fifty with the discount.",
    "I am applying for a visa and I'm hoping to move, this is regarding my application.",
    "Hi, I am unemployed at the moment and studying, thanks, that helps.",
    "The number of points is sixty five, and the numbers are in the letter.",
    "I would like to ask about the skilled worker visa.",
    "As of today the pass Mark is 65 points.",
    "The fee went up from $500 to $650 on the first of July.",
    "Can I have your email address? Sure, call me back Monday at 3-30.",
    "To verify your date of birth, and it takes ten weeks and the fee is one hundred and fifty dollars.",
    "Thanks for calling North Wind Migration Advisors.",  # allow-list, as recognition splits it
    # Chinese characters are words, not letters spelled one by one; amounts are not read digit by digit.
    "测试完成后,将状态更改为成功后,你会发现测试中包含的两个模型都有一个错误率。",
    "技术工人签证的申请费是六百四十美元,处理时间大约十二周。",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_ordinary_speech_is_kept(redactor: PresidioRedactor, text: str) -> None:
    assert _redacted_text(redactor, text) == text


def test_allow_list_keeps_company_and_agent_names(redactor: PresidioRedactor) -> None:
    text = "Thank you for calling Northwind, my name is Ana."
    assert _redacted_text(redactor, text) == text
    plain = load_redactor()
    assert "Ana" not in _redacted_text(plain, "Hello Ana, my name is Ana Lopez.")


def test_record_keeps_segments_and_locates_each_redaction(redactor: PresidioRedactor) -> None:
    call = _call(
        ("agent", "Thank you for calling Northwind, my name is Ana."),
        ("customer", "Hello, my name is David Okafor and my number is 415-555-0132."),
    )
    red = redactor.redact(call)
    assert isinstance(red.transcript, Transcript)
    assert len(red.transcript.segments) == len(call.segments)
    for before, after in zip(call.segments, red.transcript.segments, strict=True):
        assert (before.speaker, before.start, before.end) == (after.speaker, after.start, after.end)
        assert len(before.words) == len(after.words)
    seg = red.transcript.segments[1]
    assert seg.text == "Hello, my name is <PERSON> and my number is <PHONE_NUMBER>."
    # Words inside a span carry the placeholder, so no raw value is left in the record.
    raw_words = " ".join(w.text for w in seg.words)
    assert "Okafor" not in raw_words and "415" not in raw_words
    assert "<PERSON>" in raw_words and "<PHONE_NUMBER>" in raw_words

    by_type = {r.entity_type: r for r in red.redactions}
    assert set(by_type) == {"PERSON", "PHONE_NUMBER"}
    person = by_type["PERSON"]
    original = call.segments[1]
    # Offsets index the original text; times come from the words the span covers.
    assert original.text[person.char_start : person.char_end] == "David Okafor"
    assert person.segment == 1 and person.speaker == "customer"
    david = next(w for w in original.words if w.text.strip() == "David")
    okafor = next(w for w in original.words if w.text.strip() == "Okafor")
    assert (person.start, person.end) == (david.start, okafor.end)
    phone = by_type["PHONE_NUMBER"]
    assert original.text[phone.char_start : phone.char_end] == "415-555-0132"
    assert phone.start > person.end


def test_times_fall_back_to_segment_proportion_without_words(redactor: PresidioRedactor) -> None:
    text = "Hi there, the number is 415-555-0132"
    seg = Segment(speaker="customer", start=10.0, end=20.0, text=text)
    red = redactor.redact(Transcript(segments=(seg,), duration_s=20.0))
    (r,) = red.redactions
    assert red.transcript.segments[0].text == "Hi there, the number is <PHONE_NUMBER>"
    assert r.start == pytest.approx(10.0 + 10.0 * text.index("415") / len(text))
    assert r.end == pytest.approx(20.0)


def test_answer_to_a_question_is_redacted_in_context(redactor: PresidioRedactor) -> None:
    answer = "Sure, it is the eleventh of the eleventh, ninety two."
    # On its own the answer is a few numbers, and they stay: nothing says they are a date of birth.
    assert _redacted_text(redactor, answer) == answer
    red = redactor.redact(
        _call(("agent", "To confirm your identity, what is your date of birth?"), ("customer", answer))
    )
    out = red.transcript.segments[1].text
    assert "ninety two" not in out and "<DATE_TIME>" in out
    assert out.startswith("Sure, it is")  # the ordinary words of the turn stay


def test_answer_is_named_by_the_question(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("agent", "Please read me the long number on your card, and the expiry."), ("customer", "12 29")
        )
    )
    assert red.transcript.segments[1].text == "<DATE_TIME>"
    assert [r.entity_type for r in red.redactions] == ["DATE_TIME"]


def test_number_split_over_segments_is_read_together(redactor: PresidioRedactor) -> None:
    # Read out slowly, each digit can come back from recognition as a segment of its own.
    digits = ["6.", "4.", "6.", "2.", "0.", "1.", "7.", "7.", "8.", "9."]
    turns = [("agent", "And the best phone number to reach you?"), ("customer", "Sure, it is")]
    turns += [("customer", d) for d in digits] + [("customer", "Okay, thanks.")]
    red = redactor.redact(_call(*turns))
    texts = [s.text for s in red.transcript.segments]
    assert texts[2:12] == ["<PHONE_NUMBER>."] * 10
    assert texts[12] == "Okay, thanks."
    # Two numbers in two sentences are not one.
    red = redactor.redact(_call(("customer", "I have 2."), ("customer", "And 3 more.")))
    assert [s.text for s in red.transcript.segments] == ["I have 2.", "And 3 more."]
    # A number said again at the start of the next segment is the same number, not a longer one.
    red = redactor.redact(_call(("unknown", "It's 2017."), ("unknown", "2017 Ford Fusion, okay.")))
    assert [s.text for s in red.transcript.segments] == ["It's 2017.", "2017 Ford Fusion, okay."]


def test_customer_statements_do_not_make_the_agents_words_an_answer(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("customer", "And my birthday is May 5, 1968."),
            ("agent", "Thank you, the family visa takes around 6 months."),
            ("customer", "Her case number is 729-331-05."),
            ("agent", "Thank you, I have noted case number 4 your wife, is there anything else?"),
        )
    )
    texts = [s.text for s in red.transcript.segments]
    assert texts[0] == "And my birthday is <DATE_TIME>."
    assert texts[1] == "Thank you, the family visa takes around 6 months."
    assert "729" not in texts[2]
    assert texts[3] == "Thank you, I have noted case number 4 your wife, is there anything else?"


def test_statement_reaches_past_garbled_words(redactor: PresidioRedactor) -> None:
    text = "and my reference number in the middle of you, Heaven, Heaven, 3, 1, 9, 2."
    out = _redacted_text(redactor, text)
    assert "3, 1, 9, 2" not in out and out.startswith("and my reference number in the middle of you")


def test_each_question_in_a_segment_opens_its_own_answer(redactor: PresidioRedactor) -> None:
    # One agent segment asks for a name, then (after the answer, which overlaps it) for a card.
    agent = _segment(
        "Of course, who am I speaking with? Thanks, what card would you like to use?", "agent", 10.0
    )
    answer = _segment("Lucas, Ferreira.", "customer", 12.6)  # said while the agent segment runs on
    card = _segment("The number is 4111 1111 1111 1111.", "customer", 20.0)
    red = redactor.redact(Transcript(segments=(agent, answer, card), duration_s=30.0))
    assert red.transcript.segments[1].text == "<PERSON>."  # first and last name: one span
    assert red.transcript.segments[2].text == "The number is <CREDIT_CARD>."


def test_security_answers_are_redacted(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("agent", "For security, what is the name of your first school?"),
            ("customer", "It was St. Bartholomew."),
        )
    )
    assert "Bartholomew" not in red.transcript.segments[1].text


def test_reference_number_after_question(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("agent", "Could you read me your application reference please?"),
            ("customer", "yes it's A B four four nine"),
        )
    )
    out = red.transcript.segments[1].text
    assert "four four nine" not in out and out.startswith("yes it's")


def test_name_said_back_is_redacted_everywhere(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("customer", "Yes, my name is James Whitfield."),
            ("agent", "Thanks James, what is your date of birth?"),
            ("customer", "April ninth, nineteen eighty."),
            ("agent", "Thank you james, that is all done."),
        )
    )
    texts = [s.text for s in red.transcript.segments]
    assert all("james" not in t.lower() for t in texts)
    assert texts[1].startswith("Thanks <PERSON>")
    assert texts[3] == "Thank you <PERSON>, that is all done."


def test_a_name_misheard_as_a_word_is_redacted_too(redactor: PresidioRedactor) -> None:
    red = redactor.redact(
        _call(
            ("customer", "Yes, my name is James Whitfield."),
            ("agent", "and games. Now I need to verify your identity."),
            ("agent", "There are no games here and the names are on file."),
        )
    )
    texts = [s.text for s in red.transcript.segments]
    assert texts[1] == "and <PERSON>. Now I need to verify your identity."
    # Only a like-sounding letter: "names" is not "james" misheard.
    assert "names are on file" in texts[2]


def test_single_word_guesses_are_not_carried_through_the_call(redactor: PresidioRedactor) -> None:
    # The NER may call a brand a person once; that guess must not spread to every mention.
    turns = [
        ("customer", "So you're kind of comparing Shopify versus Azure."),
        ("agent", "Information may be accessed internationally by Microsoft, our service provider."),
        ("agent", "The fortunate thing about Microsoft is it's Microsoft, it's Azure."),
        ("customer", "Well, does Microsoft offer a service that can look at my application?"),
    ]
    red = redactor.redact(_call(*turns))
    assert "Microsoft" in red.transcript.segments[2].text and "Azure" in red.transcript.segments[2].text
    assert "Microsoft" in red.transcript.segments[3].text


def test_no_network_and_no_warnings_while_loading_and_redacting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with caplog.at_level(logging.WARNING):
        fresh = load_redactor(reuse=False)
        out = _redacted_text(fresh, "mail me at jane.doe@example.co.uk or visit www.example.org today")
    assert attempts == []
    assert "<EMAIL_ADDRESS>" in out and "jane.doe" not in out
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_engines_load_once_and_allow_lists_are_per_redactor(redactor: PresidioRedactor) -> None:
    again = load_redactor(allow_list=["Ana"])
    assert again.analyzer is load_redactor().analyzer
    per_call = again.with_allow_list(["Priya"])
    assert per_call.analyzer is again.analyzer
    text = "Hello Priya, this is Ana from Northwind."
    assert "Priya" not in _redacted_text(again, text) and "Ana" in _redacted_text(again, text)
    assert _redacted_text(per_call, text) == text


RULE_PHRASES = ["thanks for calling harbourline", "welcome to harbourline", "amazing grace package",
                "is there anything else i can help with", "thank you for calling meridian",
                "welcome to meridian freight"]


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        # The company's name in the rubric's phrases is not personal data, however the NER reads it.
        ("Thanks for calling Harbourline, this is Priya speaking.", "Harbourline", "Priya"),
        ("Thanks for calling Harbour Line, this is Priya speaking.", "Harbour Line", "Priya"),  # as heard
        # An ordinary word in a phrase does not spare a caller of that name.
        ("Hello, my name is Grace Whitfield.", "Hello", "Grace"),
        ("Thanks for calling Harbourline. Could I take your name? Tomasz.", "Harbourline", "Tomasz"),
        # A name of English words is kept where it is said as in a phrase, not elsewhere.
        ("Thank you for calling Meridian Freight, my name is Tom.", "Meridian Freight", "Tom"),
        ("Thank you for calling Meridian. My name is Tom.", "Meridian", "Tom"),
        ("My name is Grace Meridian.", "My name is", "Meridian"),
    ],
)
def test_rules_vocabulary_keeps_the_companys_own_names(redactor: PresidioRedactor, text: str, kept: str,
                                                       gone: str) -> None:
    plain = load_redactor()
    ruled = plain.with_rules_vocabulary(RULE_PHRASES)
    assert ruled.analyzer is plain.analyzer
    out = _redacted_text(ruled, text)
    assert kept in out and gone not in out, out


def test_missing_spacy_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_model"):
        load_redactor("no_such_model")


def test_protocol_and_speed(redactor: PresidioRedactor) -> None:
    assert isinstance(redactor, PresidioRedactor)
    r: Redactor = redactor
    # About three minutes of conversation: 60 turns of ordinary speech with some personal data.
    turns = []
    for i in range(30):
        turns.append(
            ("agent", "Thanks for that. Could you confirm your phone number and date of birth please?")
        )
        turns.append(
            (
                "customer",
                f"Sure, it is four one five, five five five, zero one {i % 10} two, and I was "
                "born on the third of July nineteen seventy nine.",
            )
        )
    call = _call(*turns)
    # CPU time, not wall time: the bound is about our work, not about other processes sharing the cores.
    t0 = time.process_time()
    red = r.redact(call)
    elapsed = time.process_time() - t0
    assert elapsed < 1.0, f"redaction took {elapsed:.2f} s"
    assert sum(x.entity_type == "PHONE_NUMBER" for x in red.redactions) == 30
    assert all("seventy nine" not in s.text for s in red.transcript.segments)
