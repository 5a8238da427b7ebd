-- Status views read by PBMS and operators.

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
       coalesce(failed.amount_failed, 0)          AS total_disbursement_amount_failed,
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
) err ON true
-- The batch status counts failed disbursements but keeps no failed amount: summed here (index on envelope, status).
LEFT JOIN LATERAL (
    SELECT sum(d.disbursement_amount) AS amount_failed
    FROM bridge.disbursement d
    WHERE d.disbursement_envelope_id = e.disbursement_envelope_id AND d.disbursement_status = 'FAILED'
) failed ON true;

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
