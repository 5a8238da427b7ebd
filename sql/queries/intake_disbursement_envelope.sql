-- Intake of staging.disbursement_envelope, one wave. The first rule a row breaks gives its code, in the contract's
-- order; an identical re-staging of an accepted envelope is a no-op, whatever else has happened since.
-- "Present" means not blank: spaces, tabs and line breaks alone are absent (here and in the other intake files).

-- name: evaluate
CREATE TEMP TABLE intake_wave ON COMMIT DROP AS
WITH s AS (
    SELECT b.*, p.business_date, p.sla_days
    FROM intake_batch_disbursement_envelope b, intake_params p WHERE b.wave = p.wave
),
checked AS (
    SELECT s.*,
           f.canonical AS frequency,
           upper(btrim(s.disbursement_currency_code)) AS currency,
           prog.benefit_program_mnemonic IS NOT NULL AS program_exists,
           prog.disbursement_currency_code AS program_currency,
           cur.minor_units,
           x.disbursement_envelope_id IS NOT NULL AS exists_already,
           coalesce(x.benefit_program_mnemonic = s.benefit_program_mnemonic
             AND x.disbursement_frequency IS NOT DISTINCT FROM f.canonical
             AND x.cycle_code_mnemonic IS NOT DISTINCT FROM s.cycle_code_mnemonic
             AND x.number_of_beneficiaries IS NOT DISTINCT FROM s.number_of_beneficiaries
             AND x.number_of_disbursements IS NOT DISTINCT FROM s.number_of_disbursements
             AND x.total_disbursement_amount IS NOT DISTINCT FROM s.total_disbursement_amount
             AND x.disbursement_currency_code IS NOT DISTINCT FROM upper(btrim(s.disbursement_currency_code))
             AND x.disbursement_schedule_date IS NOT DISTINCT FROM s.disbursement_schedule_date, false) AS identical
    FROM s
    LEFT JOIN bridge.disbursement_frequency f ON f.lowered = lower(btrim(s.disbursement_frequency))
    LEFT JOIN bridge.benefit_program_configuration prog ON prog.benefit_program_mnemonic = s.benefit_program_mnemonic
    LEFT JOIN bridge.currency cur ON cur.currency_code = prog.disbursement_currency_code
    LEFT JOIN bridge.disbursement_envelope x ON x.disbursement_envelope_id = s.disbursement_envelope_id
)
SELECT checked.*,
       CASE
           WHEN exists_already AND identical THEN NULL
           WHEN disbursement_envelope_id IS NULL OR btrim(disbursement_envelope_id, E' \t\n\r\f\v') = ''
                OR length(disbursement_envelope_id) > 64 THEN 'INVALID_DISBURSEMENT_ENVELOPE_ID'
           WHEN NOT program_exists THEN 'INVALID_PROGRAM_MNEMONIC'
           WHEN frequency IS NULL THEN 'INVALID_DISBURSEMENT_FREQUENCY'
           WHEN cycle_code_mnemonic IS NULL OR btrim(cycle_code_mnemonic, E' \t\n\r\f\v') = ''
                THEN 'INVALID_CYCLE_CODE_MNEMONIC'
           WHEN number_of_beneficiaries IS NULL OR number_of_beneficiaries < 1 THEN 'INVALID_NO_OF_BENEFICIARIES'
           WHEN number_of_disbursements IS NULL OR number_of_disbursements < number_of_beneficiaries
                THEN 'INVALID_NO_OF_DISBURSEMENTS'
           WHEN total_disbursement_amount IS NULL OR total_disbursement_amount <= 0
                OR total_disbursement_amount >= 1e18
                OR min_scale(total_disbursement_amount) > minor_units THEN 'INVALID_TOTAL_DISBURSEMENT_AMOUNT'
           WHEN currency IS DISTINCT FROM program_currency THEN 'INVALID_DISBURSEMENT_CURRENCY_CODE'
           WHEN disbursement_schedule_date IS NULL OR NOT isfinite(disbursement_schedule_date)
                OR disbursement_schedule_date <= business_date + sla_days THEN 'INVALID_DISBURSEMENT_SCHEDULE_DATE'
           WHEN exists_already THEN 'DUPLICATE_DISBURSEMENT_ENVELOPE_ID'
       END AS error_code,
       exists_already AND identical AS is_noop
FROM checked;

-- name: apply
WITH created AS (
    INSERT INTO bridge.disbursement_envelope (
        disbursement_envelope_id, benefit_program_mnemonic, disbursement_frequency, cycle_code_mnemonic,
        number_of_beneficiaries, number_of_disbursements, total_disbursement_amount, disbursement_currency_code,
        disbursement_schedule_date, source_staging_id)
    SELECT disbursement_envelope_id, benefit_program_mnemonic, frequency, cycle_code_mnemonic,
           number_of_beneficiaries, number_of_disbursements, total_disbursement_amount, currency,
           disbursement_schedule_date, staging_id
    FROM intake_wave WHERE error_code IS NULL AND NOT is_noop
    RETURNING disbursement_envelope_id, benefit_program_mnemonic
)
INSERT INTO bridge.disbursement_envelope_batch_status (disbursement_envelope_id, id_mapper_resolution_status)
SELECT c.disbursement_envelope_id,
       CASE WHEN p.id_mapper_resolution_required THEN 'PENDING' ELSE 'NOT_APPLICABLE' END
FROM created c JOIN bridge.benefit_program_configuration p USING (benefit_program_mnemonic);

-- name: record
-- Each row's result (staging_ctid, error_code, error_detail); service.py writes it back to the staged row.
SELECT staging_ctid, error_code,
       CASE error_code
           WHEN 'INVALID_DISBURSEMENT_ENVELOPE_ID' THEN 'disbursement_envelope_id must be present and at most 64 characters'
           WHEN 'INVALID_PROGRAM_MNEMONIC' THEN format('benefit program %s is not configured', coalesce(benefit_program_mnemonic, 'NULL'))
           WHEN 'INVALID_DISBURSEMENT_FREQUENCY' THEN format('disbursement_frequency %s is not one of Daily, Weekly, Fortnightly, Monthly, BiMonthly, Quarterly, SemiAnnually, Annually, OnDemand', coalesce(disbursement_frequency, 'NULL'))
           WHEN 'INVALID_CYCLE_CODE_MNEMONIC' THEN 'cycle_code_mnemonic must be present'
           WHEN 'INVALID_NO_OF_BENEFICIARIES' THEN format('number_of_beneficiaries %s must be at least 1', coalesce(number_of_beneficiaries::text, 'NULL'))
           WHEN 'INVALID_NO_OF_DISBURSEMENTS' THEN format('number_of_disbursements %s must be at least number_of_beneficiaries %s', coalesce(number_of_disbursements::text, 'NULL'), number_of_beneficiaries)
           WHEN 'INVALID_TOTAL_DISBURSEMENT_AMOUNT' THEN format('total_disbursement_amount %s must be greater than 0 with at most %s decimals for %s', coalesce(total_disbursement_amount::text, 'NULL'), minor_units, program_currency)
           WHEN 'INVALID_DISBURSEMENT_CURRENCY_CODE' THEN format('disbursement_currency_code %s differs from the program''s currency %s', coalesce(disbursement_currency_code, 'NULL'), program_currency)
           WHEN 'INVALID_DISBURSEMENT_SCHEDULE_DATE' THEN format('disbursement_schedule_date %s must be after %s (business date %s + %s SLA days)', coalesce(disbursement_schedule_date::text, 'NULL'), business_date + sla_days, business_date, sla_days)
           WHEN 'DUPLICATE_DISBURSEMENT_ENVELOPE_ID' THEN format('envelope %s already exists with different content', disbursement_envelope_id)
           ELSE CASE WHEN is_noop THEN 'identical to an accepted envelope: duplicate ignored' ELSE 'envelope accepted' END
       END AS error_detail
FROM intake_wave;
