"""Reconciliation as a pure function over Polars frames: statement lines x shipped disbursements x earlier results.

Every statement line ends in exactly one of: a debit that reconciles a disbursement (or a whole batch booking), a
reversal/return that reverses one, an error-recon line with a reason, or an unrelated line (not ours). The result
is order-independent and idempotent: it is merged with what earlier statements established (remittance and reversal
are recorded once each; the final state is REVERSED if a reversal was seen, else RECONCILED), so statements arriving
twice or out of order give the same final state.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# The references the bridge issues (bridge.disbursement.bank_reference and payment batch ids). Matching free text
# against these exact shapes is safe: nothing else on a statement looks like them.
BANK_REFERENCE_PATTERN = r"G[0-9A-F]{15}"
BATCH_REFERENCE_PATTERN = r"PB[0-9A-F]{14}"

REMITTANCE = "REMITTANCE"
REVERSAL = "REVERSAL"
BATCH_REMITTANCE = "BATCH_REMITTANCE"

# Columns of the statement-line frame given to `reconcile` (LINE_SCHEMA plus where each line sits).
LINE_KEY = ("statement_id", "page", "entry_sequence")

DISBURSEMENT_SCHEMA = {
    "disbursement_id": pl.String(), "disbursement_envelope_id": pl.String(), "bank_reference": pl.String(),
    "shipment_batch_id": pl.String(), "disbursement_amount": pl.Decimal(38, 6), "currency": pl.String(),
    "disbursement_status": pl.String(),
}
EXISTING_RECON_SCHEMA = {
    "disbursement_id": pl.String(), "remittance_statement_id": pl.String(), "remittance_page": pl.Int32(),
    "remittance_entry_sequence": pl.Int32(), "reversal_found": pl.Boolean(), "reversal_statement_id": pl.String(),
    "reversal_page": pl.Int32(), "reversal_entry_sequence": pl.Int32(),
}

# The stored states of a disbursement the bank was paid for. A reconciled one stays SHIPPED: its remittance is
# recorded in bridge.disbursement_recon, and that makes it RECONCILED (migration 0020).
SHIPPED_STATES = ("SHIPPED", "REVERSED")
# The stored states in which a disbursement always has its reconciliation row (a SHIPPED one may have one too: then
# it is reconciled). The write-back records the reversal and moves the state in one transaction.
SETTLED_STATES = ("REVERSED",)


@dataclass
class ReconciliationResult:
    matches: pl.DataFrame  # one row per (disbursement, kind): the line that remitted or reversed it
    errors: pl.DataFrame  # error-recon lines: line key, error_reason, error_detail, disbursement_id, envelope
    unrelated: pl.DataFrame  # lines that are not ours
    line_outcomes: pl.DataFrame  # every line key with its outcome, for counts and checks

    def counts(self) -> dict[str, int]:
        return dict(self.line_outcomes.group_by("outcome").len().iter_rows())


def extract_references(lines: pl.DataFrame) -> pl.DataFrame:
    """Add `our_reference` (a disbursement bank reference) and `our_batch` (a payment batch id) found on each line:
    the :61: customer reference first, then the end-to-end reference, then anywhere in the :86: text."""
    customer = pl.col("customer_reference").str.strip_chars().str.to_uppercase()
    e2e = pl.col("end_to_end_reference").str.strip_chars().str.to_uppercase()
    info = pl.col("information").str.to_uppercase().str.replace_all(r"\s+", "")
    anchored = f"^{BANK_REFERENCE_PATTERN}$"
    our_reference = (pl.when(customer.str.contains(anchored)).then(customer)
                     .when(e2e.str.contains(anchored)).then(e2e)
                     .otherwise(info.str.extract(f"({BANK_REFERENCE_PATTERN})", 1)))
    batch_anchored = f"^{BATCH_REFERENCE_PATTERN}$"
    batch_ref = pl.col("batch_reference").str.strip_chars().str.to_uppercase()
    our_batch = (pl.when(batch_ref.str.contains(batch_anchored)).then(batch_ref)
                 .when(customer.str.contains(batch_anchored)).then(customer)
                 .otherwise(info.str.extract(f"({BATCH_REFERENCE_PATTERN})", 1)))
    return lines.with_columns(our_reference.alias("our_reference"), our_batch.alias("our_batch"))


def classify_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """kind: REMITTANCE (a debit naming one payment), BATCH_REMITTANCE (a debit naming a batch), REVERSAL (money
    back naming one payment: RD, or a C that returns it), or null (not ours)."""
    is_debit = pl.col("mark") == "D"
    money_back = (pl.col("mark") == "RD") | ((pl.col("mark") == "C") & pl.col("our_reference").is_not_null())
    kind = (pl.when(is_debit & pl.col("our_reference").is_not_null()).then(pl.lit(REMITTANCE))
            .when(is_debit & pl.col("our_batch").is_not_null()).then(pl.lit(BATCH_REMITTANCE))
            .when(money_back & pl.col("our_reference").is_not_null()).then(pl.lit(REVERSAL))
            .otherwise(pl.lit(None, pl.String)))
    return lines.with_columns(kind.alias("kind"))


def reconcile(lines: pl.DataFrame, disbursements: pl.DataFrame, existing: pl.DataFrame) -> ReconciliationResult:
    """`lines`: statement lines (LINE_SCHEMA + statement_id); `disbursements`: DISBURSEMENT_SCHEMA rows for every
    reference and batch named on the lines; `existing`: EXISTING_RECON_SCHEMA for those disbursements."""
    if "our_reference" not in lines.columns:  # the caller may have extracted them already (to load candidates)
        lines = extract_references(lines)
    lines = classify_lines(lines)
    key = list(LINE_KEY)
    ours = lines.filter(pl.col("kind").is_not_null())
    unrelated = lines.filter(pl.col("kind").is_null())

    disbursements = disbursements.rename({"currency": "disbursement_currency"})
    single = ours.filter(pl.col("kind") != BATCH_REMITTANCE).join(
        disbursements, left_on="our_reference", right_on="bank_reference", how="left", coalesce=False)
    batch_lines = ours.filter(pl.col("kind") == BATCH_REMITTANCE)
    batch_matches, batch_errors = _expand_batches(batch_lines, disbursements)

    candidates = pl.concat([single, batch_matches], how="diagonal_relaxed")
    error = (
        pl.when(pl.col("disbursement_id").is_null()).then(pl.lit("INVALID_RECONCILIATION_ID"))
        .when(pl.col("disbursement_currency").is_not_null()
              & (pl.col("currency") != pl.col("disbursement_currency")))
        .then(pl.lit("CURRENCY_MISMATCH"))
        .when((pl.col("kind") != BATCH_REMITTANCE) & (pl.col("amount") != pl.col("disbursement_amount")))
        .then(pl.lit("AMOUNT_MISMATCH"))
        .when((pl.col("kind") == REVERSAL) & ~pl.col("disbursement_status").is_in(SHIPPED_STATES))
        .then(pl.lit("INVALID_REVERSAL"))
        .when((pl.col("kind") != REVERSAL) & ~pl.col("disbursement_status").is_in(SHIPPED_STATES))
        .then(pl.lit("INVALID_RECONCILIATION_ID"))
        .otherwise(pl.lit(None, pl.String)))
    candidates = candidates.with_columns(error.alias("error_reason"))

    valid = candidates.filter(pl.col("error_reason").is_null())
    # Duplicates: a disbursement remitted (or reversed) by another line earlier, or twice in this input.
    kind_group = pl.when(pl.col("kind") == REVERSAL).then(pl.lit(REVERSAL)).otherwise(pl.lit(REMITTANCE))
    valid = valid.with_columns(kind_group.alias("match_kind")).join(existing, on="disbursement_id", how="left")
    seen_line_matches = (
        pl.when(pl.col("match_kind") == REMITTANCE)
        .then(pl.col("remittance_statement_id").is_not_null()
              & ~((pl.col("remittance_statement_id") == pl.col("statement_id"))
                  & (pl.col("remittance_page") == pl.col("page"))
                  & (pl.col("remittance_entry_sequence") == pl.col("entry_sequence"))))
        .otherwise(pl.col("reversal_statement_id").is_not_null()
                   & ~((pl.col("reversal_statement_id") == pl.col("statement_id"))
                       & (pl.col("reversal_page") == pl.col("page"))
                       & (pl.col("reversal_entry_sequence") == pl.col("entry_sequence")))))
    valid = valid.sort(key).with_columns(
        (~pl.struct("disbursement_id", "match_kind").is_first_distinct()).alias("_later_in_input"),
        seen_line_matches.fill_null(False).alias("_seen_before"))
    duplicate = pl.col("_later_in_input") | pl.col("_seen_before")
    matches = valid.filter(~duplicate)
    duplicates = valid.filter(duplicate).with_columns(pl.lit("DUPLICATE_DISBURSEMENT").alias("error_reason"))

    # A batch booking is one line for many disbursements: it is in error if any member is.
    errors = pl.concat([
        candidates.filter(pl.col("error_reason").is_not_null()),
        duplicates,
        batch_errors,
    ], how="diagonal_relaxed")
    errors = _error_detail(errors).unique(subset=key, keep="first", maintain_order=True)
    matched_keys = matches.select(key).unique()
    errored_keys = errors.select(key)
    line_outcomes = pl.concat([
        matched_keys.join(errored_keys, on=key, how="anti").with_columns(pl.lit("RECONCILED").alias("outcome")),
        errored_keys.with_columns(pl.lit("ERROR").alias("outcome")),
        unrelated.select(key).with_columns(pl.lit("UNRELATED").alias("outcome")),
    ])
    return ReconciliationResult(matches=matches, errors=errors, unrelated=unrelated, line_outcomes=line_outcomes)


def _expand_batches(batch_lines: pl.DataFrame, disbursements: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A batch booking reconciles every shipped member of the batch when its count and total agree."""
    if batch_lines.height == 0:
        return batch_lines.clear(), batch_lines.clear()
    members = disbursements.filter(pl.col("shipment_batch_id").is_not_null()
                                   & pl.col("disbursement_status").is_in(SHIPPED_STATES))
    totals = members.group_by("shipment_batch_id").agg(
        pl.len().alias("members"), pl.col("disbursement_amount").sum().alias("members_total"))
    checked = batch_lines.join(totals, left_on="our_batch", right_on="shipment_batch_id", how="left")
    reason = (pl.when(pl.col("members").is_null()).then(pl.lit("INVALID_RECONCILIATION_ID"))
              .when(pl.col("batch_count").is_not_null() & (pl.col("batch_count") != pl.col("members")))
              .then(pl.lit("AMOUNT_MISMATCH"))
              .when(pl.col("amount") != pl.col("members_total")).then(pl.lit("AMOUNT_MISMATCH"))
              .otherwise(pl.lit(None, pl.String)))
    checked = checked.with_columns(reason.alias("error_reason"))
    errors = checked.filter(pl.col("error_reason").is_not_null()).with_columns(
        pl.format("batch {}: line says {} payments for {}, the bridge shipped {} for {}", pl.col("our_batch"),
                  pl.col("batch_count"), pl.col("amount"), pl.col("members"), pl.col("members_total"))
        .alias("batch_detail"))
    good = checked.filter(pl.col("error_reason").is_null()).drop("members", "members_total", "error_reason")
    expanded = good.join(members, left_on="our_batch", right_on="shipment_batch_id", how="inner")
    expanded = expanded.with_columns(pl.col("our_batch").alias("shipment_batch_id"))
    return expanded, errors


def _error_detail(errors: pl.DataFrame) -> pl.DataFrame:
    if errors.height == 0:
        return errors.with_columns(pl.lit(None, pl.String).alias("error_detail"))
    for name in ("batch_detail", "disbursement_amount", "disbursement_status", "disbursement_currency",
                 "disbursement_id", "disbursement_envelope_id", "our_batch"):
        if name not in errors.columns:
            errors = errors.with_columns(pl.lit(None, pl.String).alias(name))
    reference = pl.coalesce(pl.col("our_reference"), pl.col("our_batch"))
    detail = (
        pl.when(pl.col("batch_detail").is_not_null()).then(pl.col("batch_detail"))
        .when(pl.col("error_reason") == "INVALID_RECONCILIATION_ID")
        .then(pl.format("reference {} is not a payment the bridge shipped", reference))
        .when(pl.col("error_reason") == "AMOUNT_MISMATCH")
        .then(pl.format("line amount {} differs from disbursement amount {}", pl.col("amount"),
                        pl.col("disbursement_amount")))
        .when(pl.col("error_reason") == "CURRENCY_MISMATCH")
        .then(pl.format("line currency {} differs from disbursement currency {}", pl.col("currency"),
                        pl.col("disbursement_currency")))
        .when(pl.col("error_reason") == "INVALID_REVERSAL")
        .then(pl.format("reversal of {} which was never shipped (state {})", reference, pl.col("disbursement_status")))
        .when(pl.col("error_reason") == "DUPLICATE_DISBURSEMENT")
        .then(pl.format("{} was already {} by another statement line", reference,
                        pl.when(pl.col("kind") == REVERSAL).then(pl.lit("reversed")).otherwise(pl.lit("debited"))))
        .otherwise(pl.lit(None, pl.String)))
    return errors.with_columns(detail.alias("error_detail"))
