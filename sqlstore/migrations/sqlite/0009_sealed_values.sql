-- Encryption at rest: a trait value or an event's properties sealed with the
-- profile's data key (see the PostgreSQL migration).
ALTER TABLE {p}profile_traits ADD COLUMN sealed BLOB;
ALTER TABLE {p}profile_messages ADD COLUMN sealed BLOB;
