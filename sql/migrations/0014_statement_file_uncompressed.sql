-- Performance at scale (issue 9): the statement file is stored as received, without compression.
--
-- raw_file keeps every byte of the statement (a re-run of reconciliation reads it back, an operator can fetch it).
-- PostgreSQL compressed it with pglz (this server has no lz4) inside the import's transaction: 4.4 s of the 6.5 s
-- spent recording a 1,000,000-line MT940 file (112 MB). EXTERNAL stores it out of line, uncompressed: about 1.7 s,
-- for about 3-4 times the disk space of the compressed file (statement files are a small part of the database:
-- one file per account and day against a row per disbursement in several tables). Rows stored earlier keep their
-- compressed form; both read back the same.
ALTER TABLE bridge.account_statement ALTER COLUMN raw_file SET STORAGE EXTERNAL;
