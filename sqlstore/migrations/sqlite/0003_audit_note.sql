-- An audit record may carry its number among its request's records (note): a
-- request's note is stored once, whichever writer appends it. Records
-- appended before have note 0, which is never held back.
ALTER TABLE {p}audit_log ADD COLUMN note INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX {n}audit_log_note ON {p}audit_log (request_id, note) WHERE note > 0;
