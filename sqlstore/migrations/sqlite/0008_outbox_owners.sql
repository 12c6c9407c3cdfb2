-- The deliverers' heartbeats: each owner's renewals also say, here, until
-- when it is alive. A row an erasure emptied while an owner held it (payload
-- NULL) stays held while its owner is alive, whatever its own lease says
-- (see the PostgreSQL migration; SQLite's single writer makes every
-- renewal wait for an erasure's commit, heartbeat or not).
CREATE TABLE {p}outbox_owners (
    owner       TEXT PRIMARY KEY,
    alive_until INTEGER NOT NULL
);
