-- Requests whose decision committed, marked in the outbox's transaction (see
-- the PostgreSQL migration).
CREATE TABLE {p}request_marks (
    request_id TEXT PRIMARY KEY
);
