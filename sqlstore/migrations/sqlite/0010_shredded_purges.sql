-- Erasure shreds, then purges (see the PostgreSQL migration): a profile
-- listed here has sealed rows left to purge.
CREATE TABLE {p}profile_purges (
    profile_id TEXT PRIMARY KEY
);
-- The events kept in clear, which the erasure's commit deletes.
CREATE INDEX {n}profile_messages_clear ON {p}profile_messages (profile_id) WHERE sealed IS NULL AND ts IS NOT NULL;
