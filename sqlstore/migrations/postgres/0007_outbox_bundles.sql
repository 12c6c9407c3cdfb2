-- Bundles: a row of kind 'sends' holds several messages for one destination
-- and profile, enqueued together and handed out in order (what a batch owes
-- one person is one row, not one per message). Its payload is a JSON array
-- of [slot, message] pairs; an item's ID is the row's id times 64 plus its
-- slot (1 to 62), a single item's slot is 0. items counts the messages the
-- row still holds, present is the bitmask of their slots, held the slots
-- handed out to the row's owner and not answered or given back yet: the row
-- stays leased while any is. A row of one item keeps 1, 0, 0.
ALTER TABLE {p}outbox ADD COLUMN items integer NOT NULL DEFAULT 1;
ALTER TABLE {p}outbox ADD COLUMN present bigint NOT NULL DEFAULT 0;
ALTER TABLE {p}outbox ADD COLUMN held bigint NOT NULL DEFAULT 0;
