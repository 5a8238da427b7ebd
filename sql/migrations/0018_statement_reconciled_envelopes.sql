-- Performance at scale (issue 9): a reconciled statement records the envelopes whose disbursements it remitted or
-- reversed.
--
-- The reconciliation audit (the asset check after every statement) recounts those envelopes. It used to find them by
-- reading every reconciliation kept (bridge.disbursement_recon has no index by statement, on purpose: migration
-- 0015): 0.15-0.5 s per statement at 1,000,000 reconciliations, and a cycle of 10,000,000 runs it after each of its
-- 11 statements. The reconciliation already knows them: it writes them here, in its own transaction. NULL for a
-- statement reconciled before this migration (the audit then reads disbursement_recon as before).
ALTER TABLE bridge.account_statement ADD COLUMN reconciled_envelope_ids text[];

COMMENT ON COLUMN bridge.account_statement.reconciled_envelope_ids IS
    'The envelopes of the disbursements this statement remitted or reversed (sorted), written by its reconciliation; '
    'NULL until reconciled (or when reconciled before migration 0018).';
