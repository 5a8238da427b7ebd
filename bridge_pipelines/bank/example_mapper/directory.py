"""The example mapper's "directory": beneficiary id -> financial address, computed, not stored (deterministic).

Two CRC-32 (zlib) values of the UTF-8 text: h1 = crc32("<seed>:<id>"), h2 = crc32("<seed>/<id>").
- Ids starting with UNRESOLVABLE- (or blank) never resolve; otherwise an id fails iff h1 < failure_rate * 2**32.
- The type of address: h2 % 20 in 0-11 a bank account (60 %), 12-16 a mobile wallet (25 %), 17-19 an email wallet.
- The digits come from n = h1 * 2**32 + h2: account number n mod 10**10 (10 digits), bank EXBANK0<1 + (h2 // 20) % 4>,
  branch BR<(h2 // 80) % 1000>, mobile +2547<n mod 10**8>, email b<n mod 10**12>@wallet.example.org.
Vectorised (`resolve_ids`): two C hashes per id in Python, everything else in Polars.
"""

from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

import polars as pl

from bridge_pipelines.bank.financial_address import BANK_ACCOUNT, EMAIL_WALLET, MOBILE_WALLET

UNRESOLVABLE_PREFIX = "UNRESOLVABLE-"
ID_NOT_FOUND = "rjct.id.invalid"  # G2P Connect: the id is not known to the mapper
REFERENCE_ID_INVALID = "rjct.reference_id.invalid"
REFERENCE_ID_DUPLICATE = "rjct.reference_id.duplicate"

MOBILE_PROVIDERS = ("MPESA", "MTNMOMO", "AIRTELMONEY")
EMAIL_PROVIDER = "EXAMPLEPAY"


def resolve_ids(beneficiary_ids: Sequence[str | None], seed: int, failure_rate: float) -> pl.DataFrame:
    """One row per id: fa (null when unresolved), fa_type, reason (a G2P Connect status_reason_code or null)."""
    prefix_1, prefix_2 = f"{seed}:", f"{seed}/"
    texts = [i if isinstance(i, str) else "" for i in beneficiary_ids]
    frame = pl.DataFrame(
        {
            "id": texts,
            "h1": [crc32((prefix_1 + i).encode()) for i in texts],
            "h2": [crc32((prefix_2 + i).encode()) for i in texts],
        },
        schema={"id": pl.String, "h1": pl.UInt64, "h2": pl.UInt64},
    )
    threshold = min(2**32, max(0, round(failure_rate * 2**32)))
    n = pl.col("h1") * (2**32) + pl.col("h2")
    bucket = pl.col("h2") % 20
    fails = (pl.col("id").str.strip_chars() == "") | pl.col("id").str.starts_with(UNRESOLVABLE_PREFIX) | (pl.col("h1") < threshold)
    fa_type = pl.when(bucket < 12).then(pl.lit(BANK_ACCOUNT)).when(bucket < 17).then(pl.lit(MOBILE_WALLET)).otherwise(pl.lit(EMAIL_WALLET))
    digits = lambda value, width: value.cast(pl.String).str.zfill(width)  # noqa: E731
    bank = pl.concat_str(
        [
            pl.lit("account_number:"), digits(n % 10**10, 10),
            pl.lit(".branch_code:BR"), digits((pl.col("h2") // 80) % 1000, 3),
            pl.lit(".bank_code:EXBANK0"), ((pl.col("h2") // 20) % 4 + 1).cast(pl.String),
            pl.lit(".mode:bank"),
        ]
    )
    provider = pl.lit(pl.Series(MOBILE_PROVIDERS)).get(((pl.col("h2") // 20) % len(MOBILE_PROVIDERS)).cast(pl.Int64))
    mobile = pl.concat_str(
        [pl.lit("mobile_number:+2547"), digits(n % 10**8, 8), pl.lit(".mobile_wallet_provider:"), provider,
         pl.lit(".mode:mobile_wallet")]
    )
    email = pl.concat_str(
        [pl.lit("email_address:b"), digits(n % 10**12, 12), pl.lit("@wallet.example.org.email_wallet_provider:"),
         pl.lit(EMAIL_PROVIDER), pl.lit(".mode:email_wallet")]
    )
    return frame.select(
        pl.when(~fails).then(pl.when(bucket < 12).then(bank).when(bucket < 17).then(mobile).otherwise(email)).alias("fa"),
        pl.when(~fails).then(fa_type).alias("fa_type"),
        pl.when(fails).then(pl.lit(ID_NOT_FOUND)).alias("reason"),
    )


def resolve_id(beneficiary_id: str | None, seed: int, failure_rate: float) -> tuple[str | None, str | None]:
    """(financial address, None) or (None, G2P Connect reason code)."""
    row = resolve_ids([beneficiary_id], seed, failure_rate).row(0)
    return row[0], row[2]


def address_type_for(beneficiary_id: str, seed: int) -> str:
    return resolve_ids([beneficiary_id], seed, 0.0)["fa_type"][0]
