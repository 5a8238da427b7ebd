-- Intake of staging.disbursement, one wave (a disbursement_id staged several times goes in successive waves).
-- Rules 1-6 are per row; rules 7-8 are running caps per envelope in staging_id order over the rows that passed
-- 1-6, added to what the envelope already received: the first row that would overshoot the declared count or total,
-- and every later row of that envelope in the same run, is rejected. "Every later row" includes rows of later waves
-- (an id re-staged in the same batch): they see the earliest cap rejection of their envelope in the earlier waves
-- (kept in intake_cap_breach) and are refused when they come after it.
--
-- A wave is one statement (a run of a million rows is usually one wave): the evaluated rows are held once, in
-- memory (`wave`), and read from there by the insert of the accepted disbursements, the envelope counters, the
-- write-back of every row's result to its staged row and the tally the statement returns (error_code, rows,
-- rows written back). Only the columns those need are carried.

-- name: prepare
-- Once per run, before the first wave: the cap rejections of the run's waves, for the waves after them.
CREATE TEMP TABLE intake_cap_breach (disbursement_envelope_id text, staging_id bigint, error_code text) ON COMMIT DROP;

-- name: wave
WITH s AS (
    SELECT b.staging_id, b.staging_ctid, b.disbursement_id, b.disbursement_envelope_id, b.mis_reference_number,
           b.beneficiary_id, b.beneficiary_name, b.disbursement_amount, b.narrative
    FROM intake_batch_disbursement b, intake_params p WHERE b.wave = p.wave
),
checked AS (
    SELECT s.*,
           e.disbursement_envelope_id IS NOT NULL AS envelope_exists,
           e.cancellation_status,
           e.number_of_disbursements AS declared_count,
           e.total_disbursement_amount AS declared_amount,
           e.disbursement_currency_code AS currency,
           bs.disbursement_started_at,
           bs.number_of_disbursements_received AS received_count,
           bs.total_disbursement_amount_received AS received_amount,
           cur.minor_units,
           x.disbursement_id IS NOT NULL AS exists_already,
           coalesce(x.disbursement_envelope_id = s.disbursement_envelope_id
             AND x.mis_reference_number IS NOT DISTINCT FROM s.mis_reference_number
             AND x.beneficiary_id IS NOT DISTINCT FROM s.beneficiary_id
             AND x.beneficiary_name IS NOT DISTINCT FROM s.beneficiary_name
             AND x.disbursement_amount IS NOT DISTINCT FROM s.disbursement_amount
             AND x.narrative IS NOT DISTINCT FROM s.narrative, false) AS identical
    FROM s
    -- the envelope, its counters and its currency: one lookup per row (an envelope always has its counters row)
    LEFT JOIN (bridge.disbursement_envelope e
               LEFT JOIN bridge.disbursement_envelope_batch_status bs USING (disbursement_envelope_id)
               LEFT JOIN bridge.currency cur ON cur.currency_code = e.disbursement_currency_code)
           ON e.disbursement_envelope_id = s.disbursement_envelope_id
    LEFT JOIN bridge.disbursement x ON x.disbursement_id = s.disbursement_id
),
ruled AS (
    SELECT checked.*,
           exists_already AND identical AS is_noop,
           -- "Blank" and "too long" are tested the cheap way first: a value whose first character is not one of
           -- those btrim removes (or the empty string, ascii 0) is not blank, and a value of at most N bytes has at
           -- most N characters; the exact test runs only when the cheap one cannot decide. Same results, a fraction
           -- of the cost on a million rows.
           CASE
               WHEN exists_already AND identical THEN NULL
               WHEN disbursement_id IS NULL
                    OR (ascii(disbursement_id) IN (0, 9, 10, 11, 12, 13, 32)
                        AND btrim(disbursement_id, E' \t\n\r\f\v') = '')
                    OR (octet_length(disbursement_id) > 64 AND length(disbursement_id) > 64)
                    THEN 'INVALID_DISBURSEMENT_ID'
               WHEN NOT envelope_exists THEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND'
               WHEN cancellation_status = 'CANCELLED' THEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED'
               WHEN disbursement_started_at IS NOT NULL THEN 'DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED'
               WHEN beneficiary_id IS NULL
                    OR (ascii(beneficiary_id) IN (0, 9, 10, 11, 12, 13, 32)
                        AND btrim(beneficiary_id, E' \t\n\r\f\v') = '')
                    OR (octet_length(beneficiary_id) > 256 AND length(beneficiary_id) > 256)
                    THEN 'INVALID_BENEFICIARY_ID'
               WHEN beneficiary_name IS NULL
                    OR (ascii(beneficiary_name) IN (0, 9, 10, 11, 12, 13, 32)
                        AND btrim(beneficiary_name, E' \t\n\r\f\v') = '')
                    OR (octet_length(beneficiary_name) > 256 AND length(beneficiary_name) > 256)
                    THEN 'INVALID_BENEFICIARY_NAME'
               WHEN narrative IS NULL
                    OR (ascii(narrative) IN (0, 9, 10, 11, 12, 13, 32) AND btrim(narrative, E' \t\n\r\f\v') = '')
                    OR (octet_length(narrative) > 256 AND length(narrative) > 256)
                    THEN 'INVALID_NARRATIVE'
               WHEN disbursement_amount IS NULL OR disbursement_amount <= 0 OR disbursement_amount >= 1e18
                    OR min_scale(disbursement_amount) > minor_units THEN 'INVALID_DISBURSEMENT_AMOUNT'
               WHEN exists_already THEN 'DUPLICATE_DISBURSEMENT_ID'
           END AS row_error
    FROM checked
    OFFSET 0  -- a fence: row_error and is_noop are computed once per row, not again in every expression reading them
),
-- Cap rejections of earlier waves of this run (empty in wave 1): the earliest per envelope, with its code.
earlier_breach AS (
    SELECT r.disbursement_envelope_id, min(r.staging_id) AS breach_staging_id,
           (array_agg(r.error_code ORDER BY r.staging_id))[1] AS breach_code
    FROM intake_cap_breach r
    WHERE (SELECT wave FROM intake_params) > 1
    GROUP BY r.disbursement_envelope_id
),
capped AS (
    SELECT ruled.*, eb.breach_staging_id, eb.breach_code,
           received_count + count(*) FILTER (WHERE row_error IS NULL AND NOT is_noop) OVER running AS running_count,
           received_amount + coalesce(sum(disbursement_amount) FILTER (WHERE row_error IS NULL AND NOT is_noop)
                                      OVER running, 0) AS running_amount
    FROM ruled
    LEFT JOIN earlier_breach eb USING (disbursement_envelope_id)
    WINDOW running AS (PARTITION BY disbursement_envelope_id ORDER BY staging_id ROWS UNBOUNDED PRECEDING)
),
evaluated AS (
    SELECT capped.*,
           CASE
               WHEN row_error IS NOT NULL OR is_noop THEN row_error
               WHEN running_count > declared_count THEN 'NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED'
               WHEN running_amount > declared_amount THEN 'TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED'
               WHEN staging_id > breach_staging_id THEN breach_code
           END AS error_code,
           row_error IS NULL AND NOT is_noop AND running_count <= declared_count AND running_amount <= declared_amount
               AND staging_id > breach_staging_id AS after_earlier_breach
    FROM capped
),
wave AS MATERIALIZED (
    SELECT staging_id, staging_ctid, disbursement_id, disbursement_envelope_id, mis_reference_number, beneficiary_id,
           beneficiary_name, disbursement_amount, narrative, error_code, is_noop,
           CASE error_code
               WHEN 'INVALID_DISBURSEMENT_ID' THEN 'disbursement_id must be present and at most 64 characters'
               WHEN 'DISBURSEMENT_ENVELOPE_NOT_FOUND' THEN format('envelope %s has not been accepted', coalesce(disbursement_envelope_id, 'NULL'))
               WHEN 'DISBURSEMENT_ENVELOPE_ALREADY_CANCELED' THEN format('envelope %s is cancelled', disbursement_envelope_id)
               WHEN 'DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED' THEN format('envelope %s is already being disbursed: no disbursement can be added', disbursement_envelope_id)
               WHEN 'INVALID_BENEFICIARY_ID' THEN 'beneficiary_id must be present and at most 256 characters'
               WHEN 'INVALID_BENEFICIARY_NAME' THEN 'beneficiary_name must be present and at most 256 characters'
               WHEN 'INVALID_NARRATIVE' THEN 'narrative must be present and at most 256 characters'
               WHEN 'INVALID_DISBURSEMENT_AMOUNT' THEN format('disbursement_amount %s must be greater than 0 with at most %s decimals for %s', coalesce(disbursement_amount::text, 'NULL'), minor_units, currency)
               WHEN 'DUPLICATE_DISBURSEMENT_ID' THEN format('disbursement %s already exists with different content', disbursement_id)
               WHEN 'NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED' THEN
                   CASE WHEN after_earlier_breach THEN format('envelope %s went over its declared %s disbursements earlier in this intake run (staging_id %s): every later disbursement of the envelope in the run is refused', disbursement_envelope_id, declared_count, breach_staging_id)
                        ELSE format('envelope %s declares %s disbursements; this one would be number %s', disbursement_envelope_id, declared_count, running_count) END
               WHEN 'TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED' THEN
                   CASE WHEN after_earlier_breach THEN format('envelope %s went over its declared total of %s earlier in this intake run (staging_id %s): every later disbursement of the envelope in the run is refused', disbursement_envelope_id, declared_amount, breach_staging_id)
                        ELSE format('envelope %s declares a total of %s; with this one the received total would be %s', disbursement_envelope_id, declared_amount, running_amount) END
               ELSE CASE WHEN is_noop THEN 'identical to an accepted disbursement: duplicate ignored' ELSE 'disbursement accepted' END
           END AS error_detail
    FROM evaluated
),
added AS (
    INSERT INTO bridge.disbursement (
        disbursement_id, disbursement_envelope_id, mis_reference_number, beneficiary_id, beneficiary_name,
        disbursement_amount, narrative, bank_reference, source_staging_id)
    SELECT disbursement_id, disbursement_envelope_id, mis_reference_number, beneficiary_id, beneficiary_name,
           disbursement_amount, narrative,
           'G' || lpad(upper(to_hex(nextval('bridge.bank_reference_seq'))), 15, '0'),
           staging_id
    FROM wave WHERE error_code IS NULL AND NOT is_noop
),
-- what each envelope received in this wave, aggregated once: as a subquery of the UPDATE below it was aggregated
-- again for every envelope the UPDATE joined it with (a sort of the whole wave each time)
added_per_envelope AS MATERIALIZED (
    SELECT disbursement_envelope_id, count(*) AS added_count, sum(disbursement_amount) AS added_amount
    FROM wave WHERE error_code IS NULL AND NOT is_noop
    GROUP BY disbursement_envelope_id
),
counted AS (
    UPDATE bridge.disbursement_envelope_batch_status bs SET
        number_of_disbursements_received = bs.number_of_disbursements_received + a.added_count,
        total_disbursement_amount_received = bs.total_disbursement_amount_received + a.added_amount,
        updated_at = now()
    FROM added_per_envelope a
    WHERE bs.disbursement_envelope_id = a.disbursement_envelope_id
),
breached AS (
    INSERT INTO intake_cap_breach (disbursement_envelope_id, staging_id, error_code)
    SELECT disbursement_envelope_id, staging_id, error_code FROM wave
    WHERE error_code IN ('NO_OF_DISBURSEMENTS_EXCEEDS_DECLARED', 'TOTAL_DISBURSEMENT_AMOUNT_EXCEEDS_DECLARED')
),
-- each row's result, written straight back to its staged row (found by its address in this run's snapshot;
-- only ever a pending row)
recorded AS (
    UPDATE staging.disbursement st SET
        intake_status = CASE WHEN r.error_code IS NULL THEN 'ACCEPTED' ELSE 'REJECTED' END,
        intake_error_code = r.error_code, intake_error_detail = r.error_detail, intake_processed_at = now()
    FROM wave r
    WHERE st.ctid = r.staging_ctid AND st.intake_status = 'PENDING'
    RETURNING 1
)
SELECT error_code, count(*) AS n, (SELECT count(*) FROM recorded) AS written FROM wave GROUP BY error_code;
