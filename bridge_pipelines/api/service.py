"""What each API write does in the database: stage the request's rows, run the intake rules on exactly those rows,
answer from their results, and remember the answer under (sender, message_id).

One write at a time, like intake runs: the request takes the intake's advisory lock (a session lock, held until the
answer is committed), then works in one REPEATABLE READ transaction whose snapshot is taken after the lock. So two
requests on one envelope are serialised, the second sees the first's committed counters, and the running caps of
the intake cannot be overshot. `run_intake` is called inside that transaction (its own transaction becomes a
savepoint; its REPEATABLE READ matches ours, and its re-entrant advisory lock is already ours).

All-or-nothing requests (create_disbursements, cancel_disbursements, as in OpenG2P): if any item is rejected, the
whole transaction is rolled back (nothing accepted, no counters moved), and a second transaction records the
request's rows in staging as REJECTED, each with its own intake code, or REQUEST_REJECTED for the items that were
fine but went down with the request, and stores the answer. Staging keeps every row PBMS sent and why it was refused;
a staged row is never seen as PENDING by the intake sensor.

Replay: the answer is stored in bridge.api_request in the same transaction as the effect. The same message_id with
the same content gets the stored answer and nothing is done again; with other content it is refused
(DUPLICATE_MESSAGE_ID) and nothing is done.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bridge_pipelines.api.jsonio import canonical, dumps
from bridge_pipelines.api.models import ParsedRequest
from bridge_pipelines.api.pool import ConnectionPool
from bridge_pipelines.config import Settings
from bridge_pipelines.intake.service import INTAKE_LOCK, run_intake
from bridge_pipelines.intake.staging import COLUMNS, stage_row

log = logging.getLogger(__name__)

REQUEST_REJECTED = "REQUEST_REJECTED"          # a fine item of an all-or-nothing request that was rejected
DUPLICATE_MESSAGE_ID = "DUPLICATE_MESSAGE_ID"  # a used message_id with other content
INVALID_DISBURSEMENT_PAYLOAD = "INVALID_DISBURSEMENT_PAYLOAD"  # OpenG2P's header code for a rejected list
MAX_ATTEMPTS = 5


class ServiceBusy(RuntimeError):
    """503: the intake lock or a connection could not be had in time, or conflicts did not settle."""


@dataclass
class ItemResult:
    status: str                 # ACCEPTED | REJECTED
    code: str | None
    detail: str | None


@dataclass
class WritePlan:
    """One write request: the staged rows to add, and how to answer from their intake results."""

    action: str
    table: str
    rows: list[dict[str, Any]]
    all_or_nothing: bool
    answer: Callable[[list[ItemResult], bool], tuple[str, str | None, Any]]
    # answer(results, rolled_back) -> (status succ|rjct, status_reason_message, message)


@dataclass
class Answer:
    body: bytes
    status: str
    replayed: bool = False


class _RolledBack(Exception):
    def __init__(self, results: list[ItemResult]) -> None:
        super().__init__("all-or-nothing request rejected")
        self.results = results


def request_digest(action: str, message: Any) -> str:
    return hashlib.sha256(canonical({"action": action, "message": message})).hexdigest()


def response_header(request: ParsedRequest, status: str, reason: str | None, total: int, completed: int,
                    reason_code: str | None = None) -> dict[str, Any]:
    """The G2P Connect sync response header: echoes message_id and action (the endpoint's name if none was sent)."""
    header = request.header
    return {
        "version": header.version or "1.0.0",
        "message_id": header.message_id,
        "message_ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "action": header.action or request.action,
        "status": status,
        "status_reason_code": reason_code,
        "status_reason_message": reason,
        "total_count": total,
        "completed_count": completed,
        "sender_id": header.receiver_id or "g2p-bridge",
        "receiver_id": header.sender_id,
        "is_msg_encrypted": False,
        "meta": {},
    }


class ApiService:
    def __init__(self, database_url: str, settings: Settings, pool: ConnectionPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or ConnectionPool(database_url)

    def close(self) -> None:
        self.pool.close()

    # --- writes --------------------------------------------------------------------------------------------------

    def write(self, sender_id: str, request: ParsedRequest, plan: WritePlan) -> Answer:
        # of the message as sent (before any id is generated), so a replay matches and gets the generated ids back
        digest = request_digest(plan.action, request.message)
        try:
            with self.pool.connection() as conn:
                try:
                    conn.execute("SELECT pg_advisory_lock(%s)", (INTAKE_LOCK,))
                except psycopg.errors.LockNotAvailable:
                    raise ServiceBusy("the intake is busy (a large intake run holds its lock); retry later") from None
                try:
                    for attempt in range(1, MAX_ATTEMPTS + 1):
                        try:
                            return self._write_once(conn, sender_id, request, plan, digest)
                        except psycopg.errors.SerializationFailure:
                            if attempt == MAX_ATTEMPTS:
                                raise ServiceBusy("the envelope is being changed by the pipeline; retry") from None
                            log.info("API %s %s: conflict with a pipeline step, retrying", plan.action,
                                     request.header.message_id)
                finally:
                    try:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (INTAKE_LOCK,))
                    except psycopg.Error:
                        conn.close()  # ending the session releases the lock; the pool drops the connection
        except psycopg.errors.LockNotAvailable:
            raise ServiceBusy("a lock could not be had in time; retry later") from None
        raise AssertionError("unreachable")

    def _write_once(self, conn: psycopg.Connection, sender_id: str, request: ParsedRequest, plan: WritePlan,
                    digest: str) -> Answer:
        message_id = request.header.message_id
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                earlier = self._stored(conn, sender_id, message_id, digest, request)
                if earlier is not None:
                    return earlier
                ids = self._stage(conn, plan.table, plan.rows)
                run_intake(conn, self.settings.business_date, self.settings.disbursement_sla_days,
                           only_staging_ids={plan.table: ids})
                results = self._results(conn, plan.table, ids)
                if plan.all_or_nothing and any(r.status == "REJECTED" for r in results):
                    raise _RolledBack(results)
                return self._answer(conn, sender_id, request, plan, digest, results, rolled_back=False)
        except _RolledBack as rejected:
            results = [r if r.status == "REJECTED" else ItemResult(
                "REJECTED", REQUEST_REJECTED,
                f"not kept: {plan.action} is all-or-nothing and another item of API message {message_id!r} "
                f"from {sender_id!r} was rejected") for r in rejected.results]
            with conn.transaction():
                self._stage(conn, plan.table, plan.rows, rejected=results)
                return self._answer(conn, sender_id, request, plan, digest, rejected.results, rolled_back=True)

    def _stored(self, conn: psycopg.Connection, sender_id: str, message_id: str, digest: str,
                request: ParsedRequest) -> Answer | None:
        row = conn.execute(
            "SELECT body_sha256, status, response FROM bridge.api_request "
            "WHERE sender_id = %s AND message_id = %s", (sender_id, message_id)).fetchone()
        if row is None:
            return None
        stored_digest, status, response = row
        if stored_digest == digest:
            log.info("API replay of message %r from %r: answered from the store", message_id, sender_id)
            return Answer(response.encode("utf-8"), status, replayed=True)
        log.warning("API message %r from %r reused with other content: refused", message_id, sender_id)
        body = {
            "header": response_header(request, "rjct", DUPLICATE_MESSAGE_ID, 0, 0, "rjct.message_id.duplicate"),
            "message": None,
        }
        return Answer(dumps(body), "rjct")

    def _answer(self, conn: psycopg.Connection, sender_id: str, request: ParsedRequest, plan: WritePlan,
                digest: str, results: list[ItemResult], rolled_back: bool) -> Answer:
        status, reason, message = plan.answer(results, rolled_back)
        completed = 0 if rolled_back else sum(1 for r in results if r.status == "ACCEPTED")
        body = {"header": response_header(request, status, reason, len(results), completed), "message": message}
        encoded = dumps(body)
        conn.execute(
            "INSERT INTO bridge.api_request (sender_id, message_id, action, body_sha256, status, response) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (sender_id, request.header.message_id, plan.action, digest, status, encoded.decode("utf-8")))
        return Answer(encoded, status)

    @staticmethod
    def _stage(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]],
               rejected: list[ItemResult] | None = None) -> list[int]:
        """Insert the rows in request order; returns their staging ids. With `rejected`, the rows go in already
        REJECTED with their codes (they never exist as PENDING)."""
        if len(rows) == 1 and rejected is None:
            return [stage_row(conn, table, **{c: rows[0].get(c) for c in COLUMNS[table]})]
        ids = sorted(i for (i,) in conn.execute(
            sql.SQL("SELECT nextval(pg_get_serial_sequence({}, 'staging_id')) FROM generate_series(1, %s)")
            .format(sql.Literal(f"staging.{table}")), (len(rows),)))
        columns = ("staging_id", *COLUMNS[table])
        if rejected is not None:
            columns += ("intake_status", "intake_error_code", "intake_error_detail", "intake_processed_at")
            now = conn.execute("SELECT now()").fetchone()[0]
        query = sql.SQL("COPY staging.{} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with conn.cursor() as cur, cur.copy(query) as copy:
            for index, (staging_id, row) in enumerate(zip(ids, rows)):
                values = (staging_id, *(row.get(c) for c in COLUMNS[table]))
                if rejected is not None:
                    result = rejected[index]
                    values += ("REJECTED", result.code, result.detail, now)
                copy.write_row(values)
        return ids

    @staticmethod
    def _results(conn: psycopg.Connection, table: str, ids: list[int]) -> list[ItemResult]:
        found = {sid: ItemResult(status, code, detail) for sid, status, code, detail in conn.execute(
            sql.SQL("SELECT staging_id, intake_status, intake_error_code, "
                    "CASE WHEN intake_status = 'REJECTED' THEN intake_error_detail END "
                    "FROM staging.{} WHERE staging_id = ANY(%s)").format(sql.Identifier(table)), (ids,))}
        results = [found.get(i) for i in ids]
        if any(r is None or r.status == "PENDING" for r in results):
            raise RuntimeError(f"intake left staged {table} rows of an API request unprocessed")
        return results  # type: ignore[return-value]

    # --- reads ---------------------------------------------------------------------------------------------------

    def envelope_status(self, envelope_id: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT s.*, p.id_mapper_resolution_required FROM bridge.envelope_status s "
                "LEFT JOIN bridge.benefit_program_configuration p USING (benefit_program_mnemonic) "
                "WHERE s.disbursement_envelope_id = %s", (envelope_id,)).fetchone()

    def disbursement_status(self, ids: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        with self.pool.connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                with conn.cursor(row_factory=dict_row) as cur:
                    rows = cur.execute("SELECT * FROM bridge.disbursement_status WHERE disbursement_id = ANY(%s)",
                                       (ids,)).fetchall()
                    errors = cur.execute(
                        "SELECT statement_id, statement_number, statement_sequence, entry_sequence, entry_date, "
                        "value_date, error_reason, error_detail, disbursement_id, bank_reference AS "
                        "bank_reference_number, amount, currency FROM bridge.disbursement_error_recon "
                        "WHERE disbursement_id = ANY(%s) ORDER BY error_recon_id", (ids,)).fetchall()
        by_id = {row["disbursement_id"]: row for row in rows}
        error_map: dict[str, list[dict]] = {}
        for error in errors:
            error_map.setdefault(error["disbursement_id"], []).append(error)
        return by_id, error_map

