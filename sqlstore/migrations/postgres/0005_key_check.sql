-- The check value of the key the suppression list's hashes are made with
-- (never the key): recorded at first use, replaced by a key rotation in the
-- transaction that rehashes the list. One row.
CREATE TABLE {p}key_check (
    id          integer PRIMARY KEY CHECK (id = 1),
    check_value bytea NOT NULL
);
