-- The outbox: what destinations are owed, written with the change that owes
-- it. A row per item; the payload (the message or deletion, without its
-- profile id, which is profile_id) is removed once a request's item answered.
-- Items are handed out per destination and profile in id order, a run from
-- the oldest PENDING one (outbox_queue, also how Purge and Merge find a
-- profile's items; outbox_pending, the claim's scan); owner and lease_until
-- are the lease of the deliverer that holds an item.
CREATE TABLE {p}outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    profile_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    item_key    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    enqueued    INTEGER NOT NULL,
    not_before  INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER,
    last_error  TEXT NOT NULL
);
CREATE INDEX {n}outbox_queue ON {p}outbox (profile_id, destination, id);
CREATE INDEX {n}outbox_pending ON {p}outbox (destination, id) WHERE state = 'PENDING';
CREATE UNIQUE INDEX {n}outbox_key ON {p}outbox (destination, item_key) WHERE item_key <> '';
CREATE INDEX {n}outbox_request ON {p}outbox (request_id) WHERE request_id <> '';
CREATE INDEX {n}outbox_dead ON {p}outbox (id) WHERE state = 'DEAD';
