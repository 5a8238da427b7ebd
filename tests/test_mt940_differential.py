"""Our MT940 parser against the mt-940 library (5.1.1, `parse_statements(..., options=Options.all())`) on the
41 samples: same number of statement lines, and per line the same signed amount, value and entry dates, mark, funds
code, transaction type, customer and bank reference and supplementary details, wherever the library reads the file
right. Every place where we differ is listed below with the reason; a new disagreement (or one that disappears)
fails the test, so a change on either side gets looked at.
"""

from __future__ import annotations

import logging
import os
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge_pipelines.statements.mt940 import parse_mt940

mt940 = pytest.importorskip("mt940")

SAMPLES = Path(os.environ.get("BRIDGE_MT940_SAMPLES", "/work/shared/samples/mt940"))
SAMPLE_NAMES = sorted(path.name for path in SAMPLES.glob("*") if path.suffix != ".tsv") if SAMPLES.is_dir() else []
FIELDS = ("signed_amount", "value_date", "entry_date", "mark", "funds_code", "transaction_type", "customer_reference",
          "bank_reference", "supplementary_details")

# (sample, field) -> why we differ from mt-940. "file" = the library raises; "count" = it yields a different number
# of statement lines (then the lines are not compared one by one).
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("asn_nl_31_envelopes_iban_in_custref.txt", "file"): (
        "the library raises on an IBAN (18 characters) in the 16x customer-reference slot unless given "
        "mt940.tags.StatementASNB; we keep the IBAN as the customer reference"
    ),
    ("olb_de_garbage_65F_no_terminator.txt", "file"): (
        "the library raises on the garbage ':65F:Dnullnull7414,3'; we report a PARSE_ERROR and read the rest"
    ),
    ("rabobank_nl_decimal_point_65_multi_account.txt", "count"): (
        "the library reads amounts written with a decimal point ('000000000300.00') as '000000000300' followed by "
        "garbage, loses the type code and then mis-assigns or drops lines (10 of 39); we read the exact amounts"
    ),
    ("penta_de_no_type_code_nonref.txt", "transaction_type"): (
        "':61:2009020902D20,00NONREF' has no type code: the library reads type 'NONR' and reference 'EF'"
    ),
    ("penta_de_no_type_code_nonref.txt", "customer_reference"): "same line: we read customer reference 'NONREF'",
    ("commerzbank_de_sepa_dd_return_ocmt_chgs.txt", "transaction_type"): (
        "a space between amount and type code ('D12,35 NRTIKREF+'): the library finds no type code and takes "
        "' NRTIKREF+' as the customer reference; we read type NRTI, reference 'KREF+'"
    ),
    ("commerzbank_de_sepa_dd_return_ocmt_chgs.txt", "customer_reference"): "same line as the type code",
    ("deutschebank_de_colon_line_in_86.txt", "transaction_type"): (
        "a space between amount and type code ('C50,00 NTRFNONREF'): the library has no type and reference "
        "' NTRFNONREF'; we read type NTRF, reference 'NONREF'"
    ),
    ("deutschebank_de_colon_line_in_86.txt", "customer_reference"): "same line as the type code",
    ("invalid_date_feb30.sta", "value_date"): (
        "value date 160230 (30 Feb) does not exist: the library silently makes it 2016-02-29; we give no date "
        "and a PARSE_ERROR"
    ),
    ("unknown_tag_12.sta", "value_date"): "the same invalid value date 160230 as invalid_date_feb30.sta",
}


def _quiet_library_parse(data: bytes) -> list[Any]:
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            statements = mt940.parse_statements(data, options=mt940.Options.all())
    finally:
        logging.disable(logging.NOTSET)
    return [t for s in statements for t in s.transactions if t.data.get("amount") is not None]


def _library_line(transaction: Any) -> dict[str, Any]:
    data = transaction.data

    def text(key: str) -> str | None:
        value = (data.get(key) or "").strip()
        return value or None

    def as_date(key: str) -> str | None:
        value = data.get(key)
        return value.isoformat()[:10] if value is not None else None

    customer = text("customer_reference")
    return {
        "signed_amount": Decimal(data["amount"].amount),
        "value_date": as_date("date"),
        "entry_date": as_date("entry_date"),
        "mark": text("status").upper() if text("status") else None,  # it keeps a lowercase "d" as written
        "funds_code": text("funds_code"),
        "transaction_type": text("id"),
        # It appends the :86: KREF+ value to the :61: reference on a new line: compare the :61: part.
        "customer_reference": customer.split("\n", 1)[0].strip() or None if customer else None,
        "bank_reference": text("bank_reference"),
        "supplementary_details": text("extra_details"),
    }


def _our_line(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{name: row[name] for name in FIELDS},
        "value_date": row["value_date"].isoformat() if row["value_date"] else None,
        "entry_date": row["entry_date"].isoformat() if row["entry_date"] else None,
    }


def disagreements(name: str) -> dict[tuple[str, str], str]:
    data = (SAMPLES / name).read_bytes()
    ours = [_our_line(row) for row in parse_mt940(data).lines.iter_rows(named=True)]
    try:
        theirs = [_library_line(transaction) for transaction in _quiet_library_parse(data)]
    except Exception as error:  # noqa: BLE001 - a library failure is a disagreement to list
        return {(name, "file"): f"{type(error).__name__}: {str(error)[:120]}"}
    if len(ours) != len(theirs):
        return {(name, "count"): f"ours {len(ours)} lines, mt-940 {len(theirs)}"}
    found: dict[tuple[str, str], str] = {}
    for index, (our_line, their_line) in enumerate(zip(ours, theirs, strict=True)):
        for field in FIELDS:
            if our_line[field] != their_line[field] and (name, field) not in found:
                found[(name, field)] = f"line {index}: ours {our_line[field]!r}, mt-940 {their_line[field]!r}"
    return found


@pytest.mark.skipif(not SAMPLE_NAMES, reason=f"no MT940 samples in {SAMPLES}")
def test_we_agree_with_mt940_except_where_it_is_known_wrong() -> None:
    found: dict[tuple[str, str], str] = {}
    for name in SAMPLE_NAMES:
        found.update(disagreements(name))
    new = {key: found[key] for key in found.keys() - KNOWN_DIFFERENCES.keys()}
    gone = sorted(KNOWN_DIFFERENCES.keys() - found.keys())
    assert not new, f"new disagreements with mt-940 (explain them in KNOWN_DIFFERENCES or fix the parser): {new}"
    assert not gone, f"listed disagreements no longer happen (remove them from KNOWN_DIFFERENCES): {gone}"


@pytest.mark.skipif(not SAMPLE_NAMES, reason=f"no MT940 samples in {SAMPLES}")
def test_mt940_agrees_on_most_lines() -> None:
    """A guard against a comparison that compares nothing: most samples and lines are compared field by field."""
    compared = [name for name in SAMPLE_NAMES if not any(key[0] == name for key in KNOWN_DIFFERENCES)]
    assert len(compared) >= 30
    assert sum(len(_quiet_library_parse((SAMPLES / name).read_bytes())) for name in compared) >= 300


def test_known_library_faults_on_crafted_lines() -> None:
    """The faults PITFALLS.md lists, reproduced on one crafted statement: our reading is right where mt-940's is not."""
    data = (
        ":20:CRAFTED\r\n:25:NL91ABNA0417164300\r\n:28C:1/1\r\n:60F:C200101EUR100,00\r\n"
        ":61:2001010101C50,00 NTRFNONREF\r\n:86:first\r\n"  # a space before the type code
        ":61:2001010101C25,00 NTRFNONREF\r\n:86:second\r\n"
        ":61:2001010101RC10,00NTRFNONREF\r\n:86:reversal of a credit\r\n"
        ":61:2001010101D2.50NTRFMYREF//B4\r\n:86:166?00GUTSCHRIFT?20EREF+E2E-4?21SVWZ+decimal point\r\n"
        ":62F:C200101EUR162,50\r\n-\r\n"
    ).encode()
    ours = parse_mt940(data).lines
    assert ours["signed_amount"].to_list() == [Decimal("50"), Decimal("25"), Decimal("-10"), Decimal("-2.5")]
    assert ours["customer_reference"].to_list() == ["NONREF", "NONREF", "NONREF", "MYREF"]
    assert ours["end_to_end_reference"].to_list() == [None, None, None, "E2E-4"]

    theirs = [_library_line(transaction) for transaction in _quiet_library_parse(data)]
    # Lines whose type code it cannot read are merged into the next line: three lines become one (the RC one);
    # the decimal-point amount 2.50 is truncated to 2 and the rest of the line taken for the reference.
    assert [(line["mark"], line["signed_amount"]) for line in theirs] == [("RC", Decimal("-10")), ("D", Decimal("-2"))]
    assert theirs[1]["customer_reference"] == ".50NTRFMYREF"

    clean = data.replace(b" NTRF", b"NTRF").replace(b"D2.50", b"D2,50")  # no space, no decimal point
    defaults = [t.data for s in mt940.parse_statements(clean) for t in s.transactions]
    # Without Options.all(): RC is signed as money in, and an :86: with EREF+ but no KREF+ wipes the :61: reference.
    assert [t["amount"].amount for t in defaults] == [Decimal(50), Decimal(25), Decimal(10), Decimal("-2.50")]
    assert defaults[3]["customer_reference"] is None
