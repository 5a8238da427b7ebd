-- Staging tables: PBMS INSERTs here; the bridge only ever sets the intake_* result columns.
-- Column types are strict where PostgreSQL can refuse a wrong value at INSERT (numbers, dates, booleans), so PBMS
-- gets an error at once; everything else is text and is checked by the intake rules, which answer with a code.

CREATE SCHEMA IF NOT EXISTS staging;

CREATE TABLE staging.benefit_program (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    benefit_program_mnemonic        text,
    benefit_program_name            text,
    funding_org_code                text,
    funding_org_name                text,
    sponsor_bank_code               text,
    sponsor_bank_account_number     text,
    sponsor_bank_branch_code        text,
    sponsor_bank_account_currency   text,
    disbursement_currency_code      text,
    id_mapper_resolution_required   boolean,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

CREATE TABLE staging.disbursement_envelope (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    disbursement_envelope_id        text,
    benefit_program_mnemonic        text,
    disbursement_frequency          text,
    cycle_code_mnemonic             text,
    number_of_beneficiaries         bigint,
    number_of_disbursements         bigint,
    total_disbursement_amount       numeric,
    disbursement_currency_code      text,
    disbursement_schedule_date      date,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

-- Absent (NULL) fields keep their current value.
CREATE TABLE staging.envelope_amendment (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    disbursement_envelope_id        text,
    number_of_beneficiaries         bigint,
    number_of_disbursements         bigint,
    total_disbursement_amount       numeric,
    disbursement_schedule_date      date,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

CREATE TABLE staging.disbursement (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    disbursement_id                 text,
    disbursement_envelope_id        text,
    mis_reference_number            text,
    beneficiary_id                  text,
    beneficiary_name                text,
    disbursement_amount             numeric,
    narrative                       text,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

CREATE TABLE staging.envelope_cancellation (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    disbursement_envelope_id        text,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

CREATE TABLE staging.disbursement_cancellation (
    staging_id                      bigserial PRIMARY KEY,
    staged_at                       timestamptz NOT NULL DEFAULT now(),
    disbursement_id                 text,
    intake_status                   text NOT NULL DEFAULT 'PENDING',
    intake_error_code               text,
    intake_error_detail             text,
    intake_processed_at             timestamptz
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['benefit_program', 'disbursement_envelope', 'envelope_amendment', 'disbursement',
                             'envelope_cancellation', 'disbursement_cancellation'] LOOP
        EXECUTE format('ALTER TABLE staging.%I ADD CONSTRAINT %I CHECK (intake_status IN (''PENDING'', ''ACCEPTED'', ''REJECTED''))',
                       t, t || '_intake_status_check');
        EXECUTE format('ALTER TABLE staging.%I ADD CONSTRAINT %I CHECK ((intake_status = ''REJECTED'') = (intake_error_code IS NOT NULL))',
                       t, t || '_error_code_iff_rejected');
        -- The intake sensor and run look for pending rows only: a partial index keeps that cheap at any size.
        EXECUTE format('CREATE INDEX %I ON staging.%I (staging_id) WHERE intake_status = ''PENDING''',
                       t || '_pending_idx', t);
    END LOOP;
END $$;
