"""Resolution of a program without the ID mapper: the beneficiary ids are parsed as financial addresses, a slice
at a time (bounded memory), with the same outcome as all at once."""

from __future__ import annotations

import pytest

import bridge_pipelines.disbursement.resolution as resolution
from bridge_pipelines.disbursement.envelopes import load_envelope, shippable_states
from tests.intake_helpers import count_rows, disbursement, envelope, intake, program, start_disbursing

UNPARSABLE = {"D-2": "junk", "D-5": "account_number:.bank_code:EXB.mode:bank", "D-7": "mode:bank"}


@pytest.mark.parametrize("parse_rows", [2, 1_000_000])
def test_addresses_parsed_in_slices_fail_and_resolve_as_all_at_once(db, monkeypatch, parse_rows):
    monkeypatch.setattr(resolution, "PARSE_ROWS", parse_rows)
    program(db)
    envelope(db, number_of_beneficiaries=8, number_of_disbursements=8, total_disbursement_amount=800)
    for n in range(1, 9):
        disbursement(db, f"D-{n}", beneficiary_id=UNPARSABLE.get(
            f"D-{n}", f"account_number:{n:010d}.bank_code:EXB.mode:bank"))
    assert intake(db).accepted["disbursement"] == 8
    start_disbursing(db)
    result = resolution.resolve_accounts(db, load_envelope(db, "ENV-1"), resolver=None, batch_size=1_000)
    assert (result.resolved, result.failed) == (5, 3)
    failed = dict(db.execute("SELECT disbursement_id, status_reason_code FROM bridge.disbursement "
                             "WHERE disbursement_status = 'RESOLUTION_FAILED'").fetchall())
    assert set(failed) == set(UNPARSABLE) and all(failed.values())
    assert sum(result.failed_by_reason.values()) == 3
    assert count_rows(db, "bridge.mapper_resolution_details") == 3  # the failures only, with their reason
    # the others are not rewritten: they ship from RECEIVED now that the envelope's addresses are parsed
    assert count_rows(db, "bridge.disbursement", "disbursement_status = 'RECEIVED'") == 5
    assert shippable_states(db, "ENV-1") == ["RECEIVED", "RESOLVED"]
