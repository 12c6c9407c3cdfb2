-- Requests whose decision a transaction of the profile store applied (see
-- the PostgreSQL migration).
CREATE TABLE {p}request_marks (
    request_id TEXT PRIMARY KEY
);
