"""Financial address parsing and formatting (pure, vectorised)."""

from __future__ import annotations

import polars as pl
import pytest

from bridge_pipelines.bank.financial_address import (
    FA_SCHEMA,
    FinancialAddress,
    FinancialAddressError,
    format_financial_address,
    format_financial_addresses,
    parse_financial_address,
    parse_financial_addresses,
    with_parsed_financial_address,
)

CASES = [
    ("account_number:123456.branch_code:BR1.bank_code:EXB.mode:bank",
     {"fa_type": "BANK_ACCOUNT", "bank_account_number": "123456", "bank_code": "EXB", "branch_code": "BR1"}),
    ("mobile_number:+254700000001.mobile_wallet_provider:MPESA.mode:mobile_wallet",
     {"fa_type": "MOBILE_WALLET", "mobile_number": "+254700000001", "wallet_provider": "MPESA"}),
    ("email_address:jane.doe@mail.example.org.email_wallet_provider:PAYPAL.mode:email_wallet",
     {"fa_type": "EMAIL_WALLET", "email_address": "jane.doe@mail.example.org", "wallet_provider": "PAYPAL"}),
    # other key orders, no mode, OpenG2P's informative keys, upper-case mode
    ("bank_code:X.account_number:99", {"fa_type": "BANK_ACCOUNT", "bank_account_number": "99", "bank_code": "X"}),
    ("account_number:1.branch_name:Main St.bank_name:Ex Bank.branch_code:B.bank_code:EX.mode:BANK",
     {"fa_type": "BANK_ACCOUNT", "bank_account_number": "1", "bank_code": "EX", "branch_code": "B"}),
    ("mode:email_wallet.email_address:a.b@c.co", {"fa_type": "EMAIL_WALLET", "email_address": "a.b@c.co"}),
    ("  mobile_number:0712345678  ", {"fa_type": "MOBILE_WALLET", "mobile_number": "0712345678"}),
    (None, {"fa_error": "FA_MISSING"}),
    ("", {"fa_error": "FA_MISSING"}),
    ("12345678", {"fa_error": "FA_UNPARSEABLE"}),
    ("mode:bank", {"fa_error": "FA_INVALID_ACCOUNT_NUMBER"}),  # a bank address without an account number
    ("mode:carrier_pigeon.account_number:1", {"fa_error": "FA_UNKNOWN_MODE"}),
    ("account_number:12 34.mode:bank", {"fa_error": "FA_INVALID_ACCOUNT_NUMBER"}),
    ("mobile_number:abc.mode:mobile_wallet", {"fa_error": "FA_INVALID_MOBILE_NUMBER"}),
    ("email_address:foo.mode:email_wallet", {"fa_error": "FA_INVALID_EMAIL_ADDRESS"}),
]


def _expected(fields: dict[str, str]) -> dict[str, str | None]:
    return {name: fields.get(name) for name in FA_SCHEMA}


def test_parse_keeps_rows_and_order_across_fast_and_general_paths() -> None:
    addresses = [a for a, _ in CASES] * 3  # canonical and non-canonical rows interleaved
    parsed = parse_financial_addresses(pl.Series(addresses, dtype=pl.String))
    assert parsed.schema == pl.Schema(FA_SCHEMA)
    assert parsed.rows(named=True) == [_expected(fields) for _, fields in CASES] * 3


def test_parse_alongside_other_columns() -> None:
    frame = pl.LazyFrame({"id": [3, 1, 2], "financial_address": [CASES[2][0], "junk", CASES[0][0]]})
    parsed = with_parsed_financial_address(frame).collect()
    assert parsed.columns == ["id", "financial_address", *FA_SCHEMA]
    assert parsed["id"].to_list() == [3, 1, 2]
    assert parsed["fa_error"].to_list() == [None, "FA_UNPARSEABLE", None]


@pytest.mark.parametrize("address", [a for a, fields in CASES if "fa_error" not in fields])
def test_format_then_parse_round_trips(address: str) -> None:
    fa = parse_financial_address(address)
    assert parse_financial_address(format_financial_address(fa)) == fa


def test_scalar_errors_and_formatting() -> None:
    with pytest.raises(FinancialAddressError) as bad:
        parse_financial_address("account_number:12 34")
    assert bad.value.code == "FA_INVALID_ACCOUNT_NUMBER"
    fa = FinancialAddress("BANK_ACCOUNT", bank_account_number="42", bank_code="EXB")
    assert format_financial_address(fa) == "account_number:42.bank_code:EXB.mode:bank"
    assert fa.destination_key == "42"
    frame = pl.DataFrame({"fa_type": ["MOBILE_WALLET", "NOPE"], "mobile_number": ["+2547", None]})
    assert format_financial_addresses(frame).to_list() == ["mobile_number:+2547.mode:mobile_wallet", None]
