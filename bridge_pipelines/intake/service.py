"""One intake run: every pending staged row ends ACCEPTED or REJECTED with one error code, in one transaction.

Order: programs, envelopes, amendments, disbursements, envelope cancellations, disbursement cancellations; within a
table, staging_id order. Rows that share an id (a re-staging in the same batch) are taken in successive "waves" so
that each sees the effect of the one before it, exactly as if processed one by one, while every wave is one
set-based statement per rule set.

Concurrency: a session advisory lock serialises intake runs (a second one waits, then finds nothing to do); the run
itself is REPEATABLE READ, so it works on one snapshot of the staging tables (rows committed meanwhile wait for the
next run), and a concurrent pipeline step that starts disbursing an envelope makes it fail with a serialization error
and retry, so no disbursement is ever added to or cancelled from an envelope that is already with the bank.

Speed (issue 9: 1,000,000 staged disbursements in one run): a stage first counts its rows and whether any key
repeats (one count of distinct keys). The batch is a temporary view of the pending staged rows, so the rows are read
once, where they are, by the wave that takes them; only when keys repeat is a (small) table of the later occurrences
and their waves built. Each wave writes its results straight back to its staged rows (joined on the row's physical
address, read in this run's snapshot) and is tallied for the summary. A disbursement wave is a single statement
(see intake_disbursement.sql).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date

import psycopg
from psycopg.rows import dict_row
from psycopg import sql
from psycopg.types.json import Jsonb

from bridge_pipelines.db.locks import advisory_lock
from bridge_pipelines.db.queries import statement
from bridge_pipelines.db.statistics import refresh_statistics
from bridge_pipelines.faults import fault_point

log = logging.getLogger(__name__)

INTAKE_LOCK = 7_311_940_002
MAX_SERIALIZATION_RETRIES = 5
# For the run's transaction only: the sort of the running caps and the hash joins of a million-row wave stay in
# memory instead of spilling to temporary files (the server's default is 64MB).
INTAKE_WORK_MEM = "512MB"


@dataclass(frozen=True)
class IntakeStage:
    staging_table: str
    key_column: str
    query_file: str
    # Either evaluate (creates intake_wave), the statements that apply it, and `record`, a query of each row's
    # result that _write_back writes to its staged row; or (record None) one statement per wave that does all of that and returns the
    # tally: (error_code, rows, rows written back) per code.
    steps: tuple[str, ...]
    record: str | None
    prepare: str | None = None  # run once before the first wave


STAGES: tuple[IntakeStage, ...] = (
    IntakeStage("benefit_program", "benefit_program_mnemonic", "intake_benefit_program",
                ("evaluate", "apply"), "record"),
    IntakeStage("disbursement_envelope", "disbursement_envelope_id", "intake_disbursement_envelope",
                ("evaluate", "apply"), "record"),
    IntakeStage("envelope_amendment", "disbursement_envelope_id", "intake_envelope_amendment",
                ("evaluate", "apply"), "record"),
    IntakeStage("disbursement", "disbursement_id", "intake_disbursement", ("wave",), None, prepare="prepare"),
    IntakeStage("envelope_cancellation", "disbursement_envelope_id", "intake_cancellation",
                ("evaluate_envelope", "apply_envelope"), "record_envelope"),
    IntakeStage("disbursement_cancellation", "disbursement_id", "intake_cancellation",
                ("evaluate_disbursement", "apply_disbursement"), "record_disbursement"),
)
STAGING_TABLES = tuple(stage.staging_table for stage in STAGES)


@dataclass
class IntakeSummary:
    business_date: date
    processed: dict[str, int] = field(default_factory=dict)  # staging table -> rows processed
    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    attempts: int = 1

    @property
    def total_processed(self) -> int:
        return sum(self.processed.values())

    def as_dict(self) -> dict:
        return {
            "business_date": self.business_date.isoformat(),
            "processed": self.processed,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_code": self.rejected_by_code,
            "seconds": round(self.seconds, 3),
        }


def run_intake(
    conn: psycopg.Connection,
    business_date: date,
    sla_days: int = 0,
    only_staging_ids: dict[str, list[int]] | None = None,
) -> IntakeSummary:
    """Process every pending staged row (or only the given staging ids per table) in one transaction.

    `conn` must be in autocommit mode (the run manages its own transaction and session lock).
    """
    if not conn.autocommit:
        raise ValueError("run_intake needs an autocommit connection: it manages its own transaction")
    started = time.perf_counter()
    with advisory_lock(conn, INTAKE_LOCK):
        for attempt in range(1, MAX_SERIALIZATION_RETRIES + 1):
            try:
                summary = _run_once(conn, business_date, sla_days, only_staging_ids)
                _after_commit(conn, summary)
                summary.attempts = attempt
                summary.seconds = time.perf_counter() - started
                return summary
            except psycopg.errors.SerializationFailure:
                if attempt == MAX_SERIALIZATION_RETRIES:
                    raise
                log.warning("intake run conflicted with a concurrent pipeline step; retrying (attempt %s)", attempt)
    raise AssertionError("unreachable")


def _run_once(
    conn: psycopg.Connection, business_date: date, sla_days: int, only_staging_ids: dict[str, list[int]] | None
) -> IntakeSummary:
    summary = IntakeSummary(business_date=business_date)
    tally: dict[tuple[str, str | None], int] = {}
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(INTAKE_WORK_MEM)))
        conn.execute(
            "CREATE TEMP TABLE intake_params ON COMMIT DROP AS "
            "SELECT %s::date AS business_date, %s::integer AS sla_days, 1 AS wave",
            (business_date, sla_days),
        )
        conn.execute("ANALYZE intake_params")  # one row: without statistics the planner assumes thousands
        for stage in STAGES:
            ids = None if only_staging_ids is None else only_staging_ids.get(stage.staging_table, [])
            if ids is not None and not ids:
                continue
            for code, count in _run_stage(conn, stage, ids).items():
                tally[(stage.staging_table, code)] = count
        fault_point("intake_before_commit")
        # the order the summary always had: by table, then by code, accepted (no code) last
        for (table, code), count in sorted(tally.items(), key=lambda item: (item[0][0], item[0][1] is None,
                                                                            item[0][1] or "")):
            summary.processed[table] = summary.processed.get(table, 0) + count
            if code is None:
                summary.accepted[table] = summary.accepted.get(table, 0) + count
            else:
                summary.rejected[table] = summary.rejected.get(table, 0) + count
                summary.rejected_by_code[code] = summary.rejected_by_code.get(code, 0) + count
        if summary.total_processed:
            conn.execute(
                "INSERT INTO bridge.intake_run (finished_at, business_date, summary) VALUES (now(), %s, %s)",
                (business_date, Jsonb(summary.as_dict())),
            )
    return summary


def highest_pending_sql(staging_table: str) -> str:
    """The highest staging_id still PENDING in the staging table: what the intake sensor asks every tick, through the
    partial index of pending rows (and what _after_commit asks once after a run, for that index's sake)."""
    return f"SELECT max(staging_id) FROM staging.{staging_table} WHERE intake_status = 'PENDING'"


def _after_commit(conn: psycopg.Connection, summary: IntakeSummary) -> None:
    """After a large run's commit, for each staging table it processed:
    - statistics again: the ones taken inside the run (see _run_stage) say that the rows are pending, and a query
      planned on them (the intake sensor's) expects to find pending rows at once and scans the whole table;
    - the pending index (of PENDING rows, which the sensor reads every tick): each row the run wrote back left a dead
      entry in it. The first scan that meets a dead entry marks it so that later scans skip it; until then each costs
      a heap visit, and the sensor's next tick after a run of 10,000,000 rows took 24 s doing it. The run that made
      the entries does that scan once, here, instead of the sensor."""
    for table, rows in summary.processed.items():
        if refresh_statistics(conn, f"staging.{table}", rows):
            conn.execute(highest_pending_sql(table))


def _run_stage(conn: psycopg.Connection, stage: IntakeStage, ids: list[int] | None) -> dict[str | None, int]:
    """Process the stage's pending rows; returns how many rows got each error code (None: accepted)."""
    batch = sql.Identifier(f"intake_batch_{stage.staging_table}")
    key = sql.Identifier(stage.key_column)
    table = sql.Identifier(stage.staging_table)
    restrict = sql.SQL("AND s.staging_id = ANY({})").format(sql.Literal(ids)) if ids is not None else sql.SQL("")
    # A blank key never repeats (each such row is refused on its own, in wave 1). Whether any key repeats is one
    # count of distinct keys; how often the most repeated one does (the number of waves) is only asked when one does.
    blank = sql.SQL("s.{key} IS NULL OR btrim(s.{key}) = ''").format(key=key)
    rows, repeated = conn.execute(
        sql.SQL(
            "SELECT count(*), count(s.{key}) - count(DISTINCT s.{key}) "
            "FROM staging.{table} s WHERE s.intake_status = 'PENDING' {restrict}"
        ).format(table=table, restrict=restrict, key=key)
    ).fetchone()
    if rows == 0:
        return {}
    # The staged rows' statistics may still say that nothing is pending (they were taken before PBMS staged this
    # batch): the wave's plan would then expect one row and do per-row work a million times over.
    refresh_statistics(conn, f"staging.{stage.staging_table}", rows)
    later = sql.Identifier(f"intake_later_{stage.staging_table}")
    waves = 1
    if repeated:  # some key repeats, maybe only a blank one
        # the second, third... occurrence of each repeated key, with its wave (a blank key is always in wave 1)
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {later} ON COMMIT DROP AS SELECT staging_id, wave FROM ("
                "SELECT s.staging_id, row_number() OVER (PARTITION BY s.{key} ORDER BY s.staging_id) AS wave "
                "FROM staging.{table} s WHERE s.intake_status = 'PENDING' {restrict} AND NOT ({blank}) "
                "AND s.{key} IN (SELECT s.{key} FROM staging.{table} s WHERE s.intake_status = 'PENDING' {restrict} "
                "GROUP BY s.{key} HAVING count(*) > 1)) w WHERE wave > 1"
            ).format(later=later, key=key, table=table, restrict=restrict, blank=blank)
        )
        waves = conn.execute(sql.SQL("SELECT coalesce(max(wave), 1) FROM {}").format(later)).fetchone()[0]
    # The batch is a view of the pending staged rows, each with its wave: they are read where they are, by the wave
    # that takes them. A row written back is no longer pending, so each wave sees what the earlier ones left.
    if waves == 1:
        conn.execute(
            sql.SQL(
                "CREATE TEMP VIEW {batch} AS SELECT s.*, s.ctid AS staging_ctid, 1 AS wave "
                "FROM staging.{table} s WHERE s.intake_status = 'PENDING' {restrict}"
            ).format(batch=batch, table=table, restrict=restrict)
        )
    else:
        conn.execute(
            sql.SQL(
                "CREATE TEMP VIEW {batch} AS SELECT s.*, s.ctid AS staging_ctid, coalesce(l.wave, 1) AS wave "
                "FROM staging.{table} s LEFT JOIN {later} l USING (staging_id) "
                "WHERE s.intake_status = 'PENDING' {restrict}"
            ).format(batch=batch, table=table, later=later, restrict=restrict)
        )
    if stage.prepare:
        conn.execute(statement(stage.query_file, stage.prepare))
    tally: dict[str | None, int] = {}
    for wave in range(1, waves + 1):
        conn.execute("UPDATE intake_params SET wave = %s", (wave,))
        if stage.record is None:
            result = conn.execute(statement(stage.query_file, stage.steps[0])).fetchall()
            counts = {code: count for code, count, _ in result}
            written = result[0][2] if result else 0
        else:
            for step in stage.steps:
                conn.execute(statement(stage.query_file, step))
            counts = dict(conn.execute("SELECT error_code, count(*) FROM intake_wave GROUP BY 1").fetchall())
            written = _write_back(conn, stage.staging_table, statement(stage.query_file, stage.record))
            conn.execute("DROP TABLE intake_wave")
        if written != sum(counts.values()):
            raise RuntimeError(f"intake of staging.{stage.staging_table} wave {wave}: {sum(counts.values())} rows "
                               f"evaluated but {written} written back")
        for code, count in counts.items():
            tally[code] = tally.get(code, 0) + count
    conn.execute(sql.SQL("DROP VIEW {}").format(batch))
    if repeated:
        conn.execute(sql.SQL("DROP TABLE {}").format(later))
    log.info("intake %s: %s rows in %s wave(s)", stage.staging_table, rows, waves)
    return tally


def _write_back(conn: psycopg.Connection, staging_table: str, results: str) -> int:
    """Write a wave's results (a query of staging_ctid, error_code, error_detail) back to their staged rows, found by
    their address in this run's snapshot and only ever while still pending. Returns the rows written."""
    return conn.execute(
        sql.SQL(
            "UPDATE staging.{table} s SET "
            "intake_status = CASE WHEN r.error_code IS NULL THEN 'ACCEPTED' ELSE 'REJECTED' END, "
            "intake_error_code = r.error_code, intake_error_detail = r.error_detail, intake_processed_at = now() "
            "FROM ({results}) r WHERE s.ctid = r.staging_ctid AND s.intake_status = 'PENDING'"
        ).format(table=sql.Identifier(staging_table), results=sql.SQL(results.rstrip().rstrip(";") + "\n"))
    ).rowcount


def rejected_examples(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The most recently rejected staged rows, for operators."""
    parts = [
        sql.SQL(
            "(SELECT {name} AS staging_table, staging_id, intake_error_code, intake_error_detail, intake_processed_at "
            "FROM staging.{table} WHERE intake_status = 'REJECTED' ORDER BY intake_processed_at DESC, staging_id DESC "
            "LIMIT {limit})"
        ).format(name=sql.Literal(t), table=sql.Identifier(t), limit=sql.Literal(limit))
        for t in STAGING_TABLES
    ]
    query = sql.SQL("SELECT * FROM ({}) x ORDER BY intake_processed_at DESC, staging_id DESC LIMIT {}").format(
        sql.SQL(" UNION ALL ").join(parts), sql.Literal(limit))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


