-- The tables of every backend. {p} is the table prefix, {n} the prefix of
-- index names. Times are integer Unix microseconds; text compares bytewise
-- (SQLite's BINARY collation), the order Go compares strings in.

-- Identity graph.
CREATE TABLE {p}identity_profiles (
    profile_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- ord is the link's position among its profile's links.
CREATE TABLE {p}identity_links (
    id_type    TEXT NOT NULL,
    id_value   TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    linked_at  INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (id_type, id_value)
) WITHOUT ROWID;
CREATE INDEX {n}identity_links_profile ON {p}identity_links (profile_id, ord);

CREATE TABLE {p}identity_merges (
    profile_id TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    from_id    TEXT NOT NULL,
    merged_at  INTEGER NOT NULL,
    message_id TEXT NOT NULL
);
CREATE INDEX {n}identity_merges_profile ON {p}identity_merges (profile_id, ord);

-- Profile store.
CREATE TABLE {p}profiles (
    profile_id       TEXT PRIMARY KEY,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    first_message_id TEXT NOT NULL,
    last_message_id  TEXT NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    recipients       TEXT
) WITHOUT ROWID;

CREATE TABLE {p}profile_traits (
    profile_id TEXT NOT NULL,
    trait_key  TEXT NOT NULL,
    value      TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (profile_id, trait_key)
) WITHOUT ROWID;

-- One row per recorded message id; the event columns are set (ts not null)
-- when the message carried an event.
CREATE TABLE {p}profile_messages (
    profile_id  TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    event_name  TEXT,
    properties  TEXT,
    ts          INTEGER,
    received_at INTEGER,
    PRIMARY KEY (profile_id, message_id)
) WITHOUT ROWID;
CREATE INDEX {n}profile_events ON {p}profile_messages (profile_id, ts, message_id) WHERE ts IS NOT NULL;

-- Audience engine.
CREATE TABLE {p}audience_definitions (
    ord          INTEGER PRIMARY KEY,
    audience_key TEXT NOT NULL,
    query        TEXT NOT NULL
);
CREATE UNIQUE INDEX {n}audience_definitions_key ON {p}audience_definitions (audience_key);

CREATE TABLE {p}audience_states (
    profile_id  TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    next_change INTEGER
) WITHOUT ROWID;
CREATE INDEX {n}audience_states_due ON {p}audience_states (next_change, profile_id) WHERE next_change IS NOT NULL;

CREATE TABLE {p}audience_members (
    audience_key TEXT NOT NULL,
    profile_id   TEXT NOT NULL,
    PRIMARY KEY (audience_key, profile_id)
) WITHOUT ROWID;
CREATE INDEX {n}audience_members_profile ON {p}audience_members (profile_id);

-- Suppression list: keyed hashes, never identifiers.
CREATE TABLE {p}suppressed_identifiers (
    id_hash BLOB PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE {p}suppressed_profiles (
    profile_id TEXT PRIMARY KEY
) WITHOUT ROWID;

-- Request journal.
CREATE TABLE {p}journal (
    request_id   TEXT PRIMARY KEY,
    received     INTEGER NOT NULL,
    request_type TEXT NOT NULL,
    status       TEXT NOT NULL,
    entry        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX {n}journal_received ON {p}journal (received, request_id);
CREATE INDEX {n}journal_unfinished ON {p}journal (received, request_id) WHERE status IN ('INITIALIZED', 'RUNNING');

-- The keyed hashes of each request's subjects, for List by subject.
CREATE TABLE {p}journal_subjects (
    id_hash    BLOB NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (id_hash, request_id)
) WITHOUT ROWID;
CREATE INDEX {n}journal_subjects_request ON {p}journal_subjects (request_id);

-- Audit log: append-only.
CREATE TABLE {p}audit_log (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    action       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    request_type TEXT NOT NULL,
    status       TEXT NOT NULL,
    subjects     BLOB NOT NULL,
    detail       TEXT NOT NULL,
    hash         BLOB NOT NULL
);
