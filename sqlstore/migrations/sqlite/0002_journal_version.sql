-- The journal's entries are written by compare-and-swap on a version: a
-- writer working from a stale copy is refused instead of undoing a newer
-- state. Entries written before have version 1.
ALTER TABLE {p}journal ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
