-- Intake of staging.benefit_program, one wave (rows with the same mnemonic go in successive waves, in staging_id
-- order). Upsert by mnemonic. Reads intake_params (business_date, sla_days, wave); writes intake_wave.
-- Values are compared the way they are stored (account number trimmed, currencies upper-cased), so re-staging the
-- very same row is an identical no-op, never a PROGRAM_IN_USE change.

-- name: evaluate
CREATE TEMP TABLE intake_wave ON COMMIT DROP AS
WITH s AS (
    SELECT b.* FROM intake_batch_benefit_program b, intake_params p WHERE b.wave = p.wave
),
checked AS (
    SELECT s.*,
           upper(btrim(s.sponsor_bank_account_currency)) AS account_currency,
           upper(btrim(s.disbursement_currency_code)) AS currency,
           c1.currency_code IS NOT NULL AS account_currency_known,
           c2.currency_code IS NOT NULL AS currency_known,
           x.benefit_program_mnemonic IS NOT NULL AS exists_already,
           EXISTS (SELECT 1 FROM bridge.disbursement_envelope e
                   WHERE e.benefit_program_mnemonic = s.benefit_program_mnemonic) AS has_envelopes,
           x.benefit_program_name IS NOT DISTINCT FROM s.benefit_program_name
             AND x.funding_org_code IS NOT DISTINCT FROM s.funding_org_code
             AND x.funding_org_name IS NOT DISTINCT FROM s.funding_org_name
             AND x.sponsor_bank_code IS NOT DISTINCT FROM s.sponsor_bank_code
             AND x.sponsor_bank_account_number IS NOT DISTINCT FROM btrim(s.sponsor_bank_account_number)
             AND x.sponsor_bank_branch_code IS NOT DISTINCT FROM s.sponsor_bank_branch_code
             AND x.sponsor_bank_account_currency IS NOT DISTINCT FROM upper(btrim(s.sponsor_bank_account_currency))
             AND x.disbursement_currency_code IS NOT DISTINCT FROM upper(btrim(s.disbursement_currency_code))
             AND x.id_mapper_resolution_required IS NOT DISTINCT FROM coalesce(s.id_mapper_resolution_required, false)
             AS identical,
           (x.sponsor_bank_code IS DISTINCT FROM s.sponsor_bank_code
             OR x.sponsor_bank_account_number IS DISTINCT FROM btrim(s.sponsor_bank_account_number)
             OR x.sponsor_bank_account_currency IS DISTINCT FROM upper(btrim(s.sponsor_bank_account_currency))
             OR x.disbursement_currency_code IS DISTINCT FROM upper(btrim(s.disbursement_currency_code))
             OR x.id_mapper_resolution_required IS DISTINCT FROM coalesce(s.id_mapper_resolution_required, false))
             AS money_path_changed
    FROM s
    LEFT JOIN bridge.benefit_program_configuration x ON x.benefit_program_mnemonic = s.benefit_program_mnemonic
    LEFT JOIN bridge.currency c1 ON c1.currency_code = upper(btrim(s.sponsor_bank_account_currency))
    LEFT JOIN bridge.currency c2 ON c2.currency_code = upper(btrim(s.disbursement_currency_code))
)
SELECT checked.*,
       CASE
           WHEN benefit_program_mnemonic IS NULL OR btrim(benefit_program_mnemonic, E' \t\n\r\f\v') = ''
                OR length(benefit_program_mnemonic) > 64 THEN 'INVALID_PROGRAM_MNEMONIC'
           WHEN exists_already AND identical THEN NULL
           WHEN benefit_program_name IS NULL OR btrim(benefit_program_name, E' \t\n\r\f\v') = ''
                THEN 'INVALID_PROGRAM_NAME'
           WHEN sponsor_bank_code IS NULL OR btrim(sponsor_bank_code, E' \t\n\r\f\v') = ''
                THEN 'INVALID_SPONSOR_BANK_CODE'
           WHEN sponsor_bank_account_number IS NULL OR btrim(sponsor_bank_account_number, E' \t\n\r\f\v') = ''
                OR length(btrim(sponsor_bank_account_number)) > 34 THEN 'INVALID_SPONSOR_BANK_ACCOUNT_NUMBER'
           WHEN NOT account_currency_known THEN 'INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY'
           WHEN NOT currency_known THEN 'INVALID_DISBURSEMENT_CURRENCY_CODE'
           WHEN exists_already AND has_envelopes AND money_path_changed THEN 'PROGRAM_IN_USE'
       END AS error_code,
       exists_already AND identical AS is_noop
FROM checked;

-- name: apply
INSERT INTO bridge.benefit_program_configuration AS p (
    benefit_program_mnemonic, benefit_program_name, funding_org_code, funding_org_name, sponsor_bank_code,
    sponsor_bank_account_number, sponsor_bank_branch_code, sponsor_bank_account_currency, disbursement_currency_code,
    id_mapper_resolution_required, source_staging_id)
SELECT benefit_program_mnemonic, benefit_program_name, funding_org_code, funding_org_name, sponsor_bank_code,
       btrim(sponsor_bank_account_number), sponsor_bank_branch_code, account_currency, currency,
       coalesce(id_mapper_resolution_required, false), staging_id
FROM intake_wave WHERE error_code IS NULL AND NOT is_noop
ON CONFLICT (benefit_program_mnemonic) DO UPDATE SET
    benefit_program_name = excluded.benefit_program_name,
    funding_org_code = excluded.funding_org_code,
    funding_org_name = excluded.funding_org_name,
    sponsor_bank_code = excluded.sponsor_bank_code,
    sponsor_bank_account_number = excluded.sponsor_bank_account_number,
    sponsor_bank_branch_code = excluded.sponsor_bank_branch_code,
    sponsor_bank_account_currency = excluded.sponsor_bank_account_currency,
    disbursement_currency_code = excluded.disbursement_currency_code,
    id_mapper_resolution_required = excluded.id_mapper_resolution_required,
    source_staging_id = excluded.source_staging_id,
    updated_at = now();

-- name: record
-- Each row's result (staging_ctid, error_code, error_detail); service.py writes it back to the staged row.
SELECT staging_ctid, error_code,
       CASE error_code
           WHEN 'INVALID_PROGRAM_MNEMONIC' THEN 'benefit_program_mnemonic must be present and at most 64 characters'
           WHEN 'INVALID_PROGRAM_NAME' THEN 'benefit_program_name must be present'
           WHEN 'INVALID_SPONSOR_BANK_CODE' THEN 'sponsor_bank_code must be present'
           WHEN 'INVALID_SPONSOR_BANK_ACCOUNT_NUMBER' THEN 'sponsor_bank_account_number must be present and at most 34 characters'
           WHEN 'INVALID_SPONSOR_BANK_ACCOUNT_CURRENCY' THEN format('sponsor_bank_account_currency %s is not an ISO 4217 currency code', coalesce(sponsor_bank_account_currency, 'NULL'))
           WHEN 'INVALID_DISBURSEMENT_CURRENCY_CODE' THEN format('disbursement_currency_code %s is not an ISO 4217 currency code', coalesce(disbursement_currency_code, 'NULL'))
           WHEN 'PROGRAM_IN_USE' THEN format('program %s already has envelopes: its sponsor bank, account, currencies and ID mapper setting cannot change (create a new program)', benefit_program_mnemonic)
           ELSE CASE WHEN is_noop THEN 'identical to the current configuration: nothing changed'
                     WHEN exists_already THEN 'program configuration updated'
                     ELSE 'program configuration created' END
       END AS error_detail
FROM intake_wave;
