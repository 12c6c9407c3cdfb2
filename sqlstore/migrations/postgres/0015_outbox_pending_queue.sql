-- One destination's queue for one person among the PENDING rows, in order:
-- what a claim probes for a row's head and for the end of its run. With
-- outbox_pending (destination, id) alone, a planner with no statistics yet
-- (a fresh outbox, a burst) chose it for those probes and scanned every
-- pending row of the destination for each head: claims of seconds.
CREATE INDEX {n}outbox_pending_queue ON {p}outbox (destination, profile_id, id) WHERE state = 'PENDING';
