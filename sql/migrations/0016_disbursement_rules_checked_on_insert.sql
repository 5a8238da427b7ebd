-- Performance at scale (issue 9): the rules on a disbursement's id, amount and bank reference are checked when the
-- row is inserted, not again at every change of its state.
--
-- PostgreSQL evaluates every CHECK constraint of a row each time the row is updated, whatever the update changes. A
-- disbursement changes state three times after intake (resolved, shipped, reconciled), each a bulk UPDATE of the
-- envelope, and three of its five checks are about columns that never change once written: the bank reference's
-- pattern (a regular expression per row), the amount above zero (a numeric comparison) and the id's length.
-- Updating the state of 980,000 disbursements took 3.3-3.5 s with them and 2.6-2.7 s without (median of 4 runs
-- each, embedded server): a fifth of every state change.
--
-- The guarantee is kept:
-- - INSERT: a statement trigger checks the three rules over all the inserted rows at once (one scan of the inserted
--   rows, the transition table the envelope check of 0012 already builds) and refuses the statement with the error
--   the CHECK gave: check_violation (23514), naming the same constraint;
-- - UPDATE of any of the three columns is refused: a disbursement's id, amount and bank reference never change
--   (nothing in the bridge changes them; a different amount is a new disbursement or a rejection at intake).
-- The two checks on the state (the list of states; cancelled_at set exactly when CANCELLED) stay CHECK constraints:
-- they are about what the updates change.

ALTER TABLE bridge.disbursement
    DROP CONSTRAINT disbursement_disbursement_id_check,
    DROP CONSTRAINT disbursement_disbursement_amount_check,
    DROP CONSTRAINT disbursement_bank_reference_check;

CREATE FUNCTION bridge.disbursement_rules_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    constraint_name text;
BEGIN
    SELECT a.disbursement_id, a.disbursement_amount, a.bank_reference INTO bad
    FROM added a
    WHERE NOT (length(a.disbursement_id) BETWEEN 1 AND 64
               AND a.disbursement_amount > 0
               AND a.bank_reference ~ '^[A-Z0-9]+$' AND length(a.bank_reference) <= 16)
    LIMIT 1;
    IF FOUND THEN
        constraint_name := CASE
            WHEN NOT length(bad.disbursement_id) BETWEEN 1 AND 64 THEN 'disbursement_disbursement_id_check'
            WHEN NOT bad.disbursement_amount > 0 THEN 'disbursement_disbursement_amount_check'
            ELSE 'disbursement_bank_reference_check' END;
        RAISE EXCEPTION 'new row for relation "disbursement" violates check constraint "%"', constraint_name
            USING ERRCODE = 'check_violation', SCHEMA = 'bridge', TABLE = 'disbursement', CONSTRAINT = constraint_name,
                  DETAIL = format('disbursement_id %s, disbursement_amount %s, bank_reference %s: the id has 1 to 64 '
                                  'characters, the amount is above zero, the bank reference has 1 to 16 of A-Z and 0-9',
                                  bad.disbursement_id, bad.disbursement_amount, bad.bank_reference);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER disbursement_rules_checked_on_insert AFTER INSERT ON bridge.disbursement
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION bridge.disbursement_rules_checked();

CREATE TRIGGER disbursement_identity_kept
    BEFORE UPDATE OF disbursement_id, disbursement_amount, bank_reference ON bridge.disbursement
    FOR EACH STATEMENT EXECUTE FUNCTION
    bridge.refuse_statement('a disbursement''s id, amount and bank reference never change');
