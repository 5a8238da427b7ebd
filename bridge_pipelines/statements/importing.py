"""Importing one statement file: parse (MT940 or camt.053), check integrity, check the account is a program
funding account, and record it in bridge.account_statement (PARSED, or ERROR with the reason). A file in error is
recorded with its raw bytes and nothing else from it is applied."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg
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
    conn.execute(
        """INSERT INTO bridge.account_statement (statement_id, file_name, file_sha256, file_size, raw_file,
               statement_format, account_number, statement_number, currency, opening_balance, closing_balance,
               statement_date, number_of_pages, number_of_lines, statement_process_status,
               statement_process_error_code, statement_process_error_detail, pages, processed_at)
           VALUES (%(id)s, %(name)s, %(sha)s, %(size)s, %(raw)s, %(format)s, %(account)s, %(number)s, %(currency)s,
                   %(opening)s, %(closing)s, %(date)s, %(pages)s, %(lines)s, %(status)s, %(code)s, %(detail)s,
                   %(summary)s, now())
           ON CONFLICT (statement_id) DO UPDATE SET
               statement_process_status = excluded.statement_process_status,
               statement_process_error_code = excluded.statement_process_error_code,
               statement_process_error_detail = excluded.statement_process_error_detail,
               pages = excluded.pages, account_number = excluded.account_number, processed_at = now()""",
        dict(id=outcome.statement_id, name=file_name, sha=sha256, size=len(data), raw=data, format=parsed.format,
             account=account, number=first.statement_number if first else None,
             currency=(first.currency if first and first.currency and len(first.currency) == 3 else None),
             opening=(first.opening_balance.signed if first and first.opening_balance else None),
             closing=(last.closing_balance.signed if last and last.closing_balance else None),
             date=(last.closing_balance.date if last and last.closing_balance else None),
             pages=len(parsed.pages), lines=parsed.lines.height,
             status="PARSED" if outcome.ok else "ERROR", code=outcome.error_code, detail=outcome.error_detail,
             summary=Jsonb(json.loads(json.dumps(summary, default=str)))))
