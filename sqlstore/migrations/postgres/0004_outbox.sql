-- The outbox: what destinations are owed, written with the change that owes
-- it. A row per item; the payload (the message or deletion, without its
-- profile id, which is profile_id) is removed once a request's item answered.
-- Items are handed out per destination and profile in id order, a run from
-- the oldest PENDING one (outbox_queue, also how Purge and Merge find a
-- profile's items; outbox_pending, the claim's scan); owner and lease_until
-- are the lease of the deliverer that holds an item.
CREATE TABLE {p}outbox (
    id          bigserial PRIMARY KEY,
    destination text COLLATE "C" NOT NULL,
    profile_id  text COLLATE "C" NOT NULL,
    request_id  text COLLATE "C" NOT NULL,
    item_key    text COLLATE "C" NOT NULL,
    kind        text NOT NULL,
    payload     text,
    state       text NOT NULL,
    attempts    integer NOT NULL,
    enqueued    timestamptz NOT NULL,
    not_before  timestamptz NOT NULL,
    owner       text,
    lease_until timestamptz,
    last_error  text NOT NULL
);
CREATE INDEX {n}outbox_queue ON {p}outbox (profile_id, destination, id);
CREATE INDEX {n}outbox_pending ON {p}outbox (destination, id) WHERE state = 'PENDING';
CREATE UNIQUE INDEX {n}outbox_key ON {p}outbox (destination, item_key) WHERE item_key <> '';
CREATE INDEX {n}outbox_request ON {p}outbox (request_id) WHERE request_id <> '';
CREATE INDEX {n}outbox_dead ON {p}outbox (id) WHERE state = 'DEAD';
-- A queue: rows come and go in bursts. Vacuumed and analyzed after 1% of it
-- changed rather than 10-20%, so its dead rows do not pile up and the
-- planner's statistics keep up with what it holds.
ALTER TABLE {p}outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
