"""`bridge demo`: stage a program, an envelope and its disbursements the way PBMS would (COPY into staging).

Amounts are exact (Decimal) and deterministic; beneficiaries are financial addresses (programs without the ID
mapper) or beneficiary ids the example mapper resolves (`--mapper`).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
import zlib

import psycopg

from bridge_pipelines.config import Settings
from bridge_pipelines.intake.staging import copy_rows, stage_row

DEMO_ACCOUNT_PREFIX = "100000"


def demo_amount(i: int) -> Decimal:
    return Decimal(50 + (i * 37) % 200) + Decimal((i * 13) % 100) / 100


def demo_beneficiary(i: int, mapper: bool) -> str:
    if mapper:
        return f"BEN-{i:08d}"
    return f"account_number:BA{i:010d}.branch_code:001.bank_code:EXBANK.mode:bank"


def stage_demo(database_url: str, settings: Settings, disbursements: int = 1000, program: str = "DEMO",
               envelope_id: str | None = None, mapper: bool = False, schedule_date: date | None = None,
               currency: str = "USD") -> dict:
    business_date = settings.business_date
    schedule_date = schedule_date or business_date + timedelta(days=settings.disbursement_sla_days + 1)
    cycle = schedule_date.strftime("%Y-%m")
    with psycopg.connect(database_url, autocommit=True) as conn:
        if envelope_id is None:
            existing = conn.execute("SELECT count(*) FROM staging.disbursement_envelope "
                                    "WHERE benefit_program_mnemonic = %s", (program,)).fetchone()[0]
            envelope_id = f"{program}-{cycle}-{existing + 1}"
        account = DEMO_ACCOUNT_PREFIX + str(zlib.crc32(program.encode()) % 10_000).zfill(4)
        amounts = [demo_amount(i) for i in range(disbursements)]
        total = sum(amounts, Decimal(0))
        with conn.transaction():
            stage_row(conn, "benefit_program", benefit_program_mnemonic=program,
                      benefit_program_name=f"{program} cash transfer", funding_org_code="MOF",
                      funding_org_name="Ministry of Finance", sponsor_bank_code="EXBANK",
                      sponsor_bank_account_number=account, sponsor_bank_branch_code="001",
                      sponsor_bank_account_currency=currency, disbursement_currency_code=currency,
                      id_mapper_resolution_required=mapper)
            stage_row(conn, "disbursement_envelope", disbursement_envelope_id=envelope_id,
                      benefit_program_mnemonic=program, disbursement_frequency="Monthly", cycle_code_mnemonic=cycle,
                      number_of_beneficiaries=disbursements, number_of_disbursements=disbursements,
                      total_disbursement_amount=total, disbursement_currency_code=currency,
                      disbursement_schedule_date=schedule_date)
            copy_rows(conn, "disbursement", (
                (f"{envelope_id}-{i:08d}", envelope_id, f"MIS-{i:08d}", demo_beneficiary(i, mapper),
                 f"Beneficiary {i}", amounts[i], f"{program} {cycle} transfer")
                for i in range(disbursements)))
    return {"program": program, "sponsor_account": account, "envelope": envelope_id,
            "disbursements": disbursements, "total": str(total), "currency": currency,
            "schedule_date": schedule_date.isoformat(), "business_date": business_date.isoformat(),
            "to_ship_it": f"run with BRIDGE_BUSINESS_DATE={schedule_date.isoformat()} (or wait until then)"}
