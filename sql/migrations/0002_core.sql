-- Core tables owned by the bridge. Names follow OpenG2P's G2P Bridge (singular table names).
-- Money is numeric (exact), identifiers are PBMS's own and are the idempotency keys.

CREATE SCHEMA IF NOT EXISTS bridge;

-- ISO 4217 currencies in use, with their minor units (decimals allowed in an amount).
CREATE TABLE bridge.currency (
    currency_code   char(3) PRIMARY KEY CHECK (currency_code ~ '^[A-Z]{3}$'),
    minor_units     smallint NOT NULL CHECK (minor_units BETWEEN 0 AND 4)
);

INSERT INTO bridge.currency (currency_code, minor_units)
SELECT code, units FROM (VALUES
    ('AED',2),('AFN',2),('ALL',2),('AMD',2),('ANG',2),('AOA',2),('ARS',2),('AUD',2),('AWG',2),('AZN',2),('BAM',2),
    ('BBD',2),('BDT',2),('BGN',2),('BHD',3),('BIF',0),('BMD',2),('BND',2),('BOB',2),('BRL',2),('BSD',2),('BTN',2),
    ('BWP',2),('BYN',2),('BZD',2),('CAD',2),('CDF',2),('CHF',2),('CLP',0),('CNY',2),('COP',2),('CRC',2),('CUP',2),
    ('CVE',2),('CZK',2),('DJF',0),('DKK',2),('DOP',2),('DZD',2),('EGP',2),('ERN',2),('ETB',2),('EUR',2),('FJD',2),
    ('FKP',2),('GBP',2),('GEL',2),('GHS',2),('GIP',2),('GMD',2),('GNF',0),('GTQ',2),('GYD',2),('HKD',2),('HNL',2),
    ('HTG',2),('HUF',2),('IDR',2),('ILS',2),('INR',2),('IQD',3),('IRR',2),('ISK',0),('JMD',2),('JOD',3),('JPY',0),
    ('KES',2),('KGS',2),('KHR',2),('KMF',0),('KPW',2),('KRW',0),('KWD',3),('KYD',2),('KZT',2),('LAK',2),('LBP',2),
    ('LKR',2),('LRD',2),('LSL',2),('LYD',3),('MAD',2),('MDL',2),('MGA',2),('MKD',2),('MMK',2),('MNT',2),('MOP',2),
    ('MRU',2),('MUR',2),('MVR',2),('MWK',2),('MXN',2),('MYR',2),('MZN',2),('NAD',2),('NGN',2),('NIO',2),('NOK',2),
    ('NPR',2),('NZD',2),('OMR',3),('PAB',2),('PEN',2),('PGK',2),('PHP',2),('PKR',2),('PLN',2),('PYG',0),('QAR',2),
    ('RON',2),('RSD',2),('RUB',2),('RWF',0),('SAR',2),('SBD',2),('SCR',2),('SDG',2),('SEK',2),('SGD',2),('SHP',2),
    ('SLE',2),('SOS',2),('SRD',2),('SSP',2),('STN',2),('SVC',2),('SYP',2),('SZL',2),('THB',2),('TJS',2),('TMT',2),
    ('TND',3),('TOP',2),('TRY',2),('TTD',2),('TWD',2),('TZS',2),('UAH',2),('UGX',0),('USD',2),('UYU',2),('UZS',2),
    ('VES',2),('VND',0),('VUV',0),('WST',2),('XAF',0),('XCD',2),('XOF',0),('XPF',0),('YER',2),('ZAR',2),('ZMW',2),
    ('ZWG',2)
) AS c(code, units);

-- Disbursement frequencies: staged values are matched case-insensitively and stored canonical.
CREATE TABLE bridge.disbursement_frequency (
    canonical   text PRIMARY KEY,
    lowered     text NOT NULL UNIQUE
);
INSERT INTO bridge.disbursement_frequency (canonical, lowered)
SELECT f, lower(f) FROM unnest(ARRAY['Daily', 'Weekly', 'Fortnightly', 'Monthly', 'BiMonthly', 'Quarterly',
                                     'SemiAnnually', 'Annually', 'OnDemand']) AS f;

CREATE TABLE bridge.benefit_program_configuration (
    benefit_program_mnemonic        text PRIMARY KEY CHECK (length(benefit_program_mnemonic) BETWEEN 1 AND 64),
    benefit_program_name            text NOT NULL CHECK (btrim(benefit_program_name) <> ''),
    funding_org_code                text,
    funding_org_name                text,
    sponsor_bank_code               text NOT NULL CHECK (btrim(sponsor_bank_code) <> ''),
    sponsor_bank_account_number     text NOT NULL CHECK (length(btrim(sponsor_bank_account_number)) BETWEEN 1 AND 34),
    sponsor_bank_branch_code        text,
    sponsor_bank_account_currency   char(3) NOT NULL REFERENCES bridge.currency,
    disbursement_currency_code      char(3) NOT NULL REFERENCES bridge.currency,
    id_mapper_resolution_required   boolean NOT NULL DEFAULT false,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    source_staging_id               bigint
);
CREATE INDEX benefit_program_account_idx ON bridge.benefit_program_configuration (sponsor_bank_account_number);

CREATE TABLE bridge.disbursement_envelope (
    disbursement_envelope_id        text PRIMARY KEY CHECK (length(disbursement_envelope_id) BETWEEN 1 AND 64),
    benefit_program_mnemonic        text NOT NULL REFERENCES bridge.benefit_program_configuration,
    disbursement_frequency          text NOT NULL REFERENCES bridge.disbursement_frequency,
    cycle_code_mnemonic             text NOT NULL CHECK (btrim(cycle_code_mnemonic) <> ''),
    number_of_beneficiaries         bigint NOT NULL CHECK (number_of_beneficiaries >= 1),
    number_of_disbursements         bigint NOT NULL,
    total_disbursement_amount       numeric NOT NULL CHECK (total_disbursement_amount > 0),
    disbursement_currency_code      char(3) NOT NULL REFERENCES bridge.currency,
    disbursement_schedule_date      date NOT NULL,
    cancellation_status             text NOT NULL DEFAULT 'NOT_CANCELLED'
                                        CHECK (cancellation_status IN ('NOT_CANCELLED', 'CANCELLED')),
    cancellation_timestamp          timestamptz,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    source_staging_id               bigint,
    CHECK (number_of_disbursements >= number_of_beneficiaries),
    CHECK ((cancellation_status = 'CANCELLED') = (cancellation_timestamp IS NOT NULL))
);
CREATE INDEX disbursement_envelope_program_idx ON bridge.disbursement_envelope (benefit_program_mnemonic);

-- One row per envelope: where it stands with the bank, and its counters (kept exact, in the same transaction as the
-- state changes they count; asset checks recount them from bridge.disbursement).
CREATE TABLE bridge.disbursement_envelope_batch_status (
    disbursement_envelope_id            text PRIMARY KEY REFERENCES bridge.disbursement_envelope,
    number_of_disbursements_received    bigint NOT NULL DEFAULT 0 CHECK (number_of_disbursements_received >= 0),
    total_disbursement_amount_received  numeric NOT NULL DEFAULT 0 CHECK (total_disbursement_amount_received >= 0),
    id_mapper_resolution_status         text NOT NULL DEFAULT 'NOT_APPLICABLE' CHECK (id_mapper_resolution_status IN
                                            ('NOT_APPLICABLE', 'PENDING', 'COMPLETED', 'ERROR')),
    id_mapper_resolution_attempts       integer NOT NULL DEFAULT 0,
    id_mapper_resolution_latest_error_code text,
    id_mapper_resolution_latest_timestamp timestamptz,
    funds_available_with_bank           text NOT NULL DEFAULT 'PENDING_CHECK' CHECK (funds_available_with_bank IN
                                            ('PENDING_CHECK', 'FUNDS_AVAILABLE', 'FUNDS_NOT_AVAILABLE', 'ERROR')),
    funds_available_latest_timestamp    timestamptz,
    funds_available_latest_error_code   text,
    funds_available_attempts            integer NOT NULL DEFAULT 0,
    funds_blocked_with_bank             text NOT NULL DEFAULT 'PENDING_CHECK' CHECK (funds_blocked_with_bank IN
                                            ('PENDING_CHECK', 'FUNDS_BLOCK_SUCCESS', 'FUNDS_BLOCK_FAILURE', 'ERROR')),
    funds_blocked_latest_timestamp      timestamptz,
    funds_blocked_latest_error_code     text,
    funds_blocked_attempts              integer NOT NULL DEFAULT 0,
    funds_blocked_reference_number      text,
    funds_blocked_amount                numeric,
    funds_released_amount               numeric,
    funds_released_timestamp            timestamptz,
    -- Set when the bridge starts working on the envelope with the bank: from then on PBMS may not add or cancel
    -- disbursements (DISBURSEMENT_ENVELOPE_SCHEDULE_DATE_REACHED).
    disbursement_started_at             timestamptz,
    shipment_status                     text NOT NULL DEFAULT 'PENDING' CHECK (shipment_status IN
                                            ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'ERROR')),
    shipment_attempts                   integer NOT NULL DEFAULT 0,
    shipment_latest_error_code          text,
    shipment_latest_timestamp           timestamptz,
    number_of_disbursements_shipped     bigint NOT NULL DEFAULT 0,
    total_disbursement_amount_shipped   numeric NOT NULL DEFAULT 0,
    number_of_disbursements_failed      bigint NOT NULL DEFAULT 0,
    number_of_disbursements_reconciled  bigint NOT NULL DEFAULT 0,
    total_disbursement_amount_reconciled numeric NOT NULL DEFAULT 0,
    number_of_disbursements_reversed    bigint NOT NULL DEFAULT 0,
    total_disbursement_amount_reversed  numeric NOT NULL DEFAULT 0,
    updated_at                          timestamptz NOT NULL DEFAULT now()
);

-- Bank references: 'G' + 15 upper-case hex digits, unique across the bridge, SWIFT-safe, fits MT940 :61: (16).
CREATE SEQUENCE bridge.bank_reference_seq CACHE 1000;

CREATE TABLE bridge.disbursement (
    disbursement_id                 text PRIMARY KEY CHECK (length(disbursement_id) BETWEEN 1 AND 64),
    disbursement_envelope_id        text NOT NULL REFERENCES bridge.disbursement_envelope,
    mis_reference_number            text,
    beneficiary_id                  text NOT NULL,
    beneficiary_name                text NOT NULL,
    disbursement_amount             numeric NOT NULL CHECK (disbursement_amount > 0),
    narrative                       text NOT NULL,
    disbursement_status             text NOT NULL DEFAULT 'RECEIVED' CHECK (disbursement_status IN ('RECEIVED',
                                        'CANCELLED', 'RESOLVED', 'RESOLUTION_FAILED', 'SHIPPED', 'FAILED',
                                        'RECONCILED', 'REVERSED')),
    status_reason_code              text,
    status_updated_at               timestamptz NOT NULL DEFAULT now(),
    bank_reference                  varchar(16) NOT NULL UNIQUE CHECK (bank_reference ~ '^[A-Z0-9]{1,16}$'),
    shipment_batch_id               text,
    received_at                     timestamptz NOT NULL DEFAULT now(),
    cancelled_at                    timestamptz,
    shipped_at                      timestamptz,
    source_staging_id               bigint,
    CHECK ((disbursement_status = 'CANCELLED') = (cancelled_at IS NOT NULL))
);
CREATE INDEX disbursement_envelope_status_idx ON bridge.disbursement (disbursement_envelope_id, disbursement_status);

-- Append-only audit trail of state changes.
CREATE TABLE bridge.disbursement_event (
    event_id                bigserial PRIMARY KEY,
    disbursement_id         text NOT NULL,
    disbursement_envelope_id text NOT NULL,
    from_status             text,
    to_status               text NOT NULL,
    reason_code             text,
    detail                  text,
    occurred_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disbursement_event_disbursement_idx ON bridge.disbursement_event (disbursement_id);

CREATE FUNCTION bridge.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER disbursement_event_append_only BEFORE UPDATE OR DELETE ON bridge.disbursement_event
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.refuse_change();

-- Envelope-level events (cancellation, funds, shipment) for the same audit trail, one row per change.
CREATE TABLE bridge.envelope_event (
    event_id                bigserial PRIMARY KEY,
    disbursement_envelope_id text NOT NULL,
    event_type              text NOT NULL,
    detail                  text,
    occurred_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX envelope_event_envelope_idx ON bridge.envelope_event (disbursement_envelope_id);
CREATE TRIGGER envelope_event_append_only BEFORE UPDATE OR DELETE ON bridge.envelope_event
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.refuse_change();

-- One row per intake run, so operators and the sensor can see what each run did.
CREATE TABLE bridge.intake_run (
    intake_run_id           bigserial PRIMARY KEY,
    started_at              timestamptz NOT NULL DEFAULT now(),
    finished_at             timestamptz,
    business_date           date NOT NULL,
    summary                 jsonb NOT NULL DEFAULT '{}'
);
