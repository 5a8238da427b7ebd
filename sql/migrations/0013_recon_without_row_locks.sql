-- Performance at scale (issue 9): writing a reconciliation or a resolution result no longer locks the disbursement.
--
-- A foreign key check locks the referenced row (SELECT ... FOR KEY SHARE): inserting the reconciliation of
-- 1,000,000 disbursements wrote a lock into 1,000,000 disbursement rows (every heap page dirtied and logged once
-- more) just before the same transaction updated those rows anyway: about half of the reconciliation's time.
-- The guarantee the two foreign keys gave, "a result row names a disbursement that exists", holds without them:
-- - both tables are only written from a join to bridge.disbursement in the same transaction (reconciliation:
--   the statement's references matched against loaded disbursements; resolution: the envelope's RECEIVED rows);
-- - a disbursement is never deleted: the trigger below (bridge.refuse_statement, from 0012) refuses DELETE and
--   TRUNCATE on bridge.disbursement.

CREATE TRIGGER disbursement_never_deleted BEFORE DELETE OR TRUNCATE ON bridge.disbursement
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.refuse_statement('a disbursement is never deleted');

ALTER TABLE bridge.disbursement_recon DROP CONSTRAINT disbursement_recon_disbursement_id_fkey;
ALTER TABLE bridge.mapper_resolution_details DROP CONSTRAINT mapper_resolution_details_disbursement_id_fkey;
