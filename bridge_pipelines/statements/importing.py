"""Importing one statement file: parse (MT940 or camt.053), check integrity, check the account is a program
funding account, and record it in bridge.account_statement (PARSED, or ERROR with the reason). A file in error is
recorded with its raw bytes and nothing else from it is applied."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bridge_pipelines.statements.camt053 import looks_like_camt053, parse_camt053
from bridge_pipelines.statements.checks import check_integrity, statement_summary
from bridge_pipelines.statements.model import ParsedStatementFile, Problem
from bridge_pipelines.statements.mt940 import parse_mt940

INVALID_ACCOUNT_NUMBER = "INVALID_ACCOUNT_NUMBER"


@dataclass
class ImportOutcome:
    statement_id: str
    parsed: ParsedStatementFile
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def error_code(self) -> str | None:
        return self.problems[0].code if self.problems else None

    @property
    def error_detail(self) -> str | None:
        if not self.problems:
            return None
        return "; ".join(p.message for p in self.problems[:20]) + (
            f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else "")


def parse_statement_file(data: bytes) -> ParsedStatementFile:
    return parse_camt053(data) if looks_like_camt053(data) else parse_mt940(data)


def account_candidates(account: str | None) -> list[str]:
    """How a statement may name an account: as is, without spaces, or after a 'BANKCODE/' prefix."""
    if not account:
        return []
    plain = account.strip().replace(" ", "")
    names = [plain]
    if "/" in plain:
        names.append(plain.rsplit("/", 1)[1])
    return names


def known_accounts(conn: psycopg.Connection) -> set[str]:
    return {row[0].replace(" ", "") for row in conn.execute(
        "SELECT DISTINCT sponsor_bank_account_number FROM bridge.benefit_program_configuration")}


def check_statement(conn: psycopg.Connection, statement_id: str, data: bytes) -> ImportOutcome:
    parsed = parse_statement_file(data)
    problems = list(parsed.problems) + [p for p in check_integrity(parsed) if p not in parsed.problems]
    accounts = known_accounts(conn)
    for index, page in enumerate(parsed.pages):
        if not any(name in accounts for name in account_candidates(page.account)):
            problems.append(Problem(INVALID_ACCOUNT_NUMBER,
                                    f"page {index + 1}: account {page.account!r} is not a program funding account",
                                    index))
            break
    return ImportOutcome(statement_id, parsed, problems)


# The columns record_statement writes, with their types (binary COPY sends each value in its column's exact type;
# character(n) goes as text, which has the same binary form).
_RECORD_TYPES = {
    "statement_id": "text", "file_name": "text", "file_sha256": "text", "file_size": "int8", "raw_file": "bytea",
    "statement_format": "text", "account_number": "text", "statement_number": "text", "currency": "text",
    "opening_balance": "numeric", "closing_balance": "numeric", "statement_date": "date", "number_of_pages": "int4",
    "number_of_lines": "int4", "statement_process_status": "text", "statement_process_error_code": "text",
    "statement_process_error_detail": "text", "pages": "jsonb",
}


def record_statement(conn: psycopg.Connection, outcome: ImportOutcome, file_name: str, sha256: str,
                     data: bytes) -> None:
    parsed = outcome.parsed
    first = parsed.pages[0] if parsed.pages else None
    last = parsed.pages[-1] if parsed.pages else None
    account = None
    if first and first.account:
        names = account_candidates(first.account)
        accounts = known_accounts(conn)
        account = next((n for n in names if n in accounts), names[0] if names else None)
    summary = statement_summary(parsed)
    values = dict(
        statement_id=outcome.statement_id, file_name=file_name, file_sha256=sha256, file_size=len(data), raw_file=data,
        statement_format=parsed.format, account_number=account,
        statement_number=first.statement_number if first else None,
        currency=(first.currency if first and first.currency and len(first.currency) == 3 else None),
        opening_balance=(first.opening_balance.signed if first and first.opening_balance else None),
        closing_balance=(last.closing_balance.signed if last and last.closing_balance else None),
        statement_date=(last.closing_balance.date if last and last.closing_balance else None),
        number_of_pages=len(parsed.pages), number_of_lines=parsed.lines.height,
        statement_process_status="PARSED" if outcome.ok else "ERROR", statement_process_error_code=outcome.error_code,
        statement_process_error_detail=outcome.error_detail,
        pages=Jsonb(json.loads(json.dumps(summary, default=str))))
    now, recorded = conn.execute(
        "SELECT now(), EXISTS (SELECT 1 FROM bridge.account_statement WHERE statement_id = %s)",
        (outcome.statement_id,)).fetchone()
    if recorded:  # imported before (the same file again): its outcome is recorded again, its bytes are kept
        conn.execute(
            """UPDATE bridge.account_statement SET statement_process_status = %(statement_process_status)s,
                   statement_process_error_code = %(statement_process_error_code)s,
                   statement_process_error_detail = %(statement_process_error_detail)s, pages = %(pages)s,
                   account_number = %(account_number)s, processed_at = now()
               WHERE statement_id = %(statement_id)s""", values)
        return
    # A new statement: one row COPYed in binary. As a query parameter, a file of 100 MB took 2.5 s to hand over (the
    # client copies and sends it in small non-blocking writes); COPY streams it in 0.8 s.
    columns = sql.SQL(", ").join(map(sql.Identifier, [*_RECORD_TYPES, "processed_at"]))
    with conn.cursor() as cur, cur.copy(
            sql.SQL("COPY bridge.account_statement ({}) FROM STDIN (FORMAT binary)").format(columns)) as copy:
        copy.set_types([*_RECORD_TYPES.values(), "timestamptz"])
        copy.write_row([*(values[column] for column in _RECORD_TYPES), now])
