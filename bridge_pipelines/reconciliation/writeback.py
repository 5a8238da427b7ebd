"""Reconciling one imported statement: load what its lines name, run the pure `reconcile`, write back in ONE
transaction (COPY into temp tables, then set-based INSERT ... ON CONFLICT / UPDATE ... FROM), and move the counters of
the envelopes it touched by what changed.

A remittance is recorded in bridge.disbursement_recon and nowhere else: the disbursement stays SHIPPED, and a SHIPPED
disbursement with a recorded remittance is RECONCILED (migration 0020; bridge.disbursement_status shows it so). Only a
reversal rewrites the disbursement (to REVERSED). The row in disbursement_recon is what orders concurrent
reconciliations of the same disbursement: whoever records second waits for the first, then sees what it recorded."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import polars as pl
import psycopg

from bridge_pipelines.db.frames import copy_frame, read_frame
from bridge_pipelines.db.statistics import DISBURSEMENT_STATE_COLUMNS, refresh_statistics
from bridge_pipelines.faults import fault_point
from bridge_pipelines.reconciliation.match import (DISBURSEMENT_SCHEMA, EXISTING_RECON_SCHEMA, REMITTANCE, REVERSAL,
                                                   SETTLED_STATES, ReconciliationResult, extract_references, reconcile)
from bridge_pipelines.statements.model import AMOUNT_DTYPE, ParsedStatementFile

log = logging.getLogger(__name__)


@dataclass
class ReconciliationSummary:
    statement_id: str
    lines: int = 0
    reconciled_lines: int = 0
    error_lines: int = 0
    unrelated_lines: int = 0
    disbursements_reconciled: int = 0
    disbursements_reversed: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    first_errors: list[dict] = field(default_factory=list)
    envelopes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add_step(self, lines: int, result: ReconciliationResult, reconciled: int, reversed_: int,
                 error_sample: int) -> None:
        """Count in one step of the statement (see RECONCILE_STEP_LINES)."""
        counts = result.counts()
        self.lines += lines
        self.reconciled_lines += counts.get("RECONCILED", 0)
        self.error_lines += counts.get("ERROR", 0)
        self.unrelated_lines += counts.get("UNRELATED", 0)
        self.disbursements_reconciled += reconciled
        self.disbursements_reversed += reversed_
        if result.errors.height:
            for reason, count in result.errors.group_by("error_reason").len().iter_rows():
                self.errors_by_reason[reason] = self.errors_by_reason.get(reason, 0) + count
            room = error_sample - len(self.first_errors)
            if room > 0:
                self.first_errors += result.errors.head(room).select(
                    "page", "entry_sequence", "mark", pl.col("amount").cast(pl.String), "error_reason",
                    "error_detail").to_dicts()


def statement_lines_frame(statement_id: str, parsed: ParsedStatementFile,
                          lines: pl.DataFrame | None = None) -> pl.DataFrame:
    """The statement's lines (or `lines`, a slice of them) with the statement id and each page's number and
    sequence."""
    pages = pl.DataFrame({
        "page": pl.Series(range(len(parsed.pages)), dtype=pl.Int32),
        "statement_number": [p.statement_number for p in parsed.pages],
        "statement_sequence": [p.sequence_number or str(i + 1) for i, p in enumerate(parsed.pages)],
    }, schema={"page": pl.Int32, "statement_number": pl.String, "statement_sequence": pl.String})
    lines = parsed.lines if lines is None else lines
    return lines.with_columns(pl.lit(statement_id).alias("statement_id")).join(pages, on="page", how="left")


CANDIDATE_COLUMNS = """d.disbursement_id, d.disbursement_envelope_id, d.bank_reference, d.shipment_batch_id,
       d.disbursement_amount, e.disbursement_currency_code AS currency, d.disbursement_status"""

# A statement of payments names nearly every bank reference in its range: they are handed out in order, one per
# payment, so a day's statement names the payments shipped since the previous one. When the statement names at least
# this share of the references in its range, the range alone says which disbursements to read, and the list of
# references is not sent to the server and hashed there (0.4-0.5 s of a 1,000,000-line statement); the few read that
# no line names are dropped here. A sparse range (a statement naming payments months apart) is read through the list.
DENSE_RANGE_SHARE = 0.5


def _names_most_of_its_range(references: pl.DataFrame, low: str, high: str) -> bool:
    """The references (G + 15 hex digits, BANK_REFERENCE_PATTERN) are at least DENSE_RANGE_SHARE of their range."""
    return references.height >= DENSE_RANGE_SHARE * (int(high[1:], 16) - int(low[1:], 16) + 1)


def _read_named_candidates(conn: psycopg.Connection, references: pl.DataFrame, batches: pl.DataFrame,
                           low: str | None, high: str | None) -> pl.DataFrame:
    """The disbursements the statement's references and batch references name, through lists of both."""
    conn.execute("CREATE TEMP TABLE recon_ref (ref text) ON COMMIT DROP")
    conn.execute("CREATE TEMP TABLE recon_batch (ref text) ON COMMIT DROP")
    copy_frame(conn, references, "recon_ref")
    copy_frame(conn, batches, "recon_batch")
    # Temp tables have no statistics until analysed: without them the planner guesses ~200 distinct references and
    # probes the disbursement index once per line (a nested loop) instead of hashing the statement's references.
    conn.execute("ANALYZE recon_ref, recon_batch")
    # NOT EXISTS and the UNION (not NOT IN, not IN ... OR IN ...): those stay per-row subplans, hashed only while
    # the statement's references fit in work_mem; beyond ~100,000 references each row scanned the whole list
    # (quadratic: a 200,000-line statement naming reconciled payments did not finish in a minute).
    # The range of the references restates the IN list (it keeps nothing out that the list lets in), for the
    # planner: only that part of the table (its bank reference index range) is read instead of every disbursement
    # of every cycle kept.
    return read_frame(conn, f"""
        SELECT {CANDIDATE_COLUMNS}
        FROM bridge.disbursement d JOIN bridge.disbursement_envelope e USING (disbursement_envelope_id)
        WHERE d.bank_reference IN (SELECT ref FROM recon_ref) AND d.bank_reference BETWEEN %(low)s AND %(high)s
        UNION ALL
        SELECT {CANDIDATE_COLUMNS}
        FROM bridge.bank_disbursement_batch_status b
        CROSS JOIN LATERAL unnest(b.member_disbursement_ids) AS m(disbursement_id)
        JOIN bridge.disbursement d ON d.disbursement_id = m.disbursement_id
        JOIN bridge.disbursement_envelope e ON e.disbursement_envelope_id = d.disbursement_envelope_id
        WHERE b.bank_disbursement_batch_id IN (SELECT ref FROM recon_batch)
          AND NOT EXISTS (SELECT 1 FROM recon_ref x WHERE x.ref = d.bank_reference)""", dict(low=low, high=high),
                      schema=DISBURSEMENT_SCHEMA)


def _load_candidates(conn: psycopg.Connection, refs: pl.DataFrame,
                     optimistic: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`refs`: the statement lines with their references extracted (`extract_references`). `optimistic`: see
    `_write`; without it the earlier reconciliations of every candidate are read."""
    references = refs.select(pl.col("our_reference").alias("ref")).drop_nulls().unique()
    batches = refs.select(pl.col("our_batch").alias("ref")).drop_nulls().unique()
    low, high = (references.select(pl.col("ref").min().alias("low"), pl.col("ref").max().alias("high")).row(0)
                 if references.height else (None, None))
    if batches.height == 0 and references.height and _names_most_of_its_range(references, low, high):
        disbursements = read_frame(conn, f"""
            SELECT {CANDIDATE_COLUMNS}
            FROM bridge.disbursement d JOIN bridge.disbursement_envelope e USING (disbursement_envelope_id)
            WHERE d.bank_reference BETWEEN %(low)s AND %(high)s""", dict(low=low, high=high),
                                   schema=DISBURSEMENT_SCHEMA)
        if disbursements.height:
            disbursements = disbursements.filter(pl.col("bank_reference").is_in(references["ref"].implode()))
    else:
        disbursements = _read_named_candidates(conn, references, batches, low, high)
    if disbursements.height == 0:
        disbursements = pl.DataFrame(schema=DISBURSEMENT_SCHEMA)
    # The reconciliations already recorded for these disbursements, found by primary key, not by scanning every
    # reconciliation for the statement's references (at 10,000,000 reconciliations that scan took 10 s per
    # statement). A REVERSED disbursement always has one. A SHIPPED one has one when it is reconciled already: the
    # optimistic pass does not look (on a statement of new payments, nearly every line of a cycle's first statement,
    # there is nothing to find), and a remittance it would record twice fails its COPY on the primary key, which
    # sends the whole statement through the pass that reads them all.
    settled = (disbursements.filter(pl.col("disbursement_status").is_in(SETTLED_STATES) | (not optimistic))
               .select("disbursement_id").unique())
    existing = pl.DataFrame(schema=EXISTING_RECON_SCHEMA)
    if settled.height:
        conn.execute("CREATE TEMP TABLE recon_settled (disbursement_id text COLLATE \"C\") ON COMMIT DROP")
        copy_frame(conn, settled, "recon_settled")
        conn.execute("ANALYZE recon_settled")
        found = read_frame(conn, """
            SELECT r.disbursement_id, r.remittance_statement_id, r.remittance_page, r.remittance_entry_sequence,
                   r.reversal_found, r.reversal_statement_id, r.reversal_page, r.reversal_entry_sequence
            FROM recon_settled s JOIN bridge.disbursement_recon r USING (disbursement_id)""",
                           schema={k: v for k, v in EXISTING_RECON_SCHEMA.items() if k != "reversal_found"})
        if found.height:
            existing = found.with_columns((pl.col("reversal_found") == "t").alias("reversal_found"))
    return disbursements, existing


MATCH_COLUMNS = ("disbursement_id", "disbursement_envelope_id", "shipment_batch_id", "match_kind", "statement_id",
                 "statement_number", "statement_sequence", "page", "entry_sequence", "entry_date", "value_date",
                 "reference", "reason")


RECON_REMITTANCE_COLUMNS = {  # bridge.disbursement_recon column: match column
    "disbursement_id": "disbursement_id", "bank_disbursement_batch_id": "shipment_batch_id",
    "disbursement_envelope_id": "disbursement_envelope_id", "remittance_reference_number": "reference",
    "remittance_statement_id": "statement_id", "remittance_statement_number": "statement_number",
    "remittance_statement_sequence": "statement_sequence", "remittance_page": "page",
    "remittance_entry_sequence": "entry_sequence", "remittance_entry_date": "entry_date",
    "remittance_value_date": "value_date",
}


# One pass of the reversals: disbursements of recon_reversed still SHIPPED -> REVERSED, one event each with the state
# PBMS saw it in (RECONCILED when its remittance was recorded before this step, which counted it reconciled; see
# _write), and the envelope counters moved by exactly that. The remittance is read after this transaction recorded the
# reversal in the same disbursement_recon row (waiting there for any reconciliation of it in flight), so a remittance
# committed meanwhile is seen.
REVERSE_SQL = """
WITH target AS (
    SELECT d.disbursement_id, d.disbursement_status AS from_status,
           r.remittance_statement_id IS NOT NULL AND NOT t.remitted_in_step AS was_reconciled
    FROM recon_reversed t JOIN bridge.disbursement d USING (disbursement_id)
    LEFT JOIN bridge.disbursement_recon r USING (disbursement_id)
    WHERE d.disbursement_status = ANY (t.from_states)
),
changed AS (
    UPDATE bridge.disbursement d SET disbursement_status = 'REVERSED', status_updated_at = now(),
           status_reason_code = 'REVERSED_BY_BANK'
    FROM target t WHERE d.disbursement_id = t.disbursement_id AND d.disbursement_status = t.from_status
    RETURNING d.disbursement_id, d.disbursement_envelope_id, d.disbursement_amount, t.from_status, t.was_reconciled
),
events AS (
    INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status, to_status,
                                           reason_code, detail)
    SELECT disbursement_id, disbursement_envelope_id,
           CASE WHEN was_reconciled THEN 'RECONCILED' ELSE from_status END, 'REVERSED', 'REVERSED_BY_BANK',
           %(detail)s
    FROM changed
),
per_envelope AS (
    SELECT disbursement_envelope_id, count(*) AS reversed, sum(disbursement_amount) AS amount,
           count(*) FILTER (WHERE was_reconciled) AS was_reconciled,
           coalesce(sum(disbursement_amount) FILTER (WHERE was_reconciled), 0) AS was_reconciled_amount
    FROM changed GROUP BY disbursement_envelope_id
),
counted AS (
    UPDATE bridge.disbursement_envelope_batch_status bs SET
        number_of_disbursements_reversed = bs.number_of_disbursements_reversed + p.reversed,
        total_disbursement_amount_reversed = bs.total_disbursement_amount_reversed + p.amount,
        number_of_disbursements_reconciled = bs.number_of_disbursements_reconciled - p.was_reconciled,
        total_disbursement_amount_reconciled = bs.total_disbursement_amount_reconciled
                                               - p.was_reconciled_amount,
        updated_at = now()
    FROM per_envelope p WHERE bs.disbursement_envelope_id = p.disbursement_envelope_id
)
SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM changed)"""


def _count_reconciled(conn: psycopg.Connection, reconciled: pl.DataFrame, detail: str) -> int:
    """`reconciled`: the disbursements whose remittance this step recorded and that it did not reverse, with their
    envelope and amount. They are RECONCILED now (their state stays SHIPPED, see the module's docstring): one
    envelope_event per envelope, and the envelope counters moved by exactly that. Returns how many."""
    per_envelope = reconciled.group_by("disbursement_envelope_id").agg(
        pl.len().alias("reconciled"), pl.col("disbursement_amount").sum().alias("amount"))
    if per_envelope.height == 0:
        return 0
    conn.execute("""
        WITH per_envelope AS (
            SELECT * FROM unnest(%(envelopes)s::text[], %(counts)s::bigint[], %(amounts)s::numeric[])
                AS p(disbursement_envelope_id, reconciled, amount)
        ),
        envelope_events AS (
            INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail)
            SELECT disbursement_envelope_id, 'RECONCILED',
                   format('%%s: %%s disbursement(s) SHIPPED -> RECONCILED', %(detail)s::text, reconciled)
            FROM per_envelope
        )
        UPDATE bridge.disbursement_envelope_batch_status bs SET
            number_of_disbursements_reconciled = bs.number_of_disbursements_reconciled + p.reconciled,
            total_disbursement_amount_reconciled = bs.total_disbursement_amount_reconciled + p.amount,
            updated_at = now()
        FROM per_envelope p WHERE bs.disbursement_envelope_id = p.disbursement_envelope_id""",
                 dict(envelopes=per_envelope["disbursement_envelope_id"].to_list(),
                      counts=per_envelope["reconciled"].to_list(), amounts=per_envelope["amount"].to_list(),
                      detail=detail))
    return int(per_envelope["reconciled"].sum())


def reverse(conn: psycopg.Connection, detail: str) -> int:
    """Move the disbursements of recon_reversed to REVERSED; returns how many moved. A disbursement whose state another
    transaction changed meanwhile (committed while this one waited for its row) is skipped by a pass, since its state
    is no longer the one read, and taken by the next pass if it is still one to reverse: the counters move by the
    state each row really left."""
    moved = 0
    while True:
        targets, changed = conn.execute(REVERSE_SQL, dict(detail=detail)).fetchone()
        moved += changed
        if changed == targets:
            return moved


REMITTANCE_UPSERT_SQL = """
INSERT INTO bridge.disbursement_recon AS r (disbursement_id, bank_disbursement_batch_id, disbursement_envelope_id,
    remittance_reference_number, remittance_statement_id, remittance_statement_number, remittance_statement_sequence,
    remittance_page, remittance_entry_sequence, remittance_entry_date, remittance_value_date)
SELECT disbursement_id, shipment_batch_id, disbursement_envelope_id, reference, statement_id, statement_number,
       statement_sequence, page, entry_sequence, entry_date, value_date
FROM recon_match WHERE match_kind = 'REMITTANCE'
ON CONFLICT (disbursement_id) DO UPDATE SET
    remittance_reference_number = excluded.remittance_reference_number,
    remittance_statement_id = excluded.remittance_statement_id,
    remittance_statement_number = excluded.remittance_statement_number,
    remittance_statement_sequence = excluded.remittance_statement_sequence,
    remittance_page = excluded.remittance_page, remittance_entry_sequence = excluded.remittance_entry_sequence,
    remittance_entry_date = excluded.remittance_entry_date, remittance_value_date = excluded.remittance_value_date,
    updated_at = now()
WHERE r.remittance_statement_id IS NULL
RETURNING r.disbursement_id, r.reversal_found"""

REVERSAL_UPSERT_SQL = """
INSERT INTO bridge.disbursement_recon AS r (disbursement_id, bank_disbursement_batch_id, disbursement_envelope_id,
    reversal_found, reversal_statement_id, reversal_statement_number, reversal_statement_sequence, reversal_page,
    reversal_entry_sequence, reversal_entry_date, reversal_value_date, reversal_reason)
SELECT disbursement_id, shipment_batch_id, disbursement_envelope_id, true, statement_id, statement_number,
       statement_sequence, page, entry_sequence, entry_date, value_date, reason
FROM recon_match WHERE match_kind = 'REVERSAL'
ON CONFLICT (disbursement_id) DO UPDATE SET
    reversal_found = true, reversal_statement_id = excluded.reversal_statement_id,
    reversal_statement_number = excluded.reversal_statement_number,
    reversal_statement_sequence = excluded.reversal_statement_sequence, reversal_page = excluded.reversal_page,
    reversal_entry_sequence = excluded.reversal_entry_sequence, reversal_entry_date = excluded.reversal_entry_date,
    reversal_value_date = excluded.reversal_value_date, reversal_reason = excluded.reversal_reason,
    updated_at = now()
WHERE NOT r.reversal_found"""

RECON_MATCH_TABLE_SQL = """CREATE TEMP TABLE recon_match (disbursement_id text, disbursement_envelope_id text,
    shipment_batch_id text, match_kind text, statement_id text, statement_number text, statement_sequence text,
    page integer, entry_sequence integer, entry_date date, value_date date, reference text, reason text)
    ON COMMIT DROP"""


def _write(conn: psycopg.Connection, statement_id: str, result: ReconciliationResult, existing: pl.DataFrame,
           optimistic: bool) -> tuple[int, int, set[str], set[str]]:
    """`optimistic`: the remittances of disbursements without a reconciliation row when the candidates were loaded
    (nearly every line of a first statement; with `optimistic` only REVERSED candidates' rows were loaded) are COPYed
    straight into bridge.disbursement_recon. If one of them has a row after all (reconciled by an earlier statement
    or step, or by a concurrent reconciliation of another statement meanwhile), the COPY fails with a unique
    violation and the caller runs everything again with `optimistic=False` (every candidate's row loaded, INSERT ...
    ON CONFLICT for every row).
    Returns the disbursements that became RECONCILED and REVERSED, the envelopes of the disbursements the step
    remitted or reversed, and the envelopes named by the statement's error-recon lines recorded so far."""
    # only the columns written below: the match carries every column of the statement line (its text too), and each
    # filter of a million matches copies every column it carries
    matches = result.matches.select(
        *(c for c in MATCH_COLUMNS if c not in ("reference", "reason")), "reversal_found", "disbursement_amount",
        (pl.col("disbursement_id").is_in(existing["disbursement_id"].implode()) | (not optimistic)).alias("known"),
        # the reference the line was matched on (a batch booking's lines carry NONREF as customer reference)
        pl.coalesce(pl.col("our_reference"), pl.col("our_batch"), pl.col("customer_reference")).alias("reference"),
        pl.when(pl.col("match_kind") == REVERSAL)
        .then(pl.coalesce(pl.col("return_reason"), pl.col("information"))).otherwise(None).alias("reason"))
    fresh = (pl.col("match_kind") == REMITTANCE) & ~pl.col("known")
    copy_frame(conn, matches.filter(fresh).select(**{column: pl.col(source)
                                                     for column, source in RECON_REMITTANCE_COLUMNS.items()}),
               "bridge.disbursement_recon")
    conn.execute(RECON_MATCH_TABLE_SQL)
    copy_frame(conn, matches.filter(~fresh).select(*MATCH_COLUMNS), "recon_match")
    conn.execute("ANALYZE recon_match")  # statistics for the joins below (see _load_candidates)
    # the remittances recorded by the upsert, and whether the disbursement's row says reversed (by an earlier
    # statement, or by a concurrent one that this statement waited for)
    upserted = read_frame(conn, REMITTANCE_UPSERT_SQL,
                          schema={"disbursement_id": pl.String(), "reversal_found": pl.String()})
    conn.execute(REVERSAL_UPSERT_SQL)
    # The match decides: a disbursement the statement names with a reversal (on this statement or recorded before)
    # -> REVERSED, from SHIPPED, one event per disbursement with the state PBMS saw it in; a remittance this step
    # recorded of any other -> RECONCILED (the state stays SHIPPED), one event per statement and envelope. A reversal
    # recorded meanwhile by a concurrent statement is never overwritten: that transaction also moved the disbursement
    # to REVERSED, and the upsert above returned its row as reversed.
    reversed_ids = (matches.filter((pl.col("match_kind") == REVERSAL) | pl.col("reversal_found").fill_null(False))
                    .select("disbursement_id").unique())
    # (masks, not joins: the upserted and the reversed are few, the fresh nearly every match)
    remitted = fresh | pl.col("disbursement_id").is_in(
        upserted.filter(pl.col("reversal_found") == "f")["disbursement_id"].implode())
    remitted_now = matches.filter((pl.col("match_kind") == REMITTANCE) & remitted)
    reconciled_now = remitted_now.filter(
        ~pl.col("disbursement_id").is_in(reversed_ids["disbursement_id"].implode())).select(
        "disbursement_id", "disbursement_envelope_id", "disbursement_amount")
    detail = f"statement {statement_id}"
    reconciled = _count_reconciled(conn, reconciled_now, detail)
    moved_to_reversed = 0
    if reversed_ids.height:
        # The list carries the states its disbursements may move from, and the UPDATE compares the disbursement's
        # state with that column: a join to one analysed list by primary key, and no restriction of
        # bridge.disbursement by a constant state. Its statistics may be a stage behind (saying that nothing is
        # SHIPPED yet); a plan built on them expects one SHIPPED row and scans the table once per line. An empty list
        # is not written at all: joining an empty analysed table still made the planner scan the whole of
        # bridge.disbursement, 6 s per statement at 10,000,000.
        conn.execute("CREATE TEMP TABLE recon_reversed (disbursement_id text, from_states text[], "
                     "remitted_in_step boolean) ON COMMIT DROP")
        copy_frame(conn, reversed_ids.with_columns(
            pl.lit("{SHIPPED}").alias("from_states"),
            pl.col("disbursement_id").is_in(remitted_now["disbursement_id"].implode()).alias("remitted_in_step")),
            "recon_reversed")
        conn.execute("ANALYZE recon_reversed")
        moved_to_reversed = reverse(conn, detail)
    remitted_or_reversed = set(matches["disbursement_envelope_id"].drop_nulls().unique().to_list())
    in_error = {row[0] for row in conn.execute(
        "SELECT DISTINCT disbursement_envelope_id FROM bridge.disbursement_error_recon WHERE statement_id = %s "
        "AND disbursement_envelope_id IS NOT NULL", (statement_id,))}
    return reconciled, moved_to_reversed, remitted_or_reversed, in_error


ERROR_COLUMNS = ("statement_id", "statement_number", "statement_sequence", "page", "entry_sequence", "entry_date",
                 "value_date", "mark", "amount", "currency", "bank_reference_found", "disbursement_id",
                 "disbursement_envelope_id", "error_reason", "error_detail", "information")
UNRELATED_COLUMNS = ("statement_id", "page", "entry_sequence", "value_date", "entry_date", "mark", "amount",
                     "currency", "customer_reference", "bank_reference", "information")


def _write_lines(conn: psycopg.Connection, result: ReconciliationResult) -> None:
    errors = result.errors
    if errors.height:
        errors = errors.with_columns(pl.coalesce(pl.col("our_reference"), pl.col("our_batch"),
                                                 pl.col("customer_reference")).alias("bank_reference_found"))
        conn.execute("""CREATE TEMP TABLE recon_error (statement_id text, statement_number text,
            statement_sequence text, page integer, entry_sequence integer, entry_date date, value_date date,
            mark text, amount numeric, currency text, bank_reference_found text, disbursement_id text,
            disbursement_envelope_id text, error_reason text, error_detail text, information text) ON COMMIT DROP""")
        copy_frame(conn, errors.select(ERROR_COLUMNS), "recon_error")
        conn.execute("""
            INSERT INTO bridge.disbursement_error_recon (statement_id, statement_number, statement_sequence, page,
                entry_sequence, entry_date, value_date, mark, amount, currency, bank_reference, disbursement_id,
                disbursement_envelope_id, error_reason, error_detail, information)
            SELECT statement_id, statement_number, statement_sequence, page, entry_sequence, entry_date, value_date,
                   mark, amount, left(currency, 3), bank_reference_found, disbursement_id, disbursement_envelope_id,
                   error_reason, error_detail, information
            FROM recon_error ON CONFLICT (statement_id, page, entry_sequence) DO NOTHING""")
    if result.unrelated.height:
        conn.execute("""CREATE TEMP TABLE recon_unrelated (statement_id text, page integer, entry_sequence integer,
            value_date date, entry_date date, mark text, amount numeric, currency text, customer_reference text,
            bank_reference text, information text) ON COMMIT DROP""")
        copy_frame(conn, result.unrelated.select(UNRELATED_COLUMNS), "recon_unrelated")
        conn.execute("""INSERT INTO bridge.statement_unrelated_line SELECT statement_id, page, entry_sequence,
            value_date, entry_date, mark, amount, left(currency, 3), customer_reference, bank_reference, information
            FROM recon_unrelated ON CONFLICT DO NOTHING""")


# Lines reconciled per step of one statement's transaction: memory stays bounded by the step, not by the file (a
# 10,000,000-line statement is reconciled in ten steps). A step is reconciled as if it were a statement of its own
# following the previous one, which gives the same result: a line naming a disbursement that an earlier line already
# remitted or reversed is a duplicate either way (earlier steps' rows are read back as existing reconciliations).
RECONCILE_STEP_LINES = 1_000_000
_STEP_TABLES = "recon_ref, recon_batch, recon_settled, recon_match, recon_reversed, recon_error, recon_unrelated"


def reconcile_statement(conn: psycopg.Connection, statement_id: str, parsed: ParsedStatementFile,
                        error_sample: int = 20, step_lines: int | None = None) -> ReconciliationSummary:
    """Reconcile an imported statement (all in one transaction; safe to run again), RECONCILE_STEP_LINES lines (or
    `step_lines`) per step."""
    started = time.perf_counter()
    step_lines = step_lines or RECONCILE_STEP_LINES
    try:
        summary = _reconcile_once(conn, statement_id, parsed, error_sample, step_lines, started, optimistic=True)
    except psycopg.errors.UniqueViolation:
        log.info("statement %s: another statement's reconciliation recorded some of the same disbursements "
                 "meanwhile; reconciling again with conflict handling", statement_id)
        summary = _reconcile_once(conn, statement_id, parsed, error_sample, step_lines, started, optimistic=False)
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:  # committed, not in a caller's transaction
        # only a reversal changes a disbursement's stored state (see the module's docstring)
        refresh_statistics(conn, "bridge.disbursement", summary.disbursements_reversed, DISBURSEMENT_STATE_COLUMNS)
    return summary


def _reconcile_once(conn: psycopg.Connection, statement_id: str, parsed: ParsedStatementFile, error_sample: int,
                    step_lines: int, started: float, optimistic: bool) -> ReconciliationSummary:
    summary = ReconciliationSummary(statement_id)
    envelopes: set[str] = set()
    remitted_or_reversed: set[str] = set()  # the envelopes the audit recounts (see reconciliation/audit.py)
    with conn.transaction():
        conn.execute("SELECT 1 FROM bridge.account_statement WHERE statement_id = %s FOR UPDATE", (statement_id,))
        for offset in range(0, max(parsed.lines.height, 1), step_lines):  # file order: pages, entries in order
            lines = extract_references(statement_lines_frame(statement_id, parsed, parsed.lines.slice(
                offset, step_lines)).with_columns(pl.col("amount").cast(AMOUNT_DTYPE)))
            disbursements, existing = _load_candidates(conn, lines, optimistic)
            result = reconcile(lines, disbursements, existing)
            reconciled, reversed_, step_remitted_or_reversed, step_in_error = _write(conn, statement_id, result,
                                                                                      existing, optimistic)
            _write_lines(conn, result)
            conn.execute(f"DROP TABLE IF EXISTS {_STEP_TABLES}")  # the next step creates them again
            remitted_or_reversed |= step_remitted_or_reversed
            envelopes |= step_remitted_or_reversed | step_in_error
            if "disbursement_envelope_id" in result.errors.columns:
                envelopes |= set(result.errors["disbursement_envelope_id"].drop_nulls().unique().to_list())
            summary.add_step(lines.height, result, reconciled, reversed_, error_sample)
            del lines, disbursements, existing, result  # before the next step's are made
        summary.envelopes = sorted(envelopes)
        conn.execute("""UPDATE bridge.account_statement SET statement_process_status = 'RECONCILED',
                        number_of_lines_reconciled = %s, number_of_lines_unrelated = %s,
                        number_of_lines_in_error = %s, reconciled_envelope_ids = %s, processed_at = now()
                        WHERE statement_id = %s""",
                     (summary.reconciled_lines, summary.unrelated_lines, summary.error_lines,
                      sorted(remitted_or_reversed), statement_id))
        fault_point("reconciliation_before_commit")
    summary.seconds = time.perf_counter() - started
    return summary
