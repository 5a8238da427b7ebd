"""Account resolution: every RECEIVED disbursement gets a financial address (or RESOLUTION_FAILED with the reason).

Programs that require the ID mapper resolve beneficiary ids through it, in batches, each batch committed on its own
(a restart continues with what is left): COPY into a temp table, one INSERT ... SELECT into mapper_resolution_details,
one UPDATE ... FROM; what resolves becomes RESOLVED. For the other programs the beneficiary_id is the financial
address: all of them are parsed here (Polars, no network call), only the ones that fail get a
mapper_resolution_details row (and become RESOLUTION_FAILED), and the envelope records when its addresses were parsed
(`financial_addresses_parsed_at`): from then on its RECEIVED disbursements ship as they are (no rewrite of every row
to RESOLVED); shipping parses the address again from the beneficiary_id.

Audit: a failure is one disbursement_event per disbursement (with its reason); the bulk RECEIVED -> RESOLVED, or the
addresses parsed, is one envelope_event per batch (the disbursement rows carry status_updated_at).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
import psycopg

from bridge_pipelines.bank.financial_address import FA_FIELDS, with_parsed_financial_address
from bridge_pipelines.db.frames import copy_frame, read_frame
from bridge_pipelines.db.statistics import refresh_statistics
from bridge_pipelines.disbursement.envelopes import Envelope

log = logging.getLogger(__name__)

Resolver = Callable[[list[str]], pl.DataFrame]  # beneficiary ids -> beneficiary_id, status, reason_code, financial_address

# Financial addresses parsed per slice, for programs without the ID mapper (bounded memory).
PARSE_ROWS = 1_000_000

RESULT_COLUMNS = ("disbursement_id", "beneficiary_id", "mapper_status", "failure_reason_code", "financial_address",
                  "fa_type", *FA_FIELDS)


@dataclass
class ResolutionResult:
    resolved: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0


def _unresolved(conn: psycopg.Connection, envelope_id: str, ordered: bool = False) -> pl.DataFrame:
    return read_frame(conn, f"""
        SELECT d.disbursement_id, d.beneficiary_id FROM bridge.disbursement d
        WHERE d.disbursement_envelope_id = %s AND d.disbursement_status = 'RECEIVED'
          AND NOT EXISTS (SELECT 1 FROM bridge.mapper_resolution_details m WHERE m.disbursement_id = d.disbursement_id)
        {"ORDER BY d.disbursement_id" if ordered else ""}""", (envelope_id,))


def results_from_addresses(frame: pl.DataFrame) -> pl.DataFrame:
    """disbursement_id, beneficiary_id, financial_address (+ optional mapper status/reason) -> RESULT_COLUMNS."""
    if "mapper_status" not in frame.columns:
        frame = frame.with_columns(pl.lit("RESOLVED").alias("mapper_status"), pl.lit(None, pl.String).alias("failure_reason_code"))
    parsed = with_parsed_financial_address(frame.lazy(), "financial_address").collect()
    failed_parse = (pl.col("mapper_status") == "RESOLVED") & pl.col("fa_error").is_not_null()
    return parsed.with_columns(
        pl.when(failed_parse).then(pl.lit("RESOLUTION_FAILED")).otherwise(pl.col("mapper_status")).alias("mapper_status"),
        pl.when(failed_parse).then(pl.col("fa_error")).otherwise(pl.col("failure_reason_code")).alias("failure_reason_code"),
    ).select(RESULT_COLUMNS)


def _record(conn: psycopg.Connection, envelope_id: str, results: pl.DataFrame) -> tuple[int, int]:
    with conn.transaction():
        conn.execute("""CREATE TEMP TABLE resolution_result (disbursement_id text, beneficiary_id text,
            mapper_status text, failure_reason_code text, financial_address text, fa_type text,
            bank_account_number text, bank_code text, branch_code text, mobile_number text, email_address text,
            wallet_provider text) ON COMMIT DROP""")
        copy_frame(conn, results, "resolution_result", RESULT_COLUMNS)
        conn.execute("ANALYZE resolution_result")  # a temp table has no statistics until analysed
        conn.execute("""
            INSERT INTO bridge.mapper_resolution_details (disbursement_id, beneficiary_id, mapper_status,
                failure_reason_code, financial_address, fa_type, bank_account_number, bank_code, branch_code,
                mobile_number, email_address, wallet_provider)
            SELECT disbursement_id, beneficiary_id, mapper_status, failure_reason_code, financial_address, fa_type,
                   bank_account_number, bank_code, branch_code, mobile_number, email_address, wallet_provider
            FROM resolution_result
            ON CONFLICT (disbursement_id) DO NOTHING""")
        counts = conn.execute("""
            WITH changed AS (
                UPDATE bridge.disbursement d SET disbursement_status = r.mapper_status,
                       status_reason_code = r.failure_reason_code, status_updated_at = now()
                FROM resolution_result r
                WHERE d.disbursement_id = r.disbursement_id AND d.disbursement_status = 'RECEIVED'
                RETURNING d.disbursement_id, d.disbursement_envelope_id, d.disbursement_status, d.status_reason_code
            ),
            failed_events AS (
                INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status,
                                                       to_status, reason_code)
                SELECT disbursement_id, disbursement_envelope_id, 'RECEIVED', disbursement_status, status_reason_code
                FROM changed WHERE disbursement_status = 'RESOLUTION_FAILED'
            )
            SELECT count(*) FILTER (WHERE disbursement_status = 'RESOLVED'),
                   count(*) FILTER (WHERE disbursement_status = 'RESOLUTION_FAILED') FROM changed""").fetchone()
        resolved, failed = counts
        _count_failed(conn, envelope_id, failed)
        _resolved_event(conn, envelope_id, resolved, f"{resolved} disbursement(s) RECEIVED -> RESOLVED "
                                                     "(financial addresses from the ID mapper)")
    return resolved, failed


def _count_failed(conn: psycopg.Connection, envelope_id: str, failed: int) -> None:
    conn.execute("""UPDATE bridge.disbursement_envelope_batch_status
                    SET number_of_disbursements_failed = number_of_disbursements_failed + %s, updated_at = now()
                    WHERE disbursement_envelope_id = %s""", (failed, envelope_id))


def _resolved_event(conn: psycopg.Connection, envelope_id: str, resolved: int, detail: str) -> None:
    """RESOLVED is recorded once per batch of the envelope, when it resolved any (a failure per disbursement, with
    its reason)."""
    if resolved:
        conn.execute("INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail) "
                     "VALUES (%s, 'RESOLVED', %s)", (envelope_id, detail))


def _unparsable(todo: pl.DataFrame, parse_rows: int) -> pl.DataFrame:
    """RESULT_COLUMNS of the disbursements of `todo` whose beneficiary id is not a financial address. Parsed
    `parse_rows` at a time: the parsed fields of every row are dropped once the slice's failures are kept (all at once,
    10,000,000 addresses took 4.5 GB)."""
    parts = list(todo.iter_slices(parse_rows)) or [todo]  # an empty frame still gives the result's columns
    return pl.concat([
        results_from_addresses(part.with_columns(pl.col("beneficiary_id").alias("financial_address")))
        .filter(pl.col("mapper_status") == "RESOLUTION_FAILED")
        for part in parts])


def _resolve_without_mapper(conn: psycopg.Connection, envelope_id: str) -> tuple[int, pl.DataFrame]:
    """The beneficiary ids are the financial addresses: parse them all (Polars), record the ones that do not parse
    as RESOLUTION_FAILED with the reason, and record on the envelope that its addresses were parsed, which makes the
    other RECEIVED disbursements ready to ship (no per-row write for them). The envelope is already started, so
    intake can no longer add RECEIVED disbursements to it, and once parsed there is nothing left to do (a resumed run
    does not parse again); the batch status row is locked all the same so that nothing slips in between the read and
    the record. Returns (disbursements with a financial address, the failures)."""
    with conn.transaction():
        parsed_at = conn.execute("SELECT financial_addresses_parsed_at FROM bridge.disbursement_envelope_batch_status "
                                 "WHERE disbursement_envelope_id = %s FOR UPDATE", (envelope_id,)).fetchone()[0]
        if parsed_at is not None:
            return 0, pl.DataFrame(schema={name: pl.String for name in RESULT_COLUMNS})
        todo = _unresolved(conn, envelope_id)
        failures = _unparsable(todo, PARSE_ROWS)
        failed = 0
        if failures.height:
            _resolved, failed = _record(conn, envelope_id, failures)
        if failed != failures.height:
            raise RuntimeError(f"envelope {envelope_id}: {failures.height} financial addresses do not parse but "
                               f"{failed} disbursements became RESOLUTION_FAILED: rolled back")
        conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET financial_addresses_parsed_at = now(),
                        updated_at = now() WHERE disbursement_envelope_id = %s""", (envelope_id,))
        ready = todo.height - failed
        _resolved_event(conn, envelope_id, ready, f"{ready} disbursement(s) have a financial address (their "
                                                  "beneficiary ids parse) and ship from RECEIVED")
    return ready, failures


def resolve_accounts(conn: psycopg.Connection, envelope: Envelope, resolver: Resolver | None, batch_size: int,
                     progress: Callable[[str], None] = log.info) -> ResolutionResult:
    """Resolve every RECEIVED disbursement of the envelope. `resolver` is the ID mapper (None: the program does
    not use one and beneficiary ids are financial addresses)."""
    started = time.perf_counter()
    result = ResolutionResult()
    if not envelope.mapper_required:
        result.resolved, failures = _resolve_without_mapper(conn, envelope.envelope_id)
        result.failed = failures.height
        result.batches = 1
        result.failed_by_reason = dict(failures.group_by("failure_reason_code").len().iter_rows())
        refresh_statistics(conn, "bridge.disbursement", result.failed)  # only the failures changed state
        result.seconds = time.perf_counter() - started
        progress(f"resolution: {result.resolved} resolved, {result.failed} failed "
                 f"({(result.resolved + result.failed) / max(result.seconds, 1e-9):,.0f} rows/s)")
        return result
    todo = _unresolved(conn, envelope.envelope_id, ordered=True)
    total = todo.height
    if envelope.mapper_required and resolver is None:
        raise ValueError(f"program {envelope.program} requires ID mapper resolution but no mapper is configured")
    chunk_size = batch_size
    for offset in range(0, total, chunk_size):
        chunk = todo.slice(offset, chunk_size)
        answers = resolver(chunk["beneficiary_id"].unique().to_list())
        frame = chunk.join(answers.rename({"status": "mapper_status", "reason_code": "failure_reason_code"})
                           .select("beneficiary_id", "mapper_status", "failure_reason_code", "financial_address")
                           .unique("beneficiary_id"), on="beneficiary_id", how="left")
        frame = frame.with_columns(
            pl.col("mapper_status").fill_null("RESOLUTION_FAILED"),
            pl.when(pl.col("mapper_status").is_null()).then(pl.lit("MAPPER_NO_ANSWER"))
            .otherwise(pl.col("failure_reason_code")).alias("failure_reason_code"))
        results = results_from_addresses(frame)
        resolved, failed = _record(conn, envelope.envelope_id, results)
        result.resolved += resolved
        result.failed += failed
        result.batches += 1
        for reason, count in results.filter(pl.col("mapper_status") == "RESOLUTION_FAILED") \
                .group_by("failure_reason_code").len().iter_rows():
            result.failed_by_reason[reason] = result.failed_by_reason.get(reason, 0) + count
        done = min(offset + chunk_size, total)
        elapsed = time.perf_counter() - started
        progress(f"resolution batch {result.batches} of {-(-total // chunk_size)}: {done}/{total} "
                 f"({done / elapsed:,.0f} rows/s)" if elapsed > 0 else f"resolution batch {result.batches}")
    conn.execute("""UPDATE bridge.disbursement_envelope_batch_status SET id_mapper_resolution_status = 'COMPLETED',
                    id_mapper_resolution_latest_timestamp = now(), updated_at = now()
                    WHERE disbursement_envelope_id = %s""", (envelope.envelope_id,))
    refresh_statistics(conn, "bridge.disbursement", result.resolved + result.failed)
    result.seconds = time.perf_counter() - started
    return result


def record_mapper_error(conn: psycopg.Connection, envelope_id: str, error_code: str, final: bool) -> None:
    conn.execute("""UPDATE bridge.disbursement_envelope_batch_status
                    SET id_mapper_resolution_attempts = id_mapper_resolution_attempts + 1,
                        id_mapper_resolution_latest_error_code = %s, id_mapper_resolution_latest_timestamp = now(),
                        id_mapper_resolution_status = CASE WHEN %s THEN 'ERROR' ELSE id_mapper_resolution_status END,
                        updated_at = now()
                    WHERE disbursement_envelope_id = %s""", (error_code, final, envelope_id))
