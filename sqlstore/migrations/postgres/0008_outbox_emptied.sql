-- leased_for: the length of a row's last lease, in microseconds, as its
-- claim or renewal set it. hold_until: how long a row an erasure emptied
-- while a deliverer held it (its payload NULL, kept as a barrier before the
-- person's deletion) stays held, whatever its lease says meanwhile: its
-- lease then plus some lease lengths (sqlstore's emptiedLeases). The
-- erasure's transaction holds the row locked until it commits, and the
-- holder's renewal waits that long, so a slow commit must not let the
-- deletion overtake the holder's call.
ALTER TABLE {p}outbox ADD COLUMN leased_for bigint NOT NULL DEFAULT 0;
ALTER TABLE {p}outbox ADD COLUMN hold_until timestamptz;
