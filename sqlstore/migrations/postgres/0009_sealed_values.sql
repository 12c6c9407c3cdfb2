-- Encryption at rest: a trait value, an event's properties or an
-- identifier's value sealed with the profile's data key (AES-256-GCM, the
-- keyring's), when the Store was given
-- keys (a Controller gives them unless WithoutEncryption). A sealed trait
-- keeps the JSON null in value, a sealed event NULL properties; a row
-- written in clear (before this migration, or without keys) keeps sealed
-- NULL and is read as it is. A sealed identifier keeps, in id_value, its
-- blind index (keyring.Keys.Index), by which it is looked up.
ALTER TABLE {p}profile_traits ADD COLUMN sealed bytea;
ALTER TABLE {p}profile_messages ADD COLUMN sealed bytea;
ALTER TABLE {p}identity_links ADD COLUMN sealed bytea;
-- The id of the keyring whose keys seal this Store's data (keyring.Keys'
-- KeyringID), recorded at the first SealWith: a later one with another
-- keyring is refused. One row.
CREATE TABLE {p}sealing (
    id         integer PRIMARY KEY CHECK (id = 1),
    keyring_id bytea NOT NULL
);
