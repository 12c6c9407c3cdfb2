-- The keyring: each profile's data key, wrapped by the keeper's key (never in
-- clear). Deleting a row shreds the profile's data, wherever copies of its
-- encrypted rows are.
CREATE TABLE {p}keyring (
    profile_id text COLLATE "C" PRIMARY KEY,
    wrapped    bytea NOT NULL,
    created    timestamptz NOT NULL
);
