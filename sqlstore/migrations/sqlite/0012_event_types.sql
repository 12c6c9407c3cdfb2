-- An event's message type and source (see the PostgreSQL migration).
ALTER TABLE {p}profile_messages ADD COLUMN event_type TEXT;
ALTER TABLE {p}profile_messages ADD COLUMN source TEXT;
