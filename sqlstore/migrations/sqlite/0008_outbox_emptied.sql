-- leased_for: the length of a row's last lease, in microseconds. hold_until:
-- how long a row an erasure emptied while a deliverer held it stays held,
-- whatever its lease says meanwhile (see the PostgreSQL migration).
ALTER TABLE {p}outbox ADD COLUMN leased_for INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}outbox ADD COLUMN hold_until INTEGER;
