-- The deliverers' heartbeats: each owner's renewals also say, here, until
-- when it is alive. A row an erasure emptied while an owner held it (payload
-- NULL) stays held while its owner is alive, whatever its own lease says:
-- the erasure's transaction holds the row locked until it commits, and a
-- renewal of the row itself waits that long, while this row of the owner's
-- is never locked by anyone else. So a slow erasure cannot let the lease of
-- a call still running lapse, and the person's deletion overtake it.
CREATE TABLE {p}outbox_owners (
    owner       text COLLATE "C" PRIMARY KEY,
    alive_until timestamptz NOT NULL
);
