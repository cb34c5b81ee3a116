"""The `qa-service` command line: process calls inline, run the API or a worker, manage keys and rules."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from qa_service.errors import ConfigError, Conflict, InputError, QAServiceError
from qa_service.records import CallMeta
from qa_service.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger("qa_service")


@dataclass(frozen=True)
class Job:
    """One call to process from the command line: audio or a text transcript, and its metadata."""

    meta: CallMeta
    audio: Path | None
    transcript: Path | None
    rubric: Path
    policies: Path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except QAServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="qa-service", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("process", help="score recordings or transcripts inline (no queue)")
    pr.add_argument("audio", nargs="*", type=Path, help="audio files (wav, flac, mp3, ogg, ...)")
    pr.add_argument("--manifest", type=Path, 
                    help="JSONL: audio, call_id, agent_id, call_date[, rubric, policies]")
    pr.add_argument("--transcript", type=Path, action="append", default=[],
                    help="a call that is already text: JSON turns or Agent:/Customer: lines")
    pr.add_argument("--rubric", type=Path, required=True)
    pr.add_argument("--policies", type=Path, required=True)
    pr.add_argument("--call-id")
    pr.add_argument("--agent-id", default="unknown")
    pr.add_argument("--call-date", type=_call_date, default=None, help="YYYY-MM-DD (default: today)")
    pr.add_argument("--channels", choices=["auto", "stereo", "stereo-agent-right", "mono"], default="auto")
    pr.add_argument("--out", type=Path, help="write CALL_ID.scorecard.json files here")
    pr.add_argument("--no-store", action="store_true", help="do not save scorecards in the database")
    pr.add_argument("--quiet", action="store_true", help="print only the summary table")
    pr.set_defaults(func=cmd_process)

    sv = sub.add_parser("serve", help="run the HTTP API")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=None,
                    help="API processes (default: WEB_CONCURRENCY, else 1); "
                         "more than one needs QA_SESSION_SECRET")
    sv.set_defaults(func=cmd_serve)

    wk = sub.add_parser("worker", help="run a queue worker (loads the models once)")
    wk.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    wk.set_defaults(func=cmd_worker)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    kc = keys.add_parser("create", help="create a key; prints it alone on the last line")
    kc.add_argument("--role", required=True, choices=["admin", "qa", "telephony", "supervisor"])
    kc.add_argument("--name", required=True)
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="every key: id, name, role, prefix, created, revoked (never the key)")
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key by its id (from `keys list`); it stops working at once")
    kr.add_argument("key_id", metavar="KEY_ID")
    kr.set_defaults(func=cmd_keys_revoke)

    rs = sub.add_parser("rescore", help="rescore stored calls with changed rules (no re-transcription)")
    rs.add_argument("--rubric", type=Path, required=True, help="new rubric (same id, usually a new version)")
    rs.add_argument("--policies", type=Path, help="new policy pack (default: each call's stored one)")
    rs.add_argument("--since", type=date.fromisoformat, help="first call date, YYYY-MM-DD")
    rs.add_argument("--until", type=date.fromisoformat, help="last call date, YYYY-MM-DD")
    rs.add_argument("--dry-run", action="store_true", help="report the impact without storing new versions")
    rs.add_argument("--report", type=Path, help="also write the impact report as JSON here")
    rs.set_defaults(func=cmd_rescore)

    rules = sub.add_parser("rubric", help="check and try rubrics and policy packs")
    rules_sub = rules.add_subparsers(dest="rubric_command", required=True)
    rc = rules_sub.add_parser("check", help="validate rubric or policy-pack files; explain every error")
    rc.add_argument("files", nargs="+", type=Path)
    rc.set_defaults(func=cmd_rubric_check)
    rt = rules_sub.add_parser("try", help="score a transcript and show what each rule matched and why")
    rt.add_argument("rubric", type=Path)
    rt.add_argument("transcript", type=Path, help="JSON turns or Agent:/Customer: lines")
    rt.add_argument("--policies", type=Path, help="policy pack (default: none)")
    rt.add_argument("--call-date", type=_call_date, default=None, help="YYYY-MM-DD (default: today)")
    rt.set_defaults(func=cmd_rubric_try)

    rt_ = sub.add_parser("retry", help="queue failed calls again (by id or external call id)")
    rt_.add_argument("calls", nargs="+", metavar="CALL_ID")
    rt_.set_defaults(func=cmd_retry)

    demo = sub.add_parser("demo", help="score the sample calls (through the queue when Redis answers)")
    demo.set_defaults(func=cmd_demo)
    return p


def _call_date(text: str) -> date:
    """A --call-date value, read as strictly as the API reads one."""
    from qa_service.intake import call_date_from

    try:
        return call_date_from(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_process(args: argparse.Namespace) -> int:
    """Run the pipeline inline over the given calls, store and print their scorecards."""
    from tqdm import tqdm

    from qa_service.pipeline import load_engines, process_audio, process_transcript
    from qa_service.rules.load import load_policy_pack, load_rubric

    settings = Settings()
    jobs = list(_jobs(args))
    if not jobs:
        raise QAServiceError("nothing to process: give audio files, --manifest or --transcript")
    needs_speech = any(j.audio for j in jobs)
    print(f"loading models ({settings.asr_model if needs_speech else 'text only'})...", file=sys.stderr)
    engines = load_engines(settings, speech=needs_speech)
    repo = None if args.no_store else _repository(settings)
    rules: dict[Path, Any] = {}

    def rubric_for(path: Path, loader: Any) -> Any:
        if path not in rules:
            rules[path] = loader(path)
        return rules[path]

    cards, failures = [], 0
    for job in tqdm(jobs, desc="calls", unit="call", disable=len(jobs) < 2, file=sys.stderr):
        rubric, policies = rubric_for(job.rubric, load_rubric), rubric_for(job.policies, load_policy_pack)
        try:
            source = job.audio or job.transcript
            if source is None or not source.is_file():
                raise InputError(f"no such file: {source}")
            if job.audio:
                card = process_audio(job.audio, job.meta, rubric, policies, engines)
            else:
                from qa_service.intake import read_transcript

                assert job.transcript is not None
                transcript = read_transcript(job.transcript, max_bytes=settings.max_transcript_bytes)
                card = process_transcript(transcript, job.meta, rubric, policies, engines)
        except QAServiceError as exc:
            failures += 1
            tqdm.write(f"{job.meta.call_id}: failed: {exc}", file=sys.stderr)
            continue
        data = card.to_dict()
        if repo is not None:
            _store(repo, job, data, rubric, policies)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{card.call_id}.scorecard.json").write_text(json.dumps(data, indent=2))
        cards.append(data)
        if not args.quiet and len(jobs) == 1:
            print(format_scorecard(data))
    if len(jobs) > 1 or args.quiet:
        print(format_table(cards))
    return 1 if failures else 0


def _jobs(args: argparse.Namespace) -> Iterator[Job]:
    from qa_service.intake import call_date_from

    call_date = args.call_date or date.today()
    for path in args.audio:
        yield Job(CallMeta(args.call_id or path.stem.split(".")[0], args.agent_id, call_date, args.channels),
                  path, None, args.rubric, args.policies)
    for path in args.transcript:
        yield Job(CallMeta(args.call_id or path.stem.split(".")[0], args.agent_id, call_date, args.channels),
                  None, path, args.rubric, args.policies)
    if args.manifest:
        base = args.manifest.parent
        for n, line in enumerate(args.manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                meta = CallMeta(str(row["call_id"]), str(row.get("agent_id", "unknown")),
                                call_date_from(str(row.get("call_date", call_date))),
                                row.get("channels", args.channels))
            except (ValueError, KeyError, InputError) as exc:
                raise QAServiceError(f"{args.manifest}:{n}: bad manifest line: {exc}") from exc
            audio = _resolve(row.get("audio"), base)
            transcript = _resolve(row.get("transcript"), base)
            if not audio and not transcript:
                raise QAServiceError(f"{args.manifest}:{n}: needs 'audio' or 'transcript'")
            yield Job(meta, audio, transcript, _resolve(row.get("rubric"), base) or args.rubric,
                      _resolve(row.get("policies"), base) or args.policies)


def _resolve(value: str | None, base: Path) -> Path | None:
    """A manifest path: relative to the manifest's folder, else to the working directory."""
    if not value:
        return None
    path = Path(value)
    return base / path if not path.is_absolute() and (base / path).exists() else path


def _repository(settings: Settings) -> Any:
    from qa_service.storage import open_repository

    return open_repository(settings.database_url)


def _store(repo: Any, job: Job, card: dict[str, Any], rubric: Any, policies: Any) -> None:
    """Save a scorecard made on the command line like one made by a worker (external id = call id)."""
    from qa_service.errors import Conflict
    from qa_service.storage import NewCall

    for kind, rules in (("rubric", rubric), ("policy_pack", policies)):
        try:
            repo.put_rules(kind, rules.id, rules.version, rules.sha256, rules.text)
        except Conflict:
            # The scorecard records the sha256 it was scored with, so it stays traceable.
            log.warning("%s %s version %s differs from the stored one; bump its version", kind, rules.id,
                        rules.version)
    call, _ = repo.add_call(NewCall(
        id=str(uuid.uuid4()), external_id=job.meta.call_id, agent_id=job.meta.agent_id,
        call_date=job.meta.call_date, rubric_id=rubric.id, rubric_version=rubric.version,
        policy_pack_id=policies.id, policy_pack_version=policies.version, channels=job.meta.channels,
        source="cli", input_kind="audio" if job.audio else "transcript",
    ))
    repo.start_call(call.id)
    repo.finish_call(call.id, card)


def format_scorecard(card: dict[str, Any]) -> str:
    """A readable summary: score, verdict, failed criteria, violations with quotes and times."""
    verdict = "PASS" if card["passed"] else "FAIL"
    lines = [f"{card['call_id']}  agent {card['agent_id']}  {card['call_date']}  "
             f"score {card['score']:.1f}  {verdict}" + ("  (auto-fail)" if card["auto_fail"] else "")]
    lines += [f"  ! {w}" for w in card.get("warnings", [])]
    failed = [c for c in card["criteria"] if c.get("applicable", True) and not c["passed"]]
    if failed:
        lines.append("  failed criteria:")
        lines += [f"    - {c['id']}: {c['title']} (-{c['max_points']:g})" for c in failed]
    for key, heading in (("violations", "violations"), ("to_check", "to check (not counted)")):
        if card.get(key):
            lines.append(f"  {heading}:")
            for v in card[key]:
                lines.append(f"    - [{v['kind']}] {v['id']} at {_clock(v['start'])} ({v['speaker']}): "
                             f"\"{v['text']}\"")
                if v.get("detail"):
                    lines.append(f"      {v['detail']}")
    return "\n".join(lines)


def format_table(cards: list[dict[str, Any]]) -> str:
    """One line per scorecard, for batches."""
    header = f"{'call':<16} {'agent':<14} {'date':<10} {'score':>6}  {'verdict':<7} violations"
    rows = [header, "-" * len(header)]
    for c in cards:
        verdict = "PASS" if c["passed"] else ("AUTO" if c["auto_fail"] else "FAIL")
        viol = ", ".join(v.get("policy_id") or v["id"] for v in c["violations"]) or "-"
        rows.append(f"{c['call_id']:<16} {c['agent_id']:<14} {c['call_date']:<10} {c['score']:>6.1f}  "
                    f"{verdict:<7} {viol}")
    return "\n".join(rows)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the settings, then run the API with uvicorn."""
    import os

    import uvicorn
    from pydantic import ValidationError

    from qa_service.web.session import app_secret

    if args.workers is not None:
        if args.workers < 1:
            raise InputError("--workers must be 1 or more")
        # Each process builds its own Settings: they learn how many serve from the environment.
        os.environ["WEB_CONCURRENCY"] = str(args.workers)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_setting_problems(exc)) from None
    app_secret(settings)  # several processes without QA_SESSION_SECRET: refused here, before any starts
    if args.host not in ("127.0.0.1", "localhost", "::1") and tuple(settings.trusted_hosts) == LOOPBACK_HOSTS:
        print(f"note: QA_TRUSTED_HOSTS allows {', '.join(LOOPBACK_HOSTS)} only: requests naming this "
              f"server otherwise get 400 'Invalid host header'", file=sys.stderr)
    uvicorn.run("qa_service.api.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=settings.web_concurrency)
    return 0


def _setting_problems(exc: Any) -> str:
    """What is wrong with the QA_* settings, one clause per setting, from pydantic's ValidationError."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"])
        named = message.startswith("QA_") or not field
        problems.append(message if named else f"QA_{field.upper()}: {message}")
    return "; ".join(problems)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker that preloads the models."""
    from qa_service.jobs import run_worker

    run_worker(Settings(), burst=args.burst)
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    """Rescore stored scorecards with a changed rubric (and policy pack) and print the impact."""
    import spacy
    from tqdm import tqdm

    from qa_service.jobs import rescore_from_cli
    from qa_service.rescore import rescore_stored
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.storage.repository import RescoreOverlap

    settings = Settings()
    repo = _repository(settings)
    rubric = load_rubric(args.rubric)
    policies = load_policy_pack(args.policies) if args.policies else None
    nlp = spacy.load(settings.spacy_model)
    with tqdm(desc="rescoring", unit="call", file=sys.stderr) as bar:
        if args.dry_run:
            report = rescore_stored(repo, rubric, policies, nlp, since=args.since, until=args.until,
                                    store=False, progress=bar.update)
        else:
            try:
                report = rescore_from_cli(repo, rubric, policies, nlp, settings=settings, since=args.since,
                                          until=args.until, progress=bar.update)
            except RescoreOverlap as exc:
                raise Conflict(f"{exc}; run this when it is done, or add --dry-run to see the impact "
                               "now") from None
    summary = report.summary()
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    print(format_impact(summary, rubric, dry_run=args.dry_run))
    return 0


def format_impact(summary: dict[str, Any], rubric: Any, *, dry_run: bool) -> str:
    """The rescore impact report for a terminal."""
    lines = [f"rescored {summary['calls']} calls with rubric {rubric.id} {rubric.version}"
             + (" (dry run: nothing stored)" if dry_run else ""),
             f"  score changed on {summary['score_changed']} calls, "
             f"mean change {summary['mean_score_change']:+.2f}",
             f"  verdict flipped: {summary['flipped_to_fail']} to fail, {summary['flipped_to_pass']} to pass"]
    for agent, flips in summary["agents_with_flips"].items():
        lines.append(f"    {agent}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in flips.items()))
    for label, key in (("new violations", "new_violations"), ("vanished violations", "vanished_violations")):
        if summary[key]:
            lines.append(f"  {label}: " + ", ".join(f"{v} x{n}" for v, n in summary[key].items()))
    if summary["refresher"]:
        lines.append("  refresher list (agents stating outdated policy):")
        for agent, facts in summary["refresher"].items():
            listed = ", ".join(f"{fact} ({len(calls)} call{'s' if len(calls) != 1 else ''})"
                               for fact, calls in facts.items())
            lines.append(f"    {agent}: {listed}")
    return "\n".join(lines)


def cmd_rubric_check(args: argparse.Namespace) -> int:
    """Validate rules files; print what is wrong with each, by field path and line."""
    from qa_service.errors import RulesError
    from qa_service.rules.load import check_file, explain

    bad = 0
    for path in args.files:
        try:
            print(check_file(path))
        except RulesError as exc:
            bad += 1
            print(explain(exc))
    return 1 if bad else 0


def cmd_rubric_try(args: argparse.Namespace) -> int:
    """Score one transcript with a rubric and show each rule's verdict, reason and evidence."""
    import spacy

    from qa_service.intake import read_transcript
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.rules.schema import PolicyPack
    from qa_service.stages.score import score

    settings = Settings()
    rubric = load_rubric(args.rubric)
    policies = (load_policy_pack(args.policies) if args.policies
                else PolicyPack(id="none", version="0", facts=[]))
    transcript = read_transcript(args.transcript, max_bytes=settings.max_transcript_bytes)
    nlp: Any = spacy.load(settings.spacy_model)
    result = score(transcript, rubric, policies, nlp, args.call_date or date.today())
    for c in result.criteria:
        mark = "n/a " if not c.applicable else ("PASS" if c.passed else "FAIL")
        print(f"{mark} {c.id} ({c.points:g}/{c.max_points:g}): {c.reason or c.title}")
        for e in c.evidence:
            print(f"       {_clock(e.start)} {e.speaker}: \"{e.text}\"")
    for label, items in (("VIOLATION", result.violations), ("TO CHECK", result.to_check)):
        for v in items:
            print(f"{label} [{v.kind}] {v.policy_id or v.id} at {_clock(v.evidence.start)}: {v.detail}")
            print(f"       {v.evidence.speaker}: \"{v.evidence.text}\"")
    print(f"score {result.score:.1f}, {'PASS' if result.passed else 'FAIL'}"
          + (" (auto-fail)" if result.auto_fail else ""))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Queue failed calls again; a worker picks them up."""
    from redis import Redis
    from rq import Queue

    from qa_service.jobs import enqueue_call, retry_failed_call

    settings = Settings()
    repo = _repository(settings)
    queue = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url))
    refused = 0
    for name in args.calls:
        try:
            call = repo.find_call(name) or repo.get_call(name)
            call = retry_failed_call(repo, call.id)
            enqueue_call(queue, call.id, timeout=settings.job_timeout_s)
            print(f"{name}: queued again as {call.id}")
        except QAServiceError as exc:
            refused += 1
            print(f"{name}: {exc}", file=sys.stderr)
    return 1 if refused else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Process the sample calls and print their scorecards."""
    from qa_service.demo import run_demo

    return run_demo(Settings())


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create an API key and print it alone on the last line."""
    from qa_service.auth import issue_key
    from qa_service.storage.review import audit

    repo = _repository(Settings())
    stored, key = issue_key(repo, role=args.role, name=args.name)
    audit(repo.engine, "create_key", key_name=_cli_user(), role="admin", target_kind="key",
          target_id=stored.id, details=f"role={args.role} name={args.name}"[:200])
    print(f"created {args.role} key {args.name!r} ({stored.id}); store it now, it is not shown again:",
          file=sys.stderr)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """Print every API key as a table: id, name, role, prefix, created, revoked."""
    repo = _repository(Settings())
    rows = [(k.id, k.name, k.role, f"{k.prefix}..." if k.prefix else "-",
             k.created_at.strftime("%Y-%m-%d %H:%M"), "revoked" if k.revoked else "active")
            for k in repo.list_keys()]
    if not rows:
        print("no API keys; make one with `qa-service keys create --role admin --name NAME`", file=sys.stderr)
        return 0
    print(_table(("id", "name", "role", "prefix", "created (UTC)", "state"), rows))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke an API key by id; revoking a revoked key changes nothing and says so."""
    from qa_service.auth import revoke_key
    from qa_service.storage.review import audit

    repo = _repository(Settings())
    key, changed = revoke_key(repo, args.key_id)
    audit(repo.engine, "revoke_key", key_name=_cli_user(), role="admin", target_kind="key", target_id=key.id,
          details=f"role={key.role} name={key.name}{'' if changed else ' already revoked'}"[:200])
    print(f"{key.role} key {key.name!r} ({key.id}) " + ("revoked" if changed else "was already revoked"))
    return 0


def _cli_user() -> str:
    # Who ran the command: the command line has no API key of its own, so the audit names the user.
    import getpass

    return f"cli:{getpass.getuser()}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in (header, *rows))
