"""The `qa-service` command line: process calls inline, run the API or a worker, manage keys and rules."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from qa_service.errors import ConfigError, Conflict, InputError, QAServiceError
from qa_service.inline import Job, process_jobs, read_manifest
from qa_service.records import CallMeta
from qa_service.report import clock, format_impact
from qa_service.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger("qa_service")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # The one Settings of this command, from QA_* variables (not needed to check rules files).
        settings = load_settings(args) if args.func is not cmd_rubric_check else None
        return int(args.func(args, settings) or 0)
    except QAServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def load_settings(args: argparse.Namespace) -> Settings:
    """The settings from the environment; ConfigError naming each bad QA_* variable."""
    from pydantic import ValidationError

    if getattr(args, "workers", None) is not None:
        if args.workers < 1:
            raise InputError("--workers must be 1 or more")
        # Each API process builds its own Settings: they learn how many serve from the environment.
        os.environ["WEB_CONCURRENCY"] = str(args.workers)
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_setting_problems(exc)) from None


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
    pr.add_argument("--channel", choices=["call", "chat", "email", "im"], default=None,
                    help="how the conversation was held (default: as the transcript says, else chat for "
                         "transcripts and call for audio); response-time rules differ by channel")
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
    kc.add_argument("--role", required=True, choices=["admin", "qa", "telephony", "supervisor", "agent"])
    kc.add_argument("--name", required=True)
    kc.add_argument("--team", action="append", metavar="TEAM",
                    help="scope a supervisor or qa key to this team's calls (repeat for more teams)")
    kc.add_argument("--vendor", action="append", metavar="VENDOR",
                    help="scope a supervisor or qa key to this vendor's calls (repeat; with --team, both "
                         "must match)")
    kc.add_argument("--agent", metavar="AGENT_ID",
                    help="for --role agent (required): the agent whose own scorecards the key reads, "
                         "acknowledges and disputes")
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

    er = sub.add_parser("erase", help="erase calls everywhere (rows, scorecards, reviews, stored objects, "
                                      "queued jobs); prints the receipt")
    which = er.add_mutually_exclusive_group(required=True)
    which.add_argument("--call", metavar="ID", help="the call's id")
    which.add_argument("--external-id", metavar="X", help="the call id its sender gave it")
    which.add_argument("--agent", metavar="A", help="every call of this agent")
    er.add_argument("--yes", action="store_true", help="erase without asking (nothing brings the calls back)")
    er.set_defaults(func=cmd_erase)

    sw = sub.add_parser("sweep", help="delete what the QA_RETAIN_* settings no longer allow (workers do it "
                                      "hourly)")
    sw.set_defaults(func=cmd_sweep)

    certs_sub = _records_commands(sub, "certifications", "agents' certifications",
                                  "agent_id,name,covers,issued,expires", cmd_certifications_import)
    cl = certs_sub.add_parser("list", help="certifications: all, one agent's, expiring soon or lapsed")
    cl.add_argument("--agent", metavar="A", help="only this agent's")
    which_certs = cl.add_mutually_exclusive_group()
    which_certs.add_argument("--expiring", type=int, metavar="DAYS", help="only those expiring within DAYS")
    which_certs.add_argument("--lapsed", action="store_true", help="only those expired and not renewed")
    cl.set_defaults(func=cmd_certifications_list)

    training_sub = _records_commands(sub, "training", "refresher training records",
                                     "agent_id,pack_id,version,completed", cmd_training_import)
    tl = training_sub.add_parser("list", help="training records, by agent and policy pack version")
    tl.add_argument("--agent", metavar="A")
    tl.add_argument("--pack", metavar="PACK_ID")
    tl.add_argument("--version", metavar="V")
    tl.add_argument("--untrained", action="store_true",
                    help="instead: agents with calls under --pack (or certified for it) not trained "
                         "on --version")
    tl.set_defaults(func=cmd_training_list)

    teams_sub = _records_commands(sub, "teams", "agents' teams and vendors by date",
                                  "agent_id,team,vendor,from,to; `to` empty while the agent is still there",
                                  cmd_teams_import)
    tml = teams_sub.add_parser("list", help="memberships: all, one agent's, one team's or vendor's")
    tml.add_argument("--agent")
    tml.add_argument("--team")
    tml.add_argument("--vendor")
    tml.set_defaults(func=cmd_teams_list)

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


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    """Run the pipeline inline over the given calls, store and print their scorecards."""
    return process_jobs(settings, list(_jobs(args)), store=not args.no_store, out=args.out, quiet=args.quiet)


def _jobs(args: argparse.Namespace) -> Iterator[Job]:
    call_date = args.call_date or date.today()
    for path in args.audio:
        yield Job(CallMeta(args.call_id or path.stem.split(".")[0], args.agent_id, call_date, args.channels,
                           args.channel), path, None, args.rubric, args.policies)
    for path in args.transcript:
        yield Job(CallMeta(args.call_id or path.stem.split(".")[0], args.agent_id, call_date, args.channels,
                           args.channel), None, path, args.rubric, args.policies)
    if args.manifest:
        yield from read_manifest(args.manifest, rubric=args.rubric, policies=args.policies,
                                 call_date=call_date, channels=args.channels, channel=args.channel)


def _repository(settings: Settings) -> Any:
    from qa_service.storage import open_repository

    return open_repository(settings.database_url)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Check the settings, then run the API with uvicorn."""
    import uvicorn

    from qa_service.access.session import app_secret

    app_secret(settings)  # several processes without QA_SESSION_SECRET: refused here, before any starts
    if args.host not in ("127.0.0.1", "localhost", "::1") and tuple(settings.trusted_hosts) == LOOPBACK_HOSTS:
        print(f"note: QA_TRUSTED_HOSTS allows {', '.join(LOOPBACK_HOSTS)} only: requests naming this "
              f"server otherwise get 400 'Invalid host header'", file=sys.stderr)
    uvicorn.run("qa_service.app:app_from_env", factory=True, host=args.host, port=args.port,
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


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run an RQ worker that preloads the models."""
    from qa_service.worker.run import run_worker

    run_worker(settings, burst=args.burst)
    return 0


def cmd_rescore(args: argparse.Namespace, settings: Settings) -> int:
    """Rescore stored scorecards with a changed rubric (and policy pack) and print the impact."""
    import spacy
    from tqdm import tqdm

    from qa_service.rescore import rescore_stored
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.services.rescores import rescore_now
    from qa_service.storage.repository import RescoreOverlap

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
                report = rescore_now(store=repo, settings=settings, rubric=rubric, policies=policies, nlp=nlp,
                                     since=args.since, until=args.until, progress=bar.update)
            except RescoreOverlap as exc:
                raise Conflict(f"{exc}; run this when it is done, or add --dry-run to see the impact "
                               "now") from None
    summary = report.summary()
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    print(format_impact(summary, rubric, dry_run=args.dry_run))
    return 0


def cmd_rubric_check(args: argparse.Namespace, settings: Settings | None) -> int:
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


def cmd_rubric_try(args: argparse.Namespace, settings: Settings) -> int:
    """Score one transcript with a rubric and show each rule's verdict, reason and evidence."""
    import spacy

    from qa_service.intake import read_transcript
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.rules.schema import PolicyPack
    from qa_service.stages.score import score

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
            print(f"       {clock(e.start)} {e.speaker}: \"{e.text}\"")
    for label, items in (("VIOLATION", result.violations), ("TO CHECK", result.to_check)):
        for v in items:
            print(f"{label} [{v.kind}] {v.policy_id or v.id} at {clock(v.evidence.start)}: {v.detail}")
            print(f"       {v.evidence.speaker}: \"{v.evidence.text}\"")
    print(f"score {result.score:.1f}, {'PASS' if result.passed else 'FAIL'}"
          + (" (auto-fail)" if result.auto_fail else ""))
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Queue failed calls again; a worker picks them up."""
    from redis import Redis
    from rq import Queue

    from qa_service.services.calls import retry_call
    from qa_service.storage.objects import input_store

    repo = _repository(settings)
    inputs = input_store(settings)
    queue = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url))
    refused = 0
    for name in args.calls:
        try:
            call = repo.find_call(name) or repo.get_call(name)
            call = retry_call(store=repo, inputs=inputs, settings=settings, queue=queue, call_id=call.id)
            print(f"{name}: queued again as {call.id}")
        except QAServiceError as exc:
            refused += 1
            print(f"{name}: {exc}", file=sys.stderr)
    return 1 if refused else 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    """Erase one call (by id or external id) or every call of an agent, and print the receipt as JSON."""
    from redis import Redis

    from qa_service.services.erasure import Asker, calls_to_erase, erase_calls
    from qa_service.storage.objects import input_store

    repo = _repository(settings)
    calls = calls_to_erase(store=repo, call_id=args.call, external_id=args.external_id, agent_id=args.agent)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError(f"this erases {len(calls)} call(s) for good: add --yes to confirm")
        answer = input(f"erase {len(calls)} call(s) for good? type 'erase' to confirm: ")
        if answer.strip() != "erase":
            print("nothing was erased", file=sys.stderr)
            return 1
    receipt = erase_calls(store=repo, objects=input_store(settings), redis=Redis.from_url(settings.redis_url),
                          settings=settings, calls=calls, asker=Asker(key_id=None, name=_cli_user()),
                          external_id=args.external_id, agent_id=args.agent)
    print(json.dumps(receipt.to_dict(), indent=2, sort_keys=True))
    return 0


def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    """Run the retention sweep once and print what it deleted."""
    from redis import Redis

    from qa_service.services.retention import sweep
    from qa_service.storage.objects import input_store

    done = sweep(store=_repository(settings), objects=input_store(settings),
                 redis=Redis.from_url(settings.redis_url), settings=settings)
    print(" ".join(f"{k}={v}" for k, v in done.items()))
    return 0


def _read_csv_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None


def _records_commands(sub: Any, name: str, what: str, columns: str,
                      run_import: Callable[[argparse.Namespace, Settings], int]) -> Any:
    """The `NAME import FILE.csv` command of a records file (all lines or, when one is bad, none); returns
    the group's subcommands for its `list`."""
    group = sub.add_parser(name, help=f"{what}: import a CSV file, list them")
    commands = group.add_subparsers(dest=f"{name}_command", required=True)
    imp = commands.add_parser("import", help=f"import a CSV file ({columns}): all lines or, when one is bad, "
                                             "none")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.set_defaults(func=run_import)
    return commands


def _import_file(args: argparse.Namespace, settings: Settings, action: str,
                 load: Callable[[Any, str], Any], put: Callable[[Any, Any], Any]) -> int:
    """Read a records file whole (`load`: ImportRefused naming every bad line), store it (`put`), record
    the import in the audit log and print what it changed."""
    repo = _repository(settings)
    counts = put(repo, load(repo, _read_csv_file(args.file)))
    repo.audit.record(action, key_name=_cli_user(), role="admin",
                      details=f"added={counts.added} updated={counts.updated} unchanged={counts.unchanged}")
    print(f"{args.file}: {counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged")
    return 0


def cmd_certifications_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import certifications from a CSV file; a bad line refuses the whole file, naming every bad line."""
    from qa_service.services import certification as certs

    return _import_file(args, settings, "import_certifications",
                        lambda _, text: certs.read_certifications(text),
                        lambda repo, items: certs.import_certifications(store=repo, items=items))


def cmd_certifications_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print certifications as a table (all, one agent's, expiring within DAYS, or lapsed)."""
    from datetime import UTC, datetime

    from qa_service.services import certification as certs
    from qa_service.storage.paging import MAX_PAGE_SIZE, Paged, every

    repo = _repository(settings)
    today = datetime.now(UTC).date()
    if args.expiring is not None or args.lapsed:
        def read(cursor: str | None) -> Paged[certs.Expiring]:
            if args.lapsed:
                return certs.lapsed(store=repo, today=today, cursor=cursor, page_size=MAX_PAGE_SIZE)
            return certs.expiring(store=repo, today=today, within_days=args.expiring, cursor=cursor,
                                  page_size=MAX_PAGE_SIZE)

        items = [(i.certification, str(i.days_left)) for i in every(read)
                 if args.agent is None or i.certification.agent_id == args.agent]
    else:
        items = [(c, str((c.expires_on - today).days))
                 for c in repo.certification.certifications(agent_id=args.agent)]
    rows = [(c.agent_id, c.name, ";".join(c.covers), c.issued_on.isoformat(), c.expires_on.isoformat(), days)
            for c, days in items]
    if not rows:
        print("no certifications", file=sys.stderr)
        return 0
    print(_table(("agent", "name", "covers", "issued", "expires", "days left"), rows))
    return 0


def cmd_training_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import training records from a CSV file; a bad line refuses the whole file, naming every bad line."""
    from qa_service.services import certification as certs

    return _import_file(args, settings, "import_training", certs.read_training,
                        lambda repo, items: certs.import_training(store=repo, items=items))


def cmd_training_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print training records as a table, or the agents not yet trained on a pack version."""
    from qa_service.services import certification as certs
    from qa_service.storage.paging import MAX_PAGE_SIZE, every

    repo = _repository(settings)
    if args.untrained:
        if not args.pack or not args.version:
            raise InputError("--untrained needs --pack and --version")
        pack, version = args.pack, args.version
        agents = list(every(lambda cursor: certs.untrained(store=repo, pack_id=pack, version=version,
                                                           cursor=cursor, page_size=MAX_PAGE_SIZE)))
        if not agents:
            print(f"every agent of {args.pack} is trained on version {args.version}", file=sys.stderr)
            return 0
        print(_table(("agent", "took calls", "certified"),
                     [(a["agent_id"], "yes" if a["took_calls"] else "no", "yes" if a["certified"] else "no")
                      for a in agents]))
        return 0
    rows = [(r.agent_id, r.pack_id, r.pack_version, r.completed_on.isoformat())
            for r in repo.certification.training(agent_id=args.agent, pack_id=args.pack,
                                                 pack_version=args.version)]
    if not rows:
        print("no training records", file=sys.stderr)
        return 0
    print(_table(("agent", "pack", "version", "completed"), rows))
    return 0


def cmd_teams_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import team memberships from a CSV file; a bad line refuses the whole file, naming every bad line."""
    from qa_service.services import teams

    return _import_file(args, settings, "import_memberships", lambda _, text: teams.read_memberships(text),
                        lambda repo, items: teams.put_memberships(store=repo, items=items))


def cmd_teams_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print memberships as a table (all, one agent's, one team's or vendor's)."""
    from qa_service.storage.repository import Scope

    repo = _repository(settings)
    scope = Scope(teams=(args.team,) if args.team else (), vendors=(args.vendor,) if args.vendor else ())
    rows = [(m.agent_id, m.team, m.vendor, m.since.isoformat(), m.until.isoformat() if m.until else "-")
            for m in repo.teams.memberships(agent_id=args.agent,
                                            scope=scope if scope.teams or scope.vendors else None)]
    if not rows:
        print("no memberships; import them with `qa-service teams import FILE.csv`", file=sys.stderr)
        return 0
    print(_table(("agent", "team", "vendor", "from", "to"), rows))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Process the sample calls and print their scorecards."""
    from qa_service.demo import run_demo

    return run_demo(settings)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key and print it alone on the last line."""
    from qa_service.auth import issue_key
    from qa_service.services.teams import make_scope

    repo = _repository(settings)
    scope = make_scope(args.role, args.team or (), args.vendor or (), args.agent)
    stored, key = issue_key(repo, role=args.role, name=args.name, scope=scope)
    scoped = f" {scope.describe()}" if scope is not None else ""
    repo.audit.record("create_key", key_name=_cli_user(), role="admin", target_kind="key",
                      target_id=stored.id, details=f"role={args.role}{scoped} name={args.name}"[:200])
    print(f"created {args.role} key {args.name!r} ({stored.id}); store it now, it is not shown again:",
          file=sys.stderr)
    print(key)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print every API key as a table: id, name, role, prefix, created, revoked."""
    repo = _repository(settings)
    keys = repo.list_keys()
    # The scope column shows only when some key has one (the teams and vendors whose calls it reads).
    scoped = any(k.scope is not None for k in keys)
    rows = [(k.id, k.name, k.role, f"{k.prefix}..." if k.prefix else "-",
             k.created_at.strftime("%Y-%m-%d %H:%M"), "revoked" if k.revoked else "active",
             *([k.scope.describe() if k.scope else "-"] if scoped else []))
            for k in keys]
    if not rows:
        print("no API keys; make one with `qa-service keys create --role admin --name NAME`", file=sys.stderr)
        return 0
    header = ("id", "name", "role", "prefix", "created (UTC)", "state", *(["scope"] if scoped else []))
    print(_table(header, rows))
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke an API key by id; revoking a revoked key changes nothing and says so."""
    from qa_service.auth import revoke_key

    repo = _repository(settings)
    key, changed = revoke_key(repo, args.key_id)
    repo.audit.record("revoke_key", key_name=_cli_user(), role="admin", target_kind="key", target_id=key.id,
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
