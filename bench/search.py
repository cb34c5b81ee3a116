#!/usr/bin/env python3
"""Transcript search at scale: how long a search takes and what erasing a call costs the index.

Stores N scored calls whose redacted transcripts are drawn from a 5,000-word vocabulary (word
frequencies falling as 1/rank, 120 words a call), through the repository as the worker does, on
SQLite (FTS5) or PostgreSQL (tsvector + GIN). Then times, each the median of --repeat runs:
a search for a common word, a rare word, two words, and an external id (the page's first 50 hits);
and erasing one call, on SQLite with the index merge that takes the erased words out of its pages.

Usage: python bench/search.py [--calls 20000] [--database sqlite|postgresql] [--repeat 20]
PostgreSQL: QA_TEST_POSTGRES_URL (scripts/postgres.sh prints one).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa_service.storage.repository import ErasureNote, NewCall  # noqa: E402
from qa_service.storage.sql import open_repository  # noqa: E402

VOCABULARY = 5000
WORDS_PER_CALL = 120


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


def card(external_id: str, text: list[str]) -> dict:
    turns = [{"speaker": "agent" if i % 2 == 0 else "customer", "start": float(i), "end": i + 0.9,
              "text": " ".join(text[k:k + 12])} for i, k in enumerate(range(0, len(text), 12))]
    return {"call_id": external_id, "score": 80.0, "passed": True, "auto_fail": False,
            "rubric": {"id": "intake", "version": "1", "sha256": ""},
            "policies": {"id": "fees", "version": "1", "sha256": ""}, "transcript": turns,
            "criteria": [], "violations": [], "to_check": []}


def postgres_schema(base: str) -> str:
    """A URL on a schema of its own in this PostgreSQL database (dropped by `drop_schema`)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(base).set(drivername="postgresql+psycopg")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def drop_schema(url: str) -> None:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    schema = parsed.query["options"].split("=", 1)[1]
    engine = sa.create_engine(parsed.difference_update_query(["options"]), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qa-search-bench-"))
    if args.database == "sqlite":
        url = f"sqlite:///{folder / 'qa.db'}"
    else:
        url = postgres_schema(os.environ["QA_TEST_POSTGRES_URL"])
    repo = open_repository(url)
    rng = random.Random(7)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    start = time.perf_counter()
    ids = []
    for n in range(args.calls):
        call_id = str(uuid.uuid4())
        repo.add_call(NewCall(id=call_id, external_id=f"bench-{n}-{call_id[:8]}", agent_id=f"agent-{n % 200}",
                              call_date=date(2026, 1, 1) + timedelta(days=n % 300), rubric_id="intake",
                              rubric_version="1", policy_pack_id="fees", policy_pack_version="1",
                              input_kind="transcript"))
        repo.finish_call(call_id, card(f"bench-{n}", rng.choices(words, weights, k=WORDS_PER_CALL)))
        ids.append(call_id)
    stored_s = time.perf_counter() - start
    common, rare = words[0], words[-1]
    external = repo.get_call(ids[len(ids) // 2]).external_id or ""
    results = {
        "calls": args.calls, "database": args.database,
        "store_per_call_ms": round(stored_s * 1000 / args.calls, 2),
        "common_word_ms": median_ms(lambda: repo.search.find(common, limit=50), args.repeat),
        "rare_word_ms": median_ms(lambda: repo.search.find(rare, limit=50), args.repeat),
        "two_words_ms": median_ms(lambda: repo.search.find(f"{words[3]} {words[40]}", limit=50), args.repeat),
        "external_id_ms": median_ms(lambda: repo.find_call(external), args.repeat),
    }
    victims = iter(ids[: args.repeat])
    note = ErasureNote(id=str(uuid.uuid4()), key_id=None, key_name="bench", role="admin")
    results["erase_one_call_ms"] = median_ms(lambda: repo.erase_calls([next(victims)], receipt=note),
                                             args.repeat)
    for key, value in results.items():
        print(f"{key:>20}: {round(value, 2) if isinstance(value, float) else value}")  # noqa: T201
    repo.dispose()
    if args.database == "postgresql":
        drop_schema(url)


if __name__ == "__main__":
    main()
