"""Financial addresses (FA): where a beneficiary is paid. Parse and format, scalar and vectorised (Polars).

Format (key:value pairs joined by '.', keys in any order; the same shape as the financial addresses that
OpenG2P's G2P Bridge deconstructs with its regex strategies, so addresses produced by an OpenG2P ID mapper
are understood):

    bank account   account_number:<acct>.branch_code:<branch>.bank_code:<bank>.mode:bank
    mobile wallet  mobile_number:<msisdn>.mobile_wallet_provider:<provider>.mode:mobile_wallet
    email wallet   email_address:<email>.email_wallet_provider:<provider>.mode:email_wallet

- `mode` may be omitted: the type is then inferred from the key present (account_number, mobile_number,
  email_address). OpenG2P's informative keys `branch_name`, `bank_name` and `account_holder_name` are accepted
  and ignored by the parser.
- Values run to the next `.<known key>:` or the end, so dots inside values (email addresses) are fine.
- Validity: account numbers [A-Za-z0-9-] (1..34, IBAN length), mobile numbers an optional '+' and 6..15 digits,
  email addresses one '@' with a dot in the domain. Bank and branch codes are optional.
- For programs without ID mapper resolution the beneficiary_id itself is the financial address.

Parse errors (column `fa_error`, null when the address is valid): FA_MISSING (null or blank), FA_UNPARSEABLE (no
known key), FA_UNKNOWN_MODE, FA_INVALID_ACCOUNT_NUMBER, FA_INVALID_MOBILE_NUMBER, FA_INVALID_EMAIL_ADDRESS (the
type's identifying field is missing or malformed).
When `fa_error` is set, `fa_type` and the fields are null.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

BANK_ACCOUNT = "BANK_ACCOUNT"
MOBILE_WALLET = "MOBILE_WALLET"
EMAIL_WALLET = "EMAIL_WALLET"
FA_TYPES = (BANK_ACCOUNT, MOBILE_WALLET, EMAIL_WALLET)

MODE_OF_TYPE = {BANK_ACCOUNT: "bank", MOBILE_WALLET: "mobile_wallet", EMAIL_WALLET: "email_wallet"}
TYPE_OF_MODE = {mode: fa_type for fa_type, mode in MODE_OF_TYPE.items()}

# The parsed fields, in this order, all strings (null when absent).
FA_FIELDS = ("bank_account_number", "bank_code", "branch_code", "mobile_number", "email_address", "wallet_provider")
FA_SCHEMA: dict[str, pl.DataType] = {"fa_type": pl.String(), **{f: pl.String() for f in FA_FIELDS}, "fa_error": pl.String()}

_KEYS = (
    "account_number",
    "branch_code",
    "branch_name",
    "bank_code",
    "bank_name",
    "account_holder_name",
    "mobile_number",
    "mobile_wallet_provider",
    "email_address",
    "email_wallet_provider",
    "mode",
)
_KEY_ALTERNATION = "|".join(_KEYS)

_ACCOUNT_NUMBER = r"^[A-Za-z0-9-]{1,34}$"
_MOBILE_NUMBER = r"^\+?[0-9]{6,15}$"
_EMAIL_ADDRESS = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _value(address: pl.Expr, key: str) -> pl.Expr:
    # Rust regex has no look-ahead: capture lazily up to the next known key (or the end).
    pattern = rf"(?:^|\.){key}:(.*?)(?:\.(?:{_KEY_ALTERNATION}):|$)"
    value = address.str.extract(pattern, 1).str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value)


# The canonical forms (what `format_financial_address` writes, keys in this order): one anchored regex parses
# them several times faster than the general key-by-key extraction, which only runs on the rows it misses.
_CANONICAL = (
    r"^(?:account_number:([A-Za-z0-9-]{1,34})(?:\.branch_code:([^.:]+))?(?:\.bank_code:([^.:]+))?\.mode:bank"
    r"|mobile_number:(\+?[0-9]{6,15})(?:\.mobile_wallet_provider:([^.:]+))?\.mode:mobile_wallet"
    r"|email_address:([^@\s.:]+(?:\.[^@\s.:]+)*@[^@\s.:]+(?:\.[^@\s.:]+)+)(?:\.email_wallet_provider:([^.:]+))?"
    r"\.mode:email_wallet)$"
)
_CANONICAL_GROUPS = ("bank_account_number", "branch_code", "bank_code", "mobile_number", "mp", "email_address", "ep")


def with_parsed_financial_address(frame: pl.LazyFrame, column: str = "financial_address") -> pl.LazyFrame:
    """`frame` plus the FA_SCHEMA columns parsed from `column` (same rows, same order). Vectorised."""
    frame = frame.with_row_index("__fa_row").with_columns(
        pl.col(column).cast(pl.String).str.strip_chars().str.extract_groups(_CANONICAL).alias("__fa_c")
    )
    matched = pl.col("__fa_c").struct.field("1").is_not_null() | pl.col("__fa_c").struct.field("4").is_not_null() | (
        pl.col("__fa_c").struct.field("6").is_not_null()
    )
    group = {name: pl.col("__fa_c").struct.field(str(i + 1)) for i, name in enumerate(_CANONICAL_GROUPS)}
    fast = frame.filter(matched).with_columns(
        pl.when(group["bank_account_number"].is_not_null())
        .then(pl.lit(BANK_ACCOUNT))
        .when(group["mobile_number"].is_not_null())
        .then(pl.lit(MOBILE_WALLET))
        .otherwise(pl.lit(EMAIL_WALLET))
        .alias("fa_type"),
        group["bank_account_number"].alias("bank_account_number"),
        group["bank_code"].alias("bank_code"),
        group["branch_code"].alias("branch_code"),
        group["mobile_number"].alias("mobile_number"),
        group["email_address"].alias("email_address"),
        pl.coalesce(group["mp"], group["ep"]).alias("wallet_provider"),
        pl.lit(None, dtype=pl.String).alias("fa_error"),
    )
    slow = _parse_general(frame.filter(~matched), column)
    kept = [c for c in frame.collect_schema().names() if c not in FA_SCHEMA and c != "__fa_c"]
    columns = [*kept, *FA_SCHEMA]
    parsed = pl.concat([fast.select(columns).cast(FA_SCHEMA), slow.select(columns).cast(FA_SCHEMA)])  # type: ignore[arg-type]
    return parsed.sort("__fa_row").drop("__fa_row")


def _parse_general(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """Key-by-key extraction, in stages so that every regex runs once per row (one select with the whole
    expression tree would repeat the shared sub-expressions)."""
    address = pl.col(column).cast(pl.String).str.strip_chars()
    raw = {
        key: f"__fa_{key}"
        for key in ("account_number", "bank_code", "branch_code", "mobile_number", "email_address",
                    "mobile_wallet_provider", "email_wallet_provider", "mode")
    }
    frame = frame.with_columns(
        address.alias("__fa_address"),
        *(_value(address, key).alias(name) for key, name in raw.items()),
        address.str.contains(rf"(?:^|\.)(?:{_KEY_ALTERNATION}):").alias("__fa_has_key"),
    )
    account, mobile, email = pl.col(raw["account_number"]), pl.col(raw["mobile_number"]), pl.col(raw["email_address"])
    mode = pl.col(raw["mode"]).str.to_lowercase()
    frame = frame.with_columns(
        pl.when(mode.is_not_null())
        .then(mode.replace_strict(TYPE_OF_MODE, default=None, return_dtype=pl.String))
        .when(account.is_not_null())
        .then(pl.lit(BANK_ACCOUNT))
        .when(mobile.is_not_null())
        .then(pl.lit(MOBILE_WALLET))
        .when(email.is_not_null())
        .then(pl.lit(EMAIL_WALLET))
        .alias("__fa_type")
    )
    fa_type, address = pl.col("__fa_type"), pl.col("__fa_address")
    frame = frame.with_columns(
        pl.when(address.is_null() | (address == ""))
        .then(pl.lit("FA_MISSING"))
        .when(~pl.col("__fa_has_key"))
        .then(pl.lit("FA_UNPARSEABLE"))
        .when(mode.is_not_null() & fa_type.is_null())
        .then(pl.lit("FA_UNKNOWN_MODE"))
        .when(fa_type.is_null())
        .then(pl.lit("FA_UNPARSEABLE"))
        .when((fa_type == BANK_ACCOUNT) & ~account.fill_null("").str.contains(_ACCOUNT_NUMBER))
        .then(pl.lit("FA_INVALID_ACCOUNT_NUMBER"))
        .when((fa_type == MOBILE_WALLET) & ~mobile.fill_null("").str.contains(_MOBILE_NUMBER))
        .then(pl.lit("FA_INVALID_MOBILE_NUMBER"))
        .when((fa_type == EMAIL_WALLET) & ~email.fill_null("").str.contains(_EMAIL_ADDRESS))
        .then(pl.lit("FA_INVALID_EMAIL_ADDRESS"))
        .alias("fa_error")
    )
    ok = pl.col("fa_error").is_null()
    is_bank, is_mobile, is_email = fa_type == BANK_ACCOUNT, fa_type == MOBILE_WALLET, fa_type == EMAIL_WALLET
    frame = frame.with_columns(
        pl.when(ok).then(fa_type).alias("fa_type"),
        pl.when(ok & is_bank).then(account).alias("bank_account_number"),
        pl.when(ok & is_bank).then(pl.col(raw["bank_code"])).alias("bank_code"),
        pl.when(ok & is_bank).then(pl.col(raw["branch_code"])).alias("branch_code"),
        pl.when(ok & is_mobile).then(mobile).alias("mobile_number"),
        pl.when(ok & is_email).then(email).alias("email_address"),
        pl.when(ok & is_mobile)
        .then(pl.col(raw["mobile_wallet_provider"]))
        .when(ok & is_email)
        .then(pl.col(raw["email_wallet_provider"]))
        .alias("wallet_provider"),
    )
    return frame


def parse_financial_addresses(addresses: pl.Series) -> pl.DataFrame:
    """One row per input (same order): fa_type, the FA fields and fa_error. Vectorised."""
    frame = pl.LazyFrame({"financial_address": addresses.cast(pl.String)})
    return with_parsed_financial_address(frame).drop("financial_address").collect()


def format_financial_address_expr(
    fa_type: pl.Expr,
    bank_account_number: pl.Expr,
    bank_code: pl.Expr,
    branch_code: pl.Expr,
    mobile_number: pl.Expr,
    email_address: pl.Expr,
    wallet_provider: pl.Expr,
) -> pl.Expr:
    """The FA string from its fields (null for an unknown type); absent optional parts are left out."""

    def part(key: str, value: pl.Expr) -> pl.Expr:
        return pl.when(value.is_not_null() & (value != "")).then(pl.lit(f"{key}:") + value + pl.lit(".")).otherwise(pl.lit(""))

    bank = pl.concat_str(
        [part("account_number", bank_account_number), part("branch_code", branch_code), part("bank_code", bank_code), pl.lit("mode:bank")]
    )
    mobile = pl.concat_str(
        [part("mobile_number", mobile_number), part("mobile_wallet_provider", wallet_provider), pl.lit("mode:mobile_wallet")]
    )
    email = pl.concat_str(
        [part("email_address", email_address), part("email_wallet_provider", wallet_provider), pl.lit("mode:email_wallet")]
    )
    return pl.when(fa_type == BANK_ACCOUNT).then(bank).when(fa_type == MOBILE_WALLET).then(mobile).when(fa_type == EMAIL_WALLET).then(email)


def format_financial_addresses(frame: pl.DataFrame) -> pl.Series:
    """Vectorised `format_financial_address` over a frame with fa_type and the FA_FIELDS columns."""
    missing = [c for c in FA_FIELDS if c not in frame.columns]
    frame = frame.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in missing])
    return frame.select(format_financial_address_expr(*(pl.col(c) for c in ("fa_type", *FA_FIELDS))).alias("financial_address")).to_series()


@dataclass(frozen=True)
class FinancialAddress:
    fa_type: str
    bank_account_number: str | None = None
    bank_code: str | None = None
    branch_code: str | None = None
    mobile_number: str | None = None
    email_address: str | None = None
    wallet_provider: str | None = None

    @property
    def destination_key(self) -> str | None:
        """What identifies the destination account (the example bank's failure simulation hashes it)."""
        return destination_key(self.fa_type, self.bank_account_number, self.mobile_number, self.email_address)


class FinancialAddressError(ValueError):
    def __init__(self, code: str, address: str | None) -> None:
        super().__init__(f"{code}: {address!r}")
        self.code = code


def parse_financial_address(address: str | None) -> FinancialAddress:
    """Parse one address; raises FinancialAddressError(code) when it is not valid."""
    row = parse_financial_addresses(pl.Series([address], dtype=pl.String)).row(0, named=True)
    if row["fa_error"] is not None:
        raise FinancialAddressError(row["fa_error"], address)
    return FinancialAddress(**{k: row[k] for k in ("fa_type", *FA_FIELDS)})


def format_financial_address(fa: FinancialAddress) -> str:
    values = {"fa_type": [fa.fa_type], **{f: [getattr(fa, f)] for f in FA_FIELDS}}
    result = format_financial_addresses(pl.DataFrame(values, schema={k: pl.String for k in values}))[0]
    if result is None:
        raise FinancialAddressError("FA_UNKNOWN_MODE", fa.fa_type)
    return result


def destination_key(
    fa_type: str | None, bank_account_number: str | None, mobile_number: str | None, email_address: str | None
) -> str | None:
    if fa_type == BANK_ACCOUNT:
        return bank_account_number
    if fa_type == MOBILE_WALLET:
        return mobile_number
    if fa_type == EMAIL_WALLET:
        return email_address
    return None
