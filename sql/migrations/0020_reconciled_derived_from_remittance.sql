-- Performance at scale (issue 9): a reconciled disbursement is no longer rewritten.
--
-- The reconciliation records every remittance it matches in bridge.disbursement_recon (one row per disbursement, in
-- the reconciliation's own transaction), and it also rewrote every such disbursement from SHIPPED to RECONCILED: a
-- second write of every row a statement names. At 1,000,000 lines that UPDATE was the largest part of the
-- reconciliation (2.8-3.0 s of 8-12 s), and it was a second row version of every disbursement of every cycle.
--
-- From now on the stored state stays SHIPPED, and a SHIPPED disbursement whose remittance is recorded is RECONCILED.
-- What PBMS and operators read does not change: bridge.disbursement_status (the view they may read) shows RECONCILED
-- exactly as before, with the time the remittance was recorded as the state's time, and the envelope counters
-- (number_of_disbursements_reconciled and its amount) still move in the reconciliation's transaction. A reversal
-- still moves the stored state to REVERSED (its event says RECONCILED -> REVERSED when the remittance was recorded
-- before).
--
-- Disbursements stored as RECONCILED before this migration are stored as SHIPPED: each has its remittance recorded
-- (checked below: the migration stops if one has not), so the view shows them as before. Their status_updated_at is
-- left as it was; the view takes the state's time from the remittance row.
DO $$
DECLARE
    missing bigint;
BEGIN
    SELECT count(*) INTO missing
    FROM bridge.disbursement d LEFT JOIN bridge.disbursement_recon r USING (disbursement_id)
    WHERE d.disbursement_status = 'RECONCILED' AND r.remittance_statement_id IS NULL;
    IF missing > 0 THEN
        RAISE EXCEPTION '% RECONCILED disbursement(s) have no recorded remittance: not migrated', missing;
    END IF;
END $$;

ALTER TABLE bridge.disbursement DROP CONSTRAINT disbursement_disbursement_status_check;
UPDATE bridge.disbursement SET disbursement_status = 'SHIPPED' WHERE disbursement_status = 'RECONCILED';
ALTER TABLE bridge.disbursement ADD CONSTRAINT disbursement_disbursement_status_check
    CHECK (disbursement_status IN ('RECEIVED', 'CANCELLED', 'RESOLVED', 'RESOLUTION_FAILED', 'SHIPPED', 'FAILED',
                                   'REVERSED'));

COMMENT ON COLUMN bridge.disbursement.disbursement_status IS
    'The stored state: RECEIVED, CANCELLED, RESOLVED, RESOLUTION_FAILED, SHIPPED, FAILED or REVERSED. A SHIPPED '
    'disbursement whose remittance is recorded in bridge.disbursement_recon is RECONCILED: read the state from '
    'bridge.disbursement_status (migration 0020).';

CREATE OR REPLACE VIEW bridge.disbursement_status AS
SELECT d.disbursement_id,
       d.disbursement_envelope_id,
       d.mis_reference_number,
       d.beneficiary_id,
       d.beneficiary_name,
       d.disbursement_amount,
       e.disbursement_currency_code,
       d.narrative,
       CASE WHEN d.disbursement_status = 'SHIPPED' AND r.remittance_statement_id IS NOT NULL THEN 'RECONCILED'
            ELSE d.disbursement_status END  AS disbursement_status,
       d.status_reason_code,
       CASE WHEN d.disbursement_status = 'SHIPPED' AND r.remittance_statement_id IS NOT NULL THEN r.created_at
            ELSE d.status_updated_at END    AS status_updated_at,
       d.bank_reference,
       d.shipment_batch_id,
       d.received_at,
       d.shipped_at,
       d.cancelled_at,
       m.mapper_status,
       m.failure_reason_code                      AS mapper_failure_reason_code,
       m.fa_type,
       r.remittance_reference_number,
       r.remittance_statement_id,
       r.remittance_statement_number,
       r.remittance_statement_sequence,
       r.remittance_entry_sequence,
       r.remittance_entry_date,
       r.remittance_value_date,
       coalesce(r.reversal_found, false)          AS reversal_found,
       r.reversal_statement_id,
       r.reversal_statement_number,
       r.reversal_statement_sequence,
       r.reversal_entry_sequence,
       r.reversal_entry_date,
       r.reversal_value_date,
       r.reversal_reason
FROM bridge.disbursement d
JOIN bridge.disbursement_envelope e USING (disbursement_envelope_id)
LEFT JOIN bridge.mapper_resolution_details m USING (disbursement_id)
LEFT JOIN bridge.disbursement_recon r USING (disbursement_id);
