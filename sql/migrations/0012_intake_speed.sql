-- Performance at scale (issue 9): inserting 1,000,000 accepted disbursements in one intake run.
--
-- 1. "Every disbursement names an envelope that exists" is checked once per INSERT statement instead of once per
--    row. The foreign key bridge.disbursement -> bridge.disbursement_envelope ran one lookup of the envelope (SELECT
--    ... FOR KEY SHARE, through SPI) per inserted row: for a run of 1,000,000 disbursements about 5 to 8 s, as much
--    as the insert itself. The guarantee is kept without it:
--    - inserts: the statement trigger below checks all the rows of an INSERT at once (one anti-join of the inserted
--      rows, a transition table, with the envelopes) and refuses the statement with the foreign key's error code
--      (23503) when a row names no envelope;
--    - a disbursement moved to another envelope (UPDATE OF disbursement_envelope_id; nothing in the bridge does
--      that): every disbursement is checked again after such a statement; the other UPDATEs of bridge.disbursement
--      (each step of the pipeline) no longer pay for a per-row foreign key trigger at all;
--    - an envelope that a check saw stays: an envelope is never deleted (it is cancelled) and its id never changes,
--      the trigger below refuses DELETE, TRUNCATE and any UPDATE of bridge.disbursement_envelope's id. That is also
--      why no lock on the envelope is needed, where the foreign key took one per row.
--    Intake, the only writer of bridge.disbursement, checks the envelope itself anyway
--    (DISBURSEMENT_ENVELOPE_NOT_FOUND); the trigger is the database's own guarantee, for any writer.
-- 2. The bank reference CHECK, the same rule without the bounded repeat: '^[A-Z0-9]{1,16}$' cost about 2.5 us per
--    row (2.5 s per million inserted disbursements), '^[A-Z0-9]+$' with a length test costs a fifth of that.

CREATE FUNCTION bridge.disbursement_envelope_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT a.disbursement_envelope_id INTO missing
        FROM added a
        WHERE NOT EXISTS (SELECT FROM bridge.disbursement_envelope e
                          WHERE e.disbursement_envelope_id = a.disbursement_envelope_id)
        LIMIT 1;
    ELSE
        SELECT d.disbursement_envelope_id INTO missing
        FROM bridge.disbursement d
        WHERE NOT EXISTS (SELECT FROM bridge.disbursement_envelope e
                          WHERE e.disbursement_envelope_id = d.disbursement_envelope_id)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "disbursement" violates foreign key constraint "disbursement_disbursement_envelope_id_fkey"'
            USING ERRCODE = 'foreign_key_violation', SCHEMA = 'bridge', TABLE = 'disbursement',
                  CONSTRAINT = 'disbursement_disbursement_envelope_id_fkey',
                  DETAIL = format('Key (disbursement_envelope_id)=(%s) is not present in table "disbursement_envelope".',
                                  missing);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER disbursement_envelope_exists_on_insert AFTER INSERT ON bridge.disbursement
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.disbursement_envelope_exists();
CREATE TRIGGER disbursement_envelope_exists_on_update AFTER UPDATE OF disbursement_envelope_id ON bridge.disbursement
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.disbursement_envelope_exists();

-- A statement-level guard for tables whose rows must stay: refuses the statement, saying why (the trigger's argument).
CREATE FUNCTION bridge.refuse_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % on %.% refused', TG_ARGV[0], TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME;
END $$;

CREATE TRIGGER disbursement_envelope_kept
    BEFORE DELETE OR TRUNCATE OR UPDATE OF disbursement_envelope_id ON bridge.disbursement_envelope
    FOR EACH STATEMENT EXECUTE FUNCTION
    bridge.refuse_statement('an envelope is never deleted and its id never changes (it is cancelled instead)');

ALTER TABLE bridge.disbursement DROP CONSTRAINT disbursement_disbursement_envelope_id_fkey;

ALTER TABLE bridge.disbursement
    DROP CONSTRAINT disbursement_bank_reference_check,
    ADD CONSTRAINT disbursement_bank_reference_check
        CHECK (bank_reference ~ '^[A-Z0-9]+$' AND length(bank_reference) <= 16);
