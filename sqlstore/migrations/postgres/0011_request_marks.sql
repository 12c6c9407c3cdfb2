-- Requests whose decision a transaction of the profile store applied, marked
-- in that same transaction (profile.RequestMarkingTx): Recover reads the mark
-- when the journal does not show the commit (the process died, or the journal
-- failed, between the two), rather than decide the request again on the
-- person as they are by then. A request id only: nothing personal.
CREATE TABLE {p}request_marks (
    request_id text COLLATE "C" PRIMARY KEY
);
