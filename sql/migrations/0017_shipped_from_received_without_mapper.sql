-- Performance at scale (issue 9): programs without the ID mapper ship straight from RECEIVED.
--
-- For those programs the beneficiary id is the financial address. Account resolution parses every address and
-- records the ones that do not parse as RESOLUTION_FAILED with the reason, as before; it no longer rewrites every
-- other disbursement from RECEIVED to RESOLVED (2.0-2.1 s of UPDATE per 1,000,000 disbursements, and a new version
-- of every row). Instead it records here, once per envelope, when the addresses were parsed: from then on a RECEIVED
-- disbursement of the envelope is as ready to ship as a RESOLVED one. Programs with the ID mapper are unchanged
-- (RECEIVED -> RESOLVED through the mapper). Envelopes resolved before this migration keep their RESOLVED rows,
-- which ship as before.
ALTER TABLE bridge.disbursement_envelope_batch_status ADD COLUMN financial_addresses_parsed_at timestamptz;

COMMENT ON COLUMN bridge.disbursement_envelope_batch_status.financial_addresses_parsed_at IS
    'Programs without the ID mapper: when every beneficiary id of the envelope was parsed as a financial address '
    '(the failures are RESOLUTION_FAILED). From then on its RECEIVED disbursements are ready to ship.';
