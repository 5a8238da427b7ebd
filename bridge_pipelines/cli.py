"""The `bridge` command line: run the system, operate it, and look at it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from bridge_pipelines.config import ConfigError, Settings, load_settings

log = logging.getLogger("bridge")


def _database_url(settings: Settings, migrate_first: bool = True) -> str:
    from bridge_pipelines.db.migrate import migrate
    from bridge_pipelines.db.server import resolve_database_url

    url = resolve_database_url(settings)
    if migrate_first:
        migrate(url)
    return url


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    print(_database_url(settings, migrate_first=False))
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.db.migrate import migrate
    from bridge_pipelines.db.server import resolve_database_url

    applied = migrate(resolve_database_url(settings))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_db_stop(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.db.server import stop_embedded_server

    if settings.database_url:
        print("BRIDGE_DATABASE_URL is set: the bridge does not manage that server")
        return 0
    print("embedded PostgreSQL stopped" if stop_embedded_server(settings.home) else "embedded PostgreSQL was not running")
    return 0


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.dagster_home import ensure_dagster_home
    from bridge_pipelines.process import process, process_instance

    url = _database_url(settings)
    ensure_dagster_home(settings, url)
    from bridge_pipelines.definitions import defs

    with process_instance() as instance:
        report = process(instance, defs, url, max_rounds=args.max_rounds)
    for run in report.runs:
        where = f" [{run.partition_key}]" if run.partition_key else ""
        state = "ok" if run.success else f"FAILED: {run.error}"
        print(f"{run.job_name}{where}: {state} (run {run.run_id})")
    if not report.runs:
        print("nothing to do")
    print(f"{len(report.runs)} run(s) in {report.rounds} round(s), {report.seconds:.1f} s")
    return 0 if report.success else 1


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.demo import stage_demo

    url = _database_url(settings)
    result = stage_demo(url, settings, disbursements=args.disbursements, program=args.program,
                        envelope_id=args.envelope, mapper=args.mapper)
    print(json.dumps(result, indent=2, default=str))
    print("staged; run `bridge process` (or wait for the intake sensor under `bridge up`)")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.status import envelope_status, format_status_table

    rows = envelope_status(_database_url(settings), args.envelope_id)
    if args.envelope_id and not rows:
        print(f"no envelope {args.envelope_id!r}: check the id, or `bridge status` to list all", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_status_table(rows) if rows else "no envelopes yet: stage some (`bridge demo`) and run `bridge process`")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from bridge_pipelines.disbursement.retry_envelope import retry_step

    with psycopg.connect(_database_url(settings), autocommit=True) as conn:
        try:
            changed = retry_step(conn, args.envelope_id, args.step)
        except (LookupError, ValueError) as error:
            print(str(error), file=sys.stderr)
            return 2
    if changed:
        print(f"{args.step} of envelope {args.envelope_id} will be retried: the envelope sensor resumes it under "
              "`bridge up`, or run `bridge process` now")
    else:
        print(f"{args.step} of envelope {args.envelope_id} is not in an error state: nothing to retry "
              f"(see `bridge status {args.envelope_id}`)")
    return 0


def cmd_statement_check(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from bridge_pipelines.statements.checks import statement_summary
    from bridge_pipelines.statements.importing import parse_statement_file

    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    summary = statement_summary(parse_statement_file(path.read_bytes()))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{path.name}: {summary['format']}, {summary['page_count']} page(s), {summary['line_count']} line(s)")
        for page in summary["pages"]:
            print("  " + json.dumps(page, default=str))
        for problem in summary["problems"]:
            print(f"  PROBLEM {problem['code']}: {problem['message']}")
        print("  OK: balances close and every entry was read" if summary["ok"] else "  NOT OK")
    return 0 if summary["ok"] else 1


def cmd_bank(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.bank.example_bank.server import request_close_day, run_example_servers

    if args.bank_command == "close-day":
        written = request_close_day(settings)
        print("\n".join(written) if written else "no new entries: no statement written")
        return 0
    run_example_servers(settings, _database_url(settings))
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.api.app import serve_api

    if not settings.api_tokens:
        print("the PBMS API is off: set BRIDGE_API_TOKENS=sender_id:token[,sender2:token2] to serve it",
              file=sys.stderr)
        return 2
    return serve_api(settings, _database_url(settings))


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from bridge_pipelines.up import run_everything

    return run_everything(settings, with_bank=not args.no_bank)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge",
        description=(
            "The G2P disbursement bridge: validates what PBMS stages, pays beneficiaries through the sponsor bank "
            "exactly once, and reconciles the bank's statements. Start with `bridge up`, then `bridge demo`."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start everything: database, migrations, example bank and mapper, Dagster UI and daemon")
    up.add_argument("--no-bank", action="store_true", help="do not start the example bank and mapper")
    up.set_defaults(func=cmd_up)

    db = sub.add_parser("db", help="the bridge's PostgreSQL")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_sub.add_parser("url", help="print the database URL (starts the embedded server if needed)").set_defaults(func=cmd_db_url)
    db_sub.add_parser("migrate", help="apply pending migrations (idempotent)").set_defaults(func=cmd_db_migrate)
    db_sub.add_parser("stop", help="stop the embedded PostgreSQL server").set_defaults(func=cmd_db_stop)

    proc = sub.add_parser("process", help="one pass without the daemon: run every sensor and the runs they ask for, until nothing is left")
    proc.add_argument("--max-rounds", type=int, default=50, help="stop after this many sensor rounds (default 50)")
    proc.set_defaults(func=cmd_process)

    demo = sub.add_parser("demo", help="stage a demo program, an envelope and its disbursements")
    demo.add_argument("--disbursements", type=int, default=1000, help="how many disbursements (default 1000)")
    demo.add_argument("--program", default="DEMO", help="program mnemonic (default DEMO)")
    demo.add_argument("--envelope", default=None, help="envelope id (default: DEMO-<cycle>-<n>)")
    demo.add_argument("--mapper", action="store_true", help="the program resolves beneficiaries through the ID mapper")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", help="envelope progress (all envelopes, or one)")
    status.add_argument("envelope_id", nargs="?", help="one envelope id")
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    status.set_defaults(func=cmd_status)

    retry = sub.add_parser("retry", help="retry a step of an envelope that ended in ERROR (resolution, funds, shipment)")
    retry.add_argument("envelope_id")
    retry.add_argument("step", choices=("resolution", "funds", "shipment"))
    retry.set_defaults(func=cmd_retry)

    statement = sub.add_parser("statement", help="bank statements")
    statement_sub = statement.add_subparsers(dest="statement_command", required=True, metavar="STATEMENT_COMMAND")
    check = statement_sub.add_parser("check", help="parse a statement file (MT940 or camt.053) without importing it")
    check.add_argument("file")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_statement_check)

    bank = sub.add_parser("bank", help="run the example sponsor bank and ID mapper (or `bridge bank close-day`)")
    bank.add_argument("bank_command", nargs="?", choices=("close-day",),
                      help="close-day: ask the example bank to write its end-of-day statements into the inbox now")
    bank.set_defaults(func=cmd_bank)

    api = sub.add_parser("api", help="run the synchronous PBMS API alone (needs BRIDGE_API_TOKENS; port BRIDGE_API_PORT)")
    api.set_defaults(func=cmd_api)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
