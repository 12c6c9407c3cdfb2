-- Erasure shreds, then purges: an erasure that destroys a person's data key
-- deletes their profile, traits, links and any event kept in clear in its
-- commit, and leaves their sealed events, unreadable from that commit on,
-- for a purge after it (Purge in the Store's profile view), so the time
-- until a person is unreadable does not grow with their events. A profile
-- listed here has rows left to purge.
CREATE TABLE {p}profile_purges (
    profile_id text COLLATE "C" PRIMARY KEY
);
-- The events kept in clear (written before sealing, or without keys), which
-- the erasure's commit deletes: found without reading the sealed ones.
CREATE INDEX {n}profile_messages_clear ON {p}profile_messages (profile_id) WHERE sealed IS NULL AND ts IS NOT NULL;
