-- Bank statements and reconciliation.

-- One row per statement file received (a file may hold several statements/pages of one or more accounts).
CREATE TABLE bridge.account_statement (
    statement_id                text PRIMARY KEY,           -- the statement partition key
    file_name                   text NOT NULL,
    file_sha256                 char(64) NOT NULL UNIQUE,   -- an identical file is imported once
    file_size                   bigint NOT NULL,
    raw_file                    bytea NOT NULL,
    statement_format            text CHECK (statement_format IN ('MT940', 'CAMT053')),
    account_number              text,
    statement_number            text,
    currency                    char(3),
    opening_balance             numeric,                    -- signed, first page
    closing_balance             numeric,                    -- signed, last page
    statement_date              date,                       -- closing balance date
    number_of_pages             integer,
    number_of_lines             integer,
    number_of_lines_reconciled  integer,
    number_of_lines_reversed    integer,
    number_of_lines_unrelated   integer,
    number_of_lines_in_error    integer,
    statement_process_status    text NOT NULL DEFAULT 'RECEIVED' CHECK (statement_process_status IN
                                    ('RECEIVED', 'PARSED', 'RECONCILED', 'ERROR')),
    statement_process_error_code text,
    statement_process_error_detail text,
    pages                       jsonb,                      -- headers and balances per page
    received_at                 timestamptz NOT NULL DEFAULT now(),
    processed_at                timestamptz,
    CHECK ((statement_process_status = 'ERROR') = (statement_process_error_code IS NOT NULL))
);
CREATE INDEX account_statement_account_idx ON bridge.account_statement (account_number, statement_number);

-- The reconciliation of each shipped disbursement (the seed's remittance_* and reversal_* fields).
CREATE TABLE bridge.disbursement_recon (
    disbursement_id                 text PRIMARY KEY REFERENCES bridge.disbursement,
    bank_disbursement_batch_id      text,
    disbursement_envelope_id        text NOT NULL,
    beneficiary_name_from_bank      text,
    remittance_reference_number     text,
    remittance_statement_id         text,
    remittance_statement_number     text,
    remittance_statement_sequence   text,
    remittance_page                 integer,                    -- page of the statement file (0-based)
    remittance_entry_sequence       integer,
    remittance_entry_date           date,
    remittance_value_date           date,
    reversal_found                  boolean NOT NULL DEFAULT false,
    reversal_statement_id           text,
    reversal_statement_number       text,
    reversal_statement_sequence     text,
    reversal_page                   integer,
    reversal_entry_sequence         integer,
    reversal_entry_date             date,
    reversal_value_date             date,
    reversal_reason                 text,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disbursement_recon_envelope_idx ON bridge.disbursement_recon (disbursement_envelope_id);

-- Statement lines that could not be reconciled, with the reason. Never a failed run.
CREATE TABLE bridge.disbursement_error_recon (
    error_recon_id              bigserial PRIMARY KEY,
    statement_id                text NOT NULL REFERENCES bridge.account_statement,
    statement_number            text,
    statement_sequence          text,
    page                        integer NOT NULL,
    entry_sequence              integer NOT NULL,
    entry_date                  date,
    value_date                  date,
    mark                        text,
    amount                      numeric,
    currency                    char(3),
    bank_reference              text,                       -- the reference found on the line
    disbursement_id             text,                       -- when the line names one of ours
    disbursement_envelope_id    text,
    error_reason                text NOT NULL CHECK (error_reason IN ('INVALID_RECONCILIATION_ID',
                                    'DUPLICATE_DISBURSEMENT', 'INVALID_REVERSAL', 'AMOUNT_MISMATCH',
                                    'CURRENCY_MISMATCH')),
    error_detail                text,
    information                 text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (statement_id, page, entry_sequence)
);
CREATE INDEX disbursement_error_recon_envelope_idx ON bridge.disbursement_error_recon (disbursement_envelope_id);

-- Lines that are not ours (other credits and debits on the program account): recorded, not errors.
CREATE TABLE bridge.statement_unrelated_line (
    statement_id                text NOT NULL REFERENCES bridge.account_statement,
    page                        integer NOT NULL,
    entry_sequence              integer NOT NULL,
    value_date                  date,
    entry_date                  date,
    mark                        text,
    amount                      numeric,
    currency                    char(3),
    customer_reference          text,
    bank_reference              text,
    information                 text,
    PRIMARY KEY (statement_id, page, entry_sequence)
);
