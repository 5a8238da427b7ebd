-- Disbursement pipeline bookkeeping: how many pipeline runs started on an envelope (the envelope-ready sensor keys
-- its run requests on it, so a run that died is followed by exactly one new run), and payment batch ids.

ALTER TABLE bridge.disbursement_envelope_batch_status
    ADD COLUMN disbursement_pipeline_runs integer NOT NULL DEFAULT 0,
    ADD COLUMN disbursement_completed_at timestamptz;

-- Payment batch ids: 'PB' + 14 hex digits, unique across the bridge, at most 16 characters (fits any bank's
-- batch reference field).
CREATE SEQUENCE bridge.payment_batch_seq;

-- A recorded run failure, for operators (written by the run-failure sensor).
CREATE TABLE bridge.run_failure (
    run_id                  text PRIMARY KEY,
    job_name                text NOT NULL,
    partition_key           text,
    step_key                text,
    error_message           text,
    failed_at               timestamptz NOT NULL DEFAULT now()
);
