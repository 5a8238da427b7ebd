-- Files seen in the statement inbox. A file is picked up once: identified by name, size and modification time
-- when listed, and by content (sha256) when imported, so an identical file re-sent under any name does nothing.

CREATE TABLE bridge.inbox_file (
    inbox_file_id       bigserial PRIMARY KEY,
    file_name           text NOT NULL,
    file_size           bigint NOT NULL,
    file_mtime_ns       bigint NOT NULL,
    file_sha256         char(64),
    statement_id        text,               -- the statement partition (first file with this content)
    inbox_status        text NOT NULL CHECK (inbox_status IN ('NEW', 'DUPLICATE', 'REFUSED', 'IMPORTED',
                                                              'QUARANTINED')),
    detail              text,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_name, file_size, file_mtime_ns)
);
CREATE INDEX inbox_file_sha_idx ON bridge.inbox_file (file_sha256);
