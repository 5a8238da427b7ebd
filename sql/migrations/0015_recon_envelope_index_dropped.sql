-- Performance at scale (issue 9): bridge.disbursement_recon loses its index on disbursement_envelope_id.
--
-- No query reads reconciliations by envelope: the status views, the daily report and the API join them by
-- disbursement_id (the primary key), and the reconciliation audit finds a statement's envelopes by its statement id.
-- Keeping the index up to date cost about a quarter of writing a reconciliation: 1,000,000 rows took 3.8 s with it
-- and 2.9 s without (one envelope, measured on the embedded server).
DROP INDEX bridge.disbursement_recon_envelope_idx;
