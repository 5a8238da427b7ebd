-- The PBMS API's replay protection: one row per (sender, message_id) of a write request, written in the same
-- transaction as the request's effect. A replay (same body) gets the stored response and nothing is done again;
-- the same message_id with another body is refused.

CREATE TABLE bridge.api_request (
    sender_id       text NOT NULL,
    message_id      text NOT NULL,
    action          text NOT NULL,                 -- the endpoint, e.g. create_disbursements
    body_sha256     char(64) NOT NULL,             -- of the canonical {action, message}
    status          text NOT NULL CHECK (status IN ('succ', 'rjct')),
    response        text NOT NULL,                 -- the JSON answered, byte for byte (cast to jsonb to query)
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_id, message_id)
);
CREATE INDEX api_request_created_idx ON bridge.api_request (created_at);
