"""The bridge's ID mapper client: beneficiary ids -> financial addresses, G2P Connect-style resolve, in batches.

POSTs {mapper_url}/resolve with a bearer token (the example mapper also answers at /mapper/resolve). Ids are
de-duplicated before sending; every input id gets a row in the answer (duplicates included, same order).
Failures raise MapperUnavailable (retryable) or MapperRequestRejected, which share their base classes with the
bank's errors (ServiceUnavailable, ServiceRequestRejected).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
import polars as pl

from bridge_pipelines.bank.example_bank_client import JsonHttp, mapper_base_url
from bridge_pipelines.bank.financial_address import FA_FIELDS, with_parsed_financial_address
from bridge_pipelines.bank.protocol import MapperRequestRejected, MapperUnavailable
from bridge_pipelines.config import Settings

RESOLVED = "RESOLVED"
RESOLUTION_FAILED = "RESOLUTION_FAILED"
NO_ANSWER = "MAPPER_NO_ANSWER"  # the mapper's answer lacked this id

RESOLVE_SCHEMA: dict[str, pl.DataType] = {
    "beneficiary_id": pl.String(),
    "status": pl.String(),  # RESOLVED | RESOLUTION_FAILED
    "reason_code": pl.String(),  # the mapper's status_reason_code, an FA_* parse error, or MAPPER_NO_ANSWER
    "financial_address": pl.String(),
    "fa_type": pl.String(),
    **{f: pl.String() for f in FA_FIELDS},
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IdMapperClient:
    def __init__(self, base_url: str, token: str, *, batch_size: int = 5_000, timeout: float = 30.0,
                 sender_id: str = "g2p-bridge") -> None:
        self._http = JsonHttp("the ID mapper", base_url, token, timeout, MapperUnavailable, MapperRequestRejected)
        self.batch_size = max(1, batch_size)
        self.sender_id = sender_id

    @classmethod
    def from_settings(cls, settings: Settings) -> IdMapperClient:
        return cls(mapper_base_url(settings), settings.mapper_token, batch_size=settings.mapper_batch_size,
                   timeout=settings.bank_timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IdMapperClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, ids: list[str]) -> bytes:
        """The G2P Connect envelope; the request items are written by Polars (reference_id = position)."""
        timestamp = _now()
        head = json.dumps(
            {
                "signature": "",
                "header": {
                    "version": "1.0.0",
                    "message_id": str(uuid.uuid4()),
                    "message_ts": timestamp,
                    "action": "resolve",
                    "sender_id": self.sender_id,
                    "total_count": len(ids),
                    "is_msg_encrypted": False,
                },
                "message": {"transaction_id": str(uuid.uuid4())},
            },
            separators=(",", ":"),
        )
        items = pl.DataFrame({"id": ids}, schema={"id": pl.String}).select(
            pl.int_range(pl.len()).cast(pl.String).alias("reference_id"),
            pl.lit(timestamp).alias("timestamp"),
            "id",
            pl.lit("details").alias("scope"),
        )
        return f'{head[:-2]},"resolve_request":{items.write_json()}}}}}'.encode()

    def _resolve_chunk(self, ids: list[str]) -> pl.DataFrame:
        answer = self._http.call("POST", "/resolve", body=self._request(ids))
        try:
            items = answer["message"]["resolve_response"]
            answers = pl.DataFrame(
                [item for item in items if isinstance(item, dict)],
                schema={"reference_id": pl.String, "fa": pl.String, "status": pl.String, "status_reason_code": pl.String},
                strict=False,
            )
        except (KeyError, TypeError, pl.exceptions.PolarsError):
            raise MapperUnavailable("BAD_RESPONSE", "the ID mapper's answer has no readable message.resolve_response") from None
        asked = pl.DataFrame({"beneficiary_id": ids}, schema={"beneficiary_id": pl.String}).with_columns(
            pl.int_range(pl.len()).cast(pl.String).alias("reference_id")
        )
        joined = asked.join(answers.unique("reference_id", keep="first"), on="reference_id", how="left", maintain_order="left")
        succeeded = (pl.col("status") == "succ") & pl.col("fa").is_not_null() & (pl.col("fa") != "")
        return joined.select(
            "beneficiary_id",
            pl.when(succeeded).then(pl.lit(RESOLVED)).otherwise(pl.lit(RESOLUTION_FAILED)).alias("status"),
            pl.when(succeeded)
            .then(None)
            .when(pl.col("status").is_null())
            .then(pl.lit(NO_ANSWER))
            .otherwise(pl.col("status_reason_code").fill_null("rjct.other.error"))
            .alias("reason_code"),
            pl.when(succeeded).then(pl.col("fa")).alias("financial_address"),
        )

    def resolve(self, beneficiary_ids: list[str]) -> pl.DataFrame:
        """One row per input id (RESOLVE_SCHEMA). A resolved address that cannot be parsed is RESOLUTION_FAILED with
        its FA_* code."""
        unique = list(dict.fromkeys(beneficiary_ids))
        schema = {k: RESOLVE_SCHEMA[k] for k in ("beneficiary_id", "status", "reason_code", "financial_address")}
        parts = [self._resolve_chunk(unique[start:start + self.batch_size]).cast(schema)  # type: ignore[arg-type]
                 for start in range(0, len(unique), self.batch_size)]
        answers = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
        parsed = with_parsed_financial_address(answers.lazy(), "financial_address").collect()
        bad_address = (pl.col("status") == RESOLVED) & pl.col("fa_error").is_not_null()
        parsed = parsed.with_columns(
            pl.when(bad_address).then(pl.lit(RESOLUTION_FAILED)).otherwise(pl.col("status")).alias("status"),
            pl.when(bad_address).then(pl.col("fa_error")).otherwise(pl.col("reason_code")).alias("reason_code"),
        ).select(list(RESOLVE_SCHEMA))
        if len(unique) == len(beneficiary_ids):
            return parsed
        order = pl.DataFrame({"beneficiary_id": beneficiary_ids}, schema={"beneficiary_id": pl.String})
        return order.join(parsed, on="beneficiary_id", how="left", maintain_order="left")
