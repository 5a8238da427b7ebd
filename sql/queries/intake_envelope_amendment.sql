-- Intake of staging.envelope_amendment, one wave. Absent (NULL) fields keep their value. The envelope rules apply to
-- the new values, and an amendment may never go below what was already received.

-- name: evaluate
CREATE TEMP TABLE intake_wave ON COMMIT DROP AS
WITH s AS (
    SELECT b.*, p.business_date, p.sla_days
    FROM intake_batch_envelope_amendment b, intake_params p WHERE b.wave = p.wave
),
checked AS (
    SELECT s.*,
           e.disbursement_envelope_id IS NOT NULL AS envelope_exists,
           e.cancellation_status,
           e.disbursement_schedule_date AS current_schedule_date,
           bs.disbursement_started_at,
           bs.number_of_disbursements_received AS received_count,
           bs.total_disbursement_amount_received AS received_amount,
           cur.minor_units,
           e.disbursement_currency_code AS currency,
           coalesce(s.number_of_beneficiaries, e.number_of_beneficiaries) AS new_beneficiaries,
           coalesce(s.number_of_disbursements, e.number_of_disbursements) AS new_disbursements,
           coalesce(s.total_disbursement_amount, e.total_disbursement_amount) AS new_total,
           coalesce(s.disbursement_schedule_date, e.disbursement_schedule_date) AS new_schedule_date
    FROM s
    LEFT JOIN bridge.disbursement_envelope e ON e.disbursement_envelope_id = s.disbursement_envelope_id
    LEFT JOIN bridge.disbursement_envelope_batch_status bs ON bs.disbursement_envelope_id = s.disbursement_envelope_id
    LEFT JOIN bridge.currency cur ON cur.currency_code = e.disbursement_currency_code
)
SELECT checked.*,
       CASE
           WHEN disbursement_envelope_id IS NULL OR btrim(disbursement_envelope_id, E' \t\n\r\f\v') = ''
                OR length(disbursement_envelope_id) > 64 THEN 'INVALID_DISBURSEMENT_ENVELOPE_ID'
           WHEN NOT envelope_exists THEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND'
           WHEN cancellation_status = 'CANCELLED' THEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED'
           WHEN disbursement_started_at IS NOT NULL OR current_schedule_date <= business_date
                THEN 'DISBURSEMENT_ENVELOPE_DATE_PASSED'
           WHEN new_beneficiaries < 1 THEN 'INVALID_NO_OF_BENEFICIARIES'
           WHEN new_disbursements < new_beneficiaries THEN 'INVALID_NO_OF_DISBURSEMENTS'
           WHEN new_total <= 0 OR new_total >= 1e18 OR min_scale(new_total) > minor_units
                THEN 'INVALID_TOTAL_DISBURSEMENT_AMOUNT'
           WHEN disbursement_schedule_date IS NOT NULL AND (NOT isfinite(disbursement_schedule_date)
                OR disbursement_schedule_date <= business_date + sla_days) THEN 'INVALID_DISBURSEMENT_SCHEDULE_DATE'
           WHEN new_disbursements < received_count THEN 'INVALID_NO_OF_DISBURSEMENTS'
           WHEN new_total < received_amount THEN 'INVALID_TOTAL_DISBURSEMENT_AMOUNT'
       END AS error_code
FROM checked;

-- name: apply
WITH amended AS (
    UPDATE bridge.disbursement_envelope e SET
        number_of_beneficiaries = w.new_beneficiaries,
        number_of_disbursements = w.new_disbursements,
        total_disbursement_amount = w.new_total,
        disbursement_schedule_date = w.new_schedule_date,
        updated_at = now()
    FROM intake_wave w
    WHERE w.error_code IS NULL AND e.disbursement_envelope_id = w.disbursement_envelope_id
    RETURNING e.disbursement_envelope_id, w.staging_id, w.new_beneficiaries, w.new_disbursements, w.new_total,
              w.new_schedule_date
)
INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail)
SELECT disbursement_envelope_id, 'AMENDED',
       format('staging_id %s: beneficiaries %s, disbursements %s, total %s, schedule date %s',
              staging_id, new_beneficiaries, new_disbursements, new_total, new_schedule_date)
FROM amended;

-- name: record
-- Each row's result (staging_ctid, error_code, error_detail); service.py writes it back to the staged row.
SELECT staging_ctid, error_code,
       CASE error_code
           WHEN 'INVALID_DISBURSEMENT_ENVELOPE_ID' THEN 'disbursement_envelope_id must be present and at most 64 characters'
           WHEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND' THEN format('envelope %s has not been accepted', disbursement_envelope_id)
           WHEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED' THEN format('envelope %s is cancelled', disbursement_envelope_id)
           WHEN 'DISBURSEMENT_ENVELOPE_DATE_PASSED' THEN format('envelope %s is due (schedule date %s, business date %s) or already being disbursed: it can no longer be amended', disbursement_envelope_id, current_schedule_date, business_date)
           WHEN 'INVALID_NO_OF_BENEFICIARIES' THEN format('number_of_beneficiaries %s must be at least 1', new_beneficiaries)
           WHEN 'INVALID_NO_OF_DISBURSEMENTS' THEN format('number_of_disbursements %s must be at least number_of_beneficiaries %s and at least the %s disbursements already received', new_disbursements, new_beneficiaries, received_count)
           WHEN 'INVALID_TOTAL_DISBURSEMENT_AMOUNT' THEN format('total_disbursement_amount %s must be greater than 0, have at most %s decimals for %s, and be at least the %s already received', new_total, minor_units, currency, received_amount)
           WHEN 'INVALID_DISBURSEMENT_SCHEDULE_DATE' THEN format('disbursement_schedule_date %s must be after %s (business date %s + %s SLA days)', disbursement_schedule_date, business_date + sla_days, business_date, sla_days)
           ELSE 'envelope amended'
       END AS error_detail
FROM intake_wave;
