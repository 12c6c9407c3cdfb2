-- Encryption at rest: a trait value, an event's properties or an
-- identifier sealed with the profile's data key (see the PostgreSQL
-- migration).
ALTER TABLE {p}profile_traits ADD COLUMN sealed BLOB;
ALTER TABLE {p}profile_messages ADD COLUMN sealed BLOB;
ALTER TABLE {p}identity_links ADD COLUMN sealed BLOB;
-- The id of the keyring whose keys seal this Store's data (see the
-- PostgreSQL migration). One row.
CREATE TABLE {p}sealing (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    keyring_id BLOB NOT NULL
);
