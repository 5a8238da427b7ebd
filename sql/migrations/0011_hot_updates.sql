-- Performance at scale (issue 9). A disbursement row is written at intake and changes state three times (resolved,
-- shipped, reconciled); each change rewrites the row. These changes make each rewrite cheap:
--
-- 1. No index on the columns that change (status, shipment_batch_id): PostgreSQL then updates the row in place on
--    its page ("HOT" update) without touching any index. The (envelope, status) index becomes an (envelope) index;
--    the failed amount the envelope view summed through it becomes a counter kept with the others; the
--    shipment_batch_id index goes (a batch's members are recorded on the batch, see 3.).
-- 2. fillfactor 50: new pages keep half their space free so that the new version of a row fits on its page.
-- 3. A payment batch records its members (member_disbursement_ids) when it is planned, before the bank is called:
--    the intent no longer rewrites every member. shipment_batch_id is set on a disbursement when the bank answers
--    for it (SHIPPED or FAILED).
-- 4. Identifiers compare byte-wise (COLLATE "C"): sorting and indexing ids no longer go through the locale's
--    collation, which made building the id indexes about 40 % slower. Ids are opaque: no order is promised on them.
--
-- The status views depend on these columns, so they are dropped and created again (with the same columns).

DROP VIEW bridge.disbursement_status;
DROP VIEW bridge.envelope_status;

ALTER TABLE bridge.disbursement
    ALTER COLUMN disbursement_id TYPE text COLLATE "C",
    ALTER COLUMN disbursement_envelope_id TYPE text COLLATE "C",
    ALTER COLUMN bank_reference TYPE varchar(16) COLLATE "C";
ALTER TABLE bridge.mapper_resolution_details ALTER COLUMN disbursement_id TYPE text COLLATE "C";
ALTER TABLE bridge.disbursement_recon ALTER COLUMN disbursement_id TYPE text COLLATE "C";
ALTER TABLE staging.disbursement
    ALTER COLUMN disbursement_id TYPE text COLLATE "C",
    ALTER COLUMN disbursement_envelope_id TYPE text COLLATE "C";

DROP INDEX bridge.disbursement_envelope_status_idx;
CREATE INDEX disbursement_envelope_idx ON bridge.disbursement (disbursement_envelope_id);
DROP INDEX bridge.disbursement_shipment_batch_idx;
ALTER TABLE bridge.disbursement SET (fillfactor = 50);

ALTER TABLE bridge.disbursement_envelope_batch_status
    ADD COLUMN total_disbursement_amount_failed numeric NOT NULL DEFAULT 0;
UPDATE bridge.disbursement_envelope_batch_status bs
SET total_disbursement_amount_failed = f.amount
FROM (SELECT disbursement_envelope_id, sum(disbursement_amount) AS amount FROM bridge.disbursement
      WHERE disbursement_status = 'FAILED' GROUP BY 1) f
WHERE f.disbursement_envelope_id = bs.disbursement_envelope_id;

ALTER TABLE bridge.bank_disbursement_batch_status ADD COLUMN member_disbursement_ids text[] COLLATE "C";
UPDATE bridge.bank_disbursement_batch_status b
SET member_disbursement_ids = (SELECT array_agg(d.disbursement_id ORDER BY d.bank_reference) FROM bridge.disbursement d
                               WHERE d.shipment_batch_id = b.bank_disbursement_batch_id);

CREATE VIEW bridge.envelope_status AS
SELECT e.disbursement_envelope_id,
       e.benefit_program_mnemonic,
       e.cycle_code_mnemonic,
       e.disbursement_frequency,
       e.disbursement_currency_code,
       e.disbursement_schedule_date,
       e.number_of_beneficiaries                  AS declared_number_of_beneficiaries,
       e.number_of_disbursements                  AS declared_number_of_disbursements,
       e.total_disbursement_amount                AS declared_total_disbursement_amount,
       e.cancellation_status,
       e.cancellation_timestamp,
       bs.id_mapper_resolution_status,
       bs.id_mapper_resolution_attempts,
       bs.id_mapper_resolution_latest_error_code,
       bs.funds_available_with_bank,
       bs.funds_available_attempts,
       bs.funds_available_latest_error_code,
       bs.funds_available_latest_timestamp,
       bs.funds_blocked_with_bank,
       bs.funds_blocked_attempts,
       bs.funds_blocked_latest_error_code,
       bs.funds_blocked_latest_timestamp,
       bs.funds_blocked_reference_number,
       bs.funds_blocked_amount,
       bs.funds_released_amount,
       bs.disbursement_started_at,
       bs.shipment_status,
       bs.shipment_attempts,
       bs.shipment_latest_error_code,
       bs.number_of_disbursements_received,
       bs.total_disbursement_amount_received,
       bs.number_of_disbursements_shipped,
       bs.total_disbursement_amount_shipped,
       bs.number_of_disbursements_reconciled,
       bs.total_disbursement_amount_reconciled,
       bs.number_of_disbursements_reversed,
       bs.total_disbursement_amount_reversed,
       bs.number_of_disbursements_failed,
       bs.total_disbursement_amount_failed,
       bs.number_of_disbursements_shipped - bs.number_of_disbursements_reconciled
           - bs.number_of_disbursements_reversed AS number_of_disbursements_unreconciled,
       coalesce(err.number_unmatched, 0)          AS number_of_statement_lines_unmatched,
       coalesce(err.amount_unmatched, 0)          AS total_amount_unmatched,
       (bs.number_of_disbursements_received = e.number_of_disbursements
        AND bs.total_disbursement_amount_received = e.total_disbursement_amount) AS all_disbursements_received,
       e.created_at,
       greatest(e.updated_at, bs.updated_at)      AS updated_at
FROM bridge.disbursement_envelope e
JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
LEFT JOIN LATERAL (
    SELECT count(*) AS number_unmatched, sum(r.amount) AS amount_unmatched
    FROM bridge.disbursement_error_recon r WHERE r.disbursement_envelope_id = e.disbursement_envelope_id
) err ON true;

CREATE VIEW bridge.disbursement_status AS
SELECT d.disbursement_id,
       d.disbursement_envelope_id,
       d.mis_reference_number,
       d.beneficiary_id,
       d.beneficiary_name,
       d.disbursement_amount,
       e.disbursement_currency_code,
       d.narrative,
       d.disbursement_status,
       d.status_reason_code,
       d.status_updated_at,
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

GRANT SELECT ON bridge.envelope_status, bridge.disbursement_status TO bridge_pbms, bridge_operator;
