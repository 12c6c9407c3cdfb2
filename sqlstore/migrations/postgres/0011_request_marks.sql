-- Requests whose decision committed, marked in the outbox's transaction, the
-- last of a decision's (outbox.RequestMarkingTx): Recover reads the mark
-- when the journal does not show the commit (the process died, or the journal
-- failed, between the two), rather than decide the request again on the
-- person as they are by then. A request id only: nothing personal.
CREATE TABLE {p}request_marks (
    request_id text COLLATE "C" PRIMARY KEY
);
