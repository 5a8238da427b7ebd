"""A small camt.053.001.08 writer: one statement (one <Stmt>) from plain data.

Used by the example bank to emit statements and by tests and benchmarks to build documents. The output follows
the camt.053.001.08 schema (element order, mandatory elements, text lengths, amount digits); what the schema
would refuse is refused here with ValueError rather than written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal
from xml.sax.saxutils import escape

VERSION = "08"
NAMESPACE = f"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{VERSION}"

CreditDebit = Literal["CRDT", "DBIT"]

_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
# Characters XML 1.0 cannot carry at all.
_INVALID_XML_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_WRITE_BATCH = 1000  # entries rendered per yielded chunk


@dataclass(frozen=True)
class CamtBatch:
    """NtryDtls/Btch: the entry books a whole payment batch (e.g. one pain.001 PmtInf) as one amount."""

    payment_information_id: str
    number_of_transactions: int
    message_id: str | None = None


@dataclass(frozen=True)
class CamtEntry:
    """One <Ntry>. `amount` is never negative: the direction is `credit_debit` (and `reversal`)."""

    amount: Decimal
    credit_debit: CreditDebit
    booking_date: date
    value_date: date | None = None
    reversal: bool = False  # RvslInd=true: CRDT reverses an earlier debit, DBIT an earlier credit
    account_servicer_reference: str | None = None  # AcctSvcrRef
    end_to_end_id: str | None = None  # TxDtls/Refs/EndToEndId
    return_reason: str | None = None  # TxDtls/RtrInf/Rsn/Cd (4-letter ISO code) or Prtry (anything longer)
    remittance_information: str | None = None  # TxDtls/RmtInf/Ustrd, one element per line (each <= 140 chars)
    additional_information: str | None = None  # AddtlNtryInf (<= 500 chars)
    batch: CamtBatch | None = None
    bank_transaction_code: tuple[str, str, str] | None = None  # Domain, Family, SubFamily; None: a default
    status: str = "BOOK"


@dataclass(frozen=True)
class CamtBalance:
    """A booked balance; `amount` is signed (negative = debit balance, written as CdtDbtInd DBIT)."""

    amount: Decimal
    date: date


def write_camt053(
    *,
    account: str,
    currency: str,
    statement_id: str,
    electronic_sequence_number: int,
    opening_balance: CamtBalance,
    closing_balance: CamtBalance,
    entries: Iterable[CamtEntry],
    message_id: str | None = None,
    created_at: datetime | None = None,
    additional_information: str | None = None,
) -> bytes:
    """A complete camt.053.001.08 document (UTF-8) with one statement.

    `account` is written as Acct/Id/IBAN when it looks like an IBAN, else as Acct/Id/Othr/Id.
    The closing balance is taken as given (no check that it closes): tests need statements that do not close.
    """
    return b"".join(
        iter_camt053(
            account=account,
            currency=currency,
            statement_id=statement_id,
            electronic_sequence_number=electronic_sequence_number,
            opening_balance=opening_balance,
            closing_balance=closing_balance,
            entries=entries,
            message_id=message_id,
            created_at=created_at,
            additional_information=additional_information,
        )
    )


def iter_camt053(
    *,
    account: str,
    currency: str,
    statement_id: str,
    electronic_sequence_number: int,
    opening_balance: CamtBalance,
    closing_balance: CamtBalance,
    entries: Iterable[CamtEntry],
    message_id: str | None = None,
    created_at: datetime | None = None,
    additional_information: str | None = None,
) -> Iterator[bytes]:
    """Same document as write_camt053, yielded in pieces so that large statements can be streamed to a file."""
    if not _CURRENCY_RE.fullmatch(currency):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    if electronic_sequence_number < 0:
        raise ValueError("electronic_sequence_number must not be negative")
    created = (created_at or datetime.now(UTC)).replace(microsecond=0).isoformat()
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{NAMESPACE}">\n'
        "<BkToCstmrStmt>\n"
        f"<GrpHdr><MsgId>{_text(message_id or statement_id, 35)}</MsgId><CreDtTm>{created}</CreDtTm></GrpHdr>\n"
        f"<Stmt><Id>{_text(statement_id, 35)}</Id><ElctrncSeqNb>{electronic_sequence_number}</ElctrncSeqNb>"
        f"<CreDtTm>{created}</CreDtTm>\n"
        f"<Acct><Id>{_account(account)}</Id><Ccy>{currency}</Ccy></Acct>\n"
        f"{_balance('OPBD', opening_balance, currency)}\n"
        f"{_balance('CLBD', closing_balance, currency)}\n"
    ).encode()
    pending: list[str] = []
    for entry in entries:
        pending.append(_entry(entry, currency))
        if len(pending) >= _WRITE_BATCH:
            yield "".join(pending).encode()
            pending = []
    if additional_information is not None:
        pending.append(f"<AddtlStmtInf>{_text(additional_information, 500)}</AddtlStmtInf>\n")
    pending.append("</Stmt>\n</BkToCstmrStmt>\n</Document>\n")
    yield "".join(pending).encode()


def _account(account: str) -> str:
    if _IBAN_RE.fullmatch(account) and len(account) <= 34:
        return f"<IBAN>{account}</IBAN>"
    return f"<Othr><Id>{_text(account, 34)}</Id></Othr>"


def _balance(code: str, balance: CamtBalance, currency: str) -> str:
    text = _amount(balance.amount)  # validates first: NaN cannot be compared
    indicator = "DBIT" if balance.amount < 0 else "CRDT"
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
        f'<Amt Ccy="{currency}">{text}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        f"<Dt><Dt>{balance.date.isoformat()}</Dt></Dt></Bal>"
    )


def _entry(entry: CamtEntry, currency: str) -> str:
    if entry.credit_debit not in ("CRDT", "DBIT"):
        raise ValueError(f"credit_debit {entry.credit_debit!r} is not CRDT or DBIT")
    text = _amount(entry.amount)  # validates first: NaN cannot be compared
    if entry.amount < 0:
        raise ValueError("entry amounts are never negative; use credit_debit for the direction")
    amount = f'<Amt Ccy="{currency}">{text}</Amt>'
    parts = [
        f"<Ntry>{amount}<CdtDbtInd>{entry.credit_debit}</CdtDbtInd>",
        "<RvslInd>true</RvslInd>" if entry.reversal else "",
        f"<Sts><Cd>{_text(entry.status, 4)}</Cd></Sts>",
        f"<BookgDt><Dt>{entry.booking_date.isoformat()}</Dt></BookgDt>",
        f"<ValDt><Dt>{entry.value_date.isoformat()}</Dt></ValDt>" if entry.value_date else "",
        _optional("AcctSvcrRef", entry.account_servicer_reference, 35),
        _transaction_code(entry),
        _details(entry, amount),
        _optional("AddtlNtryInf", entry.additional_information, 500),
        "</Ntry>\n",
    ]
    return "".join(parts)


def _transaction_code(entry: CamtEntry) -> str:
    domain, family, sub_family = entry.bank_transaction_code or _default_transaction_code(entry)
    return (
        f"<BkTxCd><Domn><Cd>{_text(domain, 4)}</Cd><Fmly><Cd>{_text(family, 4)}</Cd>"
        f"<SubFmlyCd>{_text(sub_family, 4)}</SubFmlyCd></Fmly></Domn></BkTxCd>"
    )


def _default_transaction_code(entry: CamtEntry) -> tuple[str, str, str]:
    if entry.return_reason is not None:
        return ("PMNT", "ICDT", "RRTN")  # issued credit transfer, returned
    if entry.credit_debit == "DBIT":
        return ("PMNT", "ICDT", "ESCT")  # issued SEPA credit transfer
    return ("PMNT", "RCDT", "ESCT")  # received SEPA credit transfer


def _details(entry: CamtEntry, amount: str) -> str:
    batch = ""
    if entry.batch is not None:
        if entry.batch.number_of_transactions < 0:
            raise ValueError("batch number_of_transactions must not be negative")
        batch = (
            "<Btch>"
            + _optional("MsgId", entry.batch.message_id, 35)
            + _optional("PmtInfId", entry.batch.payment_information_id, 35)
            + f"<NbOfTxs>{entry.batch.number_of_transactions}</NbOfTxs></Btch>"
        )
    transaction = _transaction_details(entry, amount)
    if not batch and not transaction:
        return ""
    return f"<NtryDtls>{batch}{transaction}</NtryDtls>"


def _transaction_details(entry: CamtEntry, amount: str) -> str:
    if entry.end_to_end_id is None and entry.return_reason is None and entry.remittance_information is None:
        return ""
    references = _optional("EndToEndId", entry.end_to_end_id, 35)
    parts = [
        "<TxDtls>",
        f"<Refs>{references}</Refs>" if references else "",
        f"{amount}<CdtDbtInd>{entry.credit_debit}</CdtDbtInd>",
    ]
    if entry.remittance_information is not None:
        lines = entry.remittance_information.split("\n")
        parts.append("<RmtInf>" + "".join(f"<Ustrd>{_text(line, 140)}</Ustrd>" for line in lines) + "</RmtInf>")
    if entry.return_reason is not None:
        reason = entry.return_reason
        choice = "Cd" if len(reason) <= 4 else "Prtry"
        parts.append(f"<RtrInf><Rsn><{choice}>{_text(reason, 35)}</{choice}></Rsn></RtrInf>")
    parts.append("</TxDtls>")
    return "".join(parts)


def _optional(tag: str, value: str | None, max_length: int) -> str:
    return "" if value is None else f"<{tag}>{_text(value, max_length)}</{tag}>"


def _text(value: str, max_length: int) -> str:
    """Escaped element text, checked against the schema's MaxNText (1..max_length characters)."""
    if not 1 <= len(value) <= max_length:
        raise ValueError(f"text {value!r} must be 1 to {max_length} characters long")
    if _INVALID_XML_CHARS_RE.search(value):
        raise ValueError(f"text {value!r} contains characters XML cannot carry")
    return escape(value)


def _amount(amount: Decimal) -> str:
    """ActiveOrHistoricCurrencyAndAmount: at most 5 decimals and 18 digits, never an exponent or a sign."""
    if not amount.is_finite():
        raise ValueError(f"amount {amount} is not finite")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -5:
        rounded = amount.quantize(Decimal("0.00001"))
        if rounded != amount:
            raise ValueError(f"amount {amount} has more than 5 decimals")
        amount = rounded
    text = format(amount.copy_abs(), "f")
    if len(text.replace(".", "").lstrip("0")) > 18:
        raise ValueError(f"amount {amount} has more than 18 digits")
    return text
