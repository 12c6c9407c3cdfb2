-- The keyring: each profile's data key, wrapped by the keeper's key (never in
-- clear). Deleting a row shreds the profile's data, wherever copies of its
-- encrypted rows are.
CREATE TABLE {p}keyring (
    profile_id TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created    INTEGER NOT NULL
) WITHOUT ROWID;
