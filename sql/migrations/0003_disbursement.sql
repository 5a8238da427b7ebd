-- Disbursement pipeline: ID mapper results and payment batches shipped to the sponsor bank.

-- One row per disbursement whose beneficiary was resolved (or not) into a financial address.
-- For programs without ID mapper resolution the beneficiary_id itself is the financial address and is parsed
-- into the same fields at shipping time.
CREATE TABLE bridge.mapper_resolution_details (
    disbursement_id             text PRIMARY KEY REFERENCES bridge.disbursement,
    beneficiary_id              text NOT NULL,
    mapper_status               text NOT NULL CHECK (mapper_status IN ('RESOLVED', 'RESOLUTION_FAILED')),
    failure_reason_code         text,
    financial_address           text,
    fa_type                     text CHECK (fa_type IN ('BANK_ACCOUNT', 'MOBILE_WALLET', 'EMAIL_WALLET')),
    bank_account_number         text,
    bank_code                   text,
    branch_code                 text,
    mobile_number               text,
    email_address               text,
    wallet_provider             text,
    account_holder_name         text,
    resolved_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK ((mapper_status = 'RESOLUTION_FAILED') = (failure_reason_code IS NOT NULL))
);

-- One row per payment batch. The row (and each member's shipment_batch_id) is written BEFORE the bank is called:
-- a retry or a restart re-sends the same batch id with the same payment references, and the bank de-duplicates.
CREATE TABLE bridge.bank_disbursement_batch_status (
    bank_disbursement_batch_id  text PRIMARY KEY CHECK (length(bank_disbursement_batch_id) BETWEEN 1 AND 35),
    disbursement_envelope_id    text NOT NULL REFERENCES bridge.disbursement_envelope,
    batch_sequence              integer NOT NULL CHECK (batch_sequence >= 1),
    number_of_disbursements     integer NOT NULL CHECK (number_of_disbursements >= 1),
    total_disbursement_amount   numeric NOT NULL CHECK (total_disbursement_amount > 0),
    disbursement_payment_status text NOT NULL DEFAULT 'PENDING' CHECK (disbursement_payment_status IN
                                    ('PENDING', 'ACKNOWLEDGED', 'ERROR', 'CANCELLED')),
    number_accepted             integer,
    number_rejected             integer,
    attempts                    integer NOT NULL DEFAULT 0,
    latest_error_code           text,
    latest_timestamp            timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    acknowledged_at             timestamptz,
    UNIQUE (disbursement_envelope_id, batch_sequence)
);
CREATE INDEX disbursement_shipment_batch_idx ON bridge.disbursement (shipment_batch_id)
    WHERE shipment_batch_id IS NOT NULL;
