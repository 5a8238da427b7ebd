-- Performance at scale (issue 9): the staging tables' primary keys leave half of each page free.
--
-- Intake writes every staged row's result back into the row (DESIGN 5.1). That is not a HOT update (the partial
-- index of pending rows names intake_status), so each written-back row gets a new version and a new primary key
-- entry beside the old one. With the default fillfactor (90) every leaf page of the key is nearly full: each page
-- first tries to make room by removing old versions (bottom-up deletion, which finds none: they belong to the intake
-- run's own transaction), then splits. With half of each page free, the new entries fit where they are. Measured on
-- 1,000,000 staged disbursements (the write-back alone, alternating): 5.81-6.61 s at 90, 5.06-5.75 s at 50 (35 was
-- no better); PBMS's own inserts cost the same (3.2-3.6 s either way); the key takes 41 MB instead of 22.
--
-- Applies to the pages written from now on (the key grows at its right end as PBMS stages rows); rows staged before
-- have been processed already, so their pages are not rebuilt.
ALTER INDEX staging.benefit_program_pkey SET (fillfactor = 50);
ALTER INDEX staging.disbursement_envelope_pkey SET (fillfactor = 50);
ALTER INDEX staging.envelope_amendment_pkey SET (fillfactor = 50);
ALTER INDEX staging.disbursement_pkey SET (fillfactor = 50);
ALTER INDEX staging.envelope_cancellation_pkey SET (fillfactor = 50);
ALTER INDEX staging.disbursement_cancellation_pkey SET (fillfactor = 50);
