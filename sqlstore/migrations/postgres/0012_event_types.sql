-- Segment's message types: an event keeps the type of the message that made
-- it (track, page, screen, group, alias; NULL for events stored before,
-- which were tracks) and the source that sent it, in clear, as its name is.
-- Its context (ip, userAgent, device, ...) is personal data: it travels in
-- the properties' column, sealed with them, as the JSON array
-- [properties, context] (a plain properties text is an object or null).
ALTER TABLE {p}profile_messages ADD COLUMN event_type text;
ALTER TABLE {p}profile_messages ADD COLUMN source text;
