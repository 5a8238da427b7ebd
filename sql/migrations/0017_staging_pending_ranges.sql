-- Performance at scale (issue 9): the staged rows still to take are found through the ranges of staging ids each
-- INSERT recorded, not through a partial index of PENDING rows, so that writing a row's result back is a HOT update.
--
-- The partial index (staging_id) WHERE intake_status = 'PENDING' names intake_status in its predicate. PostgreSQL
-- then cannot update a row in place (HOT): every row the intake wrote back got a new version on another page and a
-- new primary key entry. Writing back 1,000,000 staged rows took 6.9-8.1 s; with the ranges and room on each page
-- (fillfactor 50) it takes 3.6-5.5 s (85 % HOT), and PBMS's COPY costs the same (3.5-4.1 s against 3.6-4.0 s: the
-- index entry per row is gone, one statement trigger per INSERT is added). Measured on the embedded server,
-- alternating.
--
-- staging.pending_range: one row per INSERT statement into a staging table (a COPY of a million rows is one row):
-- the lowest and highest staging_id it inserted. Every staged row that can be PENDING lies in a range of its table:
-- - an INSERT (or COPY) records its range in the same transaction, from the rows it inserted (a transition table),
--   so the range is visible exactly when its rows are;
-- - a row set back to PENDING by an UPDATE records a range of its own (nothing in the bridge does that; the rule
--   keeps the promise if an operator ever does).
-- An intake run takes the PENDING rows inside the ranges it sees (its snapshot) and deletes those ranges in the same
-- transaction. Ranges of concurrent INSERTs may overlap: the run merges them first; the PENDING test does the rest.

CREATE TABLE staging.pending_range (
    staging_table       text NOT NULL,
    first_staging_id    bigint NOT NULL,
    last_staging_id     bigint NOT NULL,
    staged_rows         bigint NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (first_staging_id <= last_staging_id)
);
CREATE INDEX pending_range_table_idx ON staging.pending_range (staging_table, first_staging_id);

CREATE FUNCTION staging.pending_range_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO staging.pending_range (staging_table, first_staging_id, last_staging_id, staged_rows)
    SELECT TG_TABLE_NAME, min(staging_id), max(staging_id), count(*) FROM staged
    WHERE intake_status = 'PENDING'
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE FUNCTION staging.pending_again_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO staging.pending_range (staging_table, first_staging_id, last_staging_id, staged_rows)
    VALUES (TG_TABLE_NAME, NEW.staging_id, NEW.staging_id, 1);
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['benefit_program', 'disbursement_envelope', 'envelope_amendment', 'disbursement',
                             'envelope_cancellation', 'disbursement_cancellation'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON staging.%I REFERENCING NEW TABLE AS staged '
                       'FOR EACH STATEMENT EXECUTE FUNCTION staging.pending_range_recorded()',
                       t || '_pending_range', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF intake_status ON staging.%I FOR EACH ROW '
                       'WHEN (NEW.intake_status = ''PENDING'' AND OLD.intake_status <> ''PENDING'') '
                       'EXECUTE FUNCTION staging.pending_again_recorded()', t || '_pending_again', t);
        -- the rows already pending when this migration runs
        EXECUTE format('INSERT INTO staging.pending_range (staging_table, first_staging_id, last_staging_id, '
                       'staged_rows) SELECT %L, min(staging_id), max(staging_id), count(*) FROM staging.%I '
                       'WHERE intake_status = ''PENDING'' HAVING count(*) > 0', t, t);
        EXECUTE format('DROP INDEX staging.%I', t || '_pending_idx');
        -- room on each page for the row's written-back version (applies to pages written from now on)
        EXECUTE format('ALTER TABLE staging.%I SET (fillfactor = 50)', t);
    END LOOP;
END $$;
