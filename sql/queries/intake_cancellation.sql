-- Intake of staging.envelope_cancellation and staging.disbursement_cancellation, one wave each.

-- name: evaluate_envelope
CREATE TEMP TABLE intake_wave ON COMMIT DROP AS
WITH s AS (
    SELECT b.* FROM intake_batch_envelope_cancellation b, intake_params p WHERE b.wave = p.wave
)
SELECT s.*,
       CASE
           WHEN s.disbursement_envelope_id IS NULL OR btrim(s.disbursement_envelope_id, E' \t\n\r\f\v') = ''
                OR length(s.disbursement_envelope_id) > 64 THEN 'INVALID_DISBURSEMENT_ENVELOPE_ID'
           WHEN e.disbursement_envelope_id IS NULL THEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND'
           WHEN e.cancellation_status = 'CANCELLED' THEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED'
       END AS error_code
FROM s LEFT JOIN bridge.disbursement_envelope e ON e.disbursement_envelope_id = s.disbursement_envelope_id;

-- name: apply_envelope
-- Disbursements not yet handed to the bank are cancelled with the envelope; those in a recorded payment batch
-- stay where they are (the batch may already have reached the bank). Releasing blocked funds is the pipeline's job.
WITH cancelled_envelope AS (
    UPDATE bridge.disbursement_envelope e SET cancellation_status = 'CANCELLED', cancellation_timestamp = now(),
                                             updated_at = now()
    FROM intake_wave w
    WHERE w.error_code IS NULL AND e.disbursement_envelope_id = w.disbursement_envelope_id
    RETURNING e.disbursement_envelope_id, w.staging_id
),
envelope_events AS (
    INSERT INTO bridge.envelope_event (disbursement_envelope_id, event_type, detail)
    SELECT disbursement_envelope_id, 'CANCELLED', format('staging_id %s', staging_id) FROM cancelled_envelope
),
-- members of a recorded payment batch (whatever its state) are left to the pipeline, which settles them with the bank
planned AS (
    SELECT unnest(b.member_disbursement_ids) AS disbursement_id
    FROM bridge.bank_disbursement_batch_status b JOIN cancelled_envelope c USING (disbursement_envelope_id)
),
targets AS (
    SELECT d.disbursement_id, d.disbursement_status AS from_status
    FROM bridge.disbursement d JOIN cancelled_envelope c USING (disbursement_envelope_id)
    LEFT JOIN planned p ON p.disbursement_id = d.disbursement_id
    WHERE d.disbursement_status IN ('RECEIVED', 'RESOLVED', 'RESOLUTION_FAILED') AND d.shipment_batch_id IS NULL
      AND p.disbursement_id IS NULL
),
cancelled AS (
    UPDATE bridge.disbursement d SET disbursement_status = 'CANCELLED', status_reason_code = 'ENVELOPE_CANCELLED',
                                     cancelled_at = now(), status_updated_at = now()
    FROM targets t
    WHERE d.disbursement_id = t.disbursement_id
    RETURNING d.disbursement_id, d.disbursement_envelope_id, t.from_status
)
INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status, to_status, reason_code)
SELECT disbursement_id, disbursement_envelope_id, from_status, 'CANCELLED', 'ENVELOPE_CANCELLED' FROM cancelled;

-- name: record_envelope
-- Each row's result (staging_ctid, error_code, error_detail); service.py writes it back to the staged row.
SELECT staging_ctid, error_code,
       CASE error_code
           WHEN 'INVALID_DISBURSEMENT_ENVELOPE_ID' THEN 'disbursement_envelope_id must be present and at most 64 characters'
           WHEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND' THEN format('envelope %s has not been accepted', disbursement_envelope_id)
           WHEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED' THEN format('envelope %s is already cancelled', disbursement_envelope_id)
           ELSE 'envelope cancelled'
       END AS error_detail
FROM intake_wave;

-- name: evaluate_disbursement
CREATE TEMP TABLE intake_wave ON COMMIT DROP AS
WITH s AS (
    SELECT b.* FROM intake_batch_disbursement_cancellation b, intake_params p WHERE b.wave = p.wave
)
SELECT s.*, d.disbursement_envelope_id, d.disbursement_amount, d.disbursement_status AS from_status,
       CASE
           WHEN d.disbursement_id IS NULL THEN 'INVALID_DISBURSEMENT_ID'
           WHEN d.disbursement_status = 'CANCELLED' THEN 'DISBURSEMENT_ALREADY_CANCELED'
           WHEN bs.disbursement_started_at IS NOT NULL OR d.shipment_batch_id IS NOT NULL
                THEN 'DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED'
       END AS error_code
FROM s
LEFT JOIN bridge.disbursement d ON d.disbursement_id = s.disbursement_id
LEFT JOIN bridge.disbursement_envelope_batch_status bs ON bs.disbursement_envelope_id = d.disbursement_envelope_id;

-- name: apply_disbursement
-- A cancelled disbursement gives its count and amount back to the envelope, so PBMS can send a replacement.
WITH cancelled AS (
    UPDATE bridge.disbursement d SET disbursement_status = 'CANCELLED', status_reason_code = 'CANCELLED_BY_PBMS',
                                     cancelled_at = now(), status_updated_at = now()
    FROM intake_wave w
    WHERE w.error_code IS NULL AND d.disbursement_id = w.disbursement_id
    RETURNING d.disbursement_id, d.disbursement_envelope_id, d.disbursement_amount, w.from_status
),
events AS (
    INSERT INTO bridge.disbursement_event (disbursement_id, disbursement_envelope_id, from_status, to_status, reason_code)
    SELECT disbursement_id, disbursement_envelope_id, from_status, 'CANCELLED', 'CANCELLED_BY_PBMS' FROM cancelled
)
UPDATE bridge.disbursement_envelope_batch_status bs SET
    number_of_disbursements_received = bs.number_of_disbursements_received - g.n,
    total_disbursement_amount_received = bs.total_disbursement_amount_received - g.amount,
    updated_at = now()
FROM (SELECT disbursement_envelope_id, count(*) AS n, sum(disbursement_amount) AS amount
      FROM cancelled GROUP BY disbursement_envelope_id) g
WHERE bs.disbursement_envelope_id = g.disbursement_envelope_id;

-- name: record_disbursement
-- Each row's result (staging_ctid, error_code, error_detail); service.py writes it back to the staged row.
SELECT staging_ctid, error_code,
       CASE error_code
           WHEN 'INVALID_DISBURSEMENT_ID' THEN format('disbursement %s has not been accepted', coalesce(disbursement_id, 'NULL'))
           WHEN 'DISBURSEMENT_ALREADY_CANCELED' THEN format('disbursement %s is already cancelled', disbursement_id)
           WHEN 'DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED' THEN format('envelope %s is already being disbursed: its disbursements can no longer be cancelled', disbursement_envelope_id)
           ELSE format('disbursement cancelled; its count and amount (%s) are given back to envelope %s', disbursement_amount, disbursement_envelope_id)
       END AS error_detail
FROM intake_wave;
