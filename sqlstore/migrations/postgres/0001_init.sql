-- The tables of every backend. {p} is the schema and table prefix, {n} the
-- prefix of index names (which PostgreSQL keeps in the table's schema).
-- Keys are COLLATE "C": byte order, the order Go compares strings in, which
-- paging by profile id and message id relies on.

-- Identity graph.
CREATE TABLE {p}identity_profiles (
    profile_id text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL
);

-- ord is the link's position among its profile's links.
CREATE TABLE {p}identity_links (
    id_type    text COLLATE "C" NOT NULL,
    id_value   text COLLATE "C" NOT NULL,
    profile_id text COLLATE "C" NOT NULL,
    ord        bigint NOT NULL,
    linked_at  timestamptz NOT NULL,
    message_id text NOT NULL,
    PRIMARY KEY (id_type, id_value)
);
CREATE INDEX {n}identity_links_profile ON {p}identity_links (profile_id, ord);

CREATE TABLE {p}identity_merges (
    profile_id text COLLATE "C" NOT NULL,
    ord        bigint NOT NULL,
    from_id    text NOT NULL,
    merged_at  timestamptz NOT NULL,
    message_id text NOT NULL
);
CREATE INDEX {n}identity_merges_profile ON {p}identity_merges (profile_id, ord);

-- Profile store.
CREATE TABLE {p}profiles (
    profile_id       text COLLATE "C" PRIMARY KEY,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL,
    first_message_id text NOT NULL,
    last_message_id  text NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    recipients       json
);

CREATE TABLE {p}profile_traits (
    profile_id text COLLATE "C" NOT NULL,
    trait_key  text COLLATE "C" NOT NULL,
    value      json NOT NULL,
    source     text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (profile_id, trait_key)
);

-- One row per recorded message id; the event columns are set (ts not null)
-- when the message carried an event. json, not jsonb: jsonb refuses \u0000.
CREATE TABLE {p}profile_messages (
    profile_id  text COLLATE "C" NOT NULL,
    message_id  text COLLATE "C" NOT NULL,
    event_name  text,
    properties  json,
    ts          timestamptz,
    received_at timestamptz,
    PRIMARY KEY (profile_id, message_id)
);
CREATE INDEX {n}profile_events ON {p}profile_messages (profile_id, ts, message_id) WHERE ts IS NOT NULL;

-- Audience engine.
CREATE TABLE {p}audience_definitions (
    ord          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audience_key text COLLATE "C" NOT NULL,
    query        text NOT NULL
);
CREATE UNIQUE INDEX {n}audience_definitions_key ON {p}audience_definitions (audience_key);

CREATE TABLE {p}audience_states (
    profile_id  text COLLATE "C" PRIMARY KEY,
    state       text NOT NULL,
    next_change timestamptz
);
CREATE INDEX {n}audience_states_due ON {p}audience_states (next_change, profile_id) WHERE next_change IS NOT NULL;

CREATE TABLE {p}audience_members (
    audience_key text COLLATE "C" NOT NULL,
    profile_id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (audience_key, profile_id)
);
CREATE INDEX {n}audience_members_profile ON {p}audience_members (profile_id);

-- Suppression list: keyed hashes, never identifiers.
CREATE TABLE {p}suppressed_identifiers (
    id_hash bytea PRIMARY KEY
);

CREATE TABLE {p}suppressed_profiles (
    profile_id text COLLATE "C" PRIMARY KEY
);

-- Request journal.
CREATE TABLE {p}journal (
    request_id   text COLLATE "C" PRIMARY KEY,
    received     timestamptz NOT NULL,
    request_type text NOT NULL,
    status       text NOT NULL,
    entry        json NOT NULL
);
CREATE INDEX {n}journal_received ON {p}journal (received, request_id);
CREATE INDEX {n}journal_unfinished ON {p}journal (received, request_id) WHERE status IN ('INITIALIZED', 'RUNNING');

-- The keyed hashes of each request's subjects, for List by subject.
CREATE TABLE {p}journal_subjects (
    id_hash    bytea NOT NULL,
    request_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (id_hash, request_id)
);
CREATE INDEX {n}journal_subjects_request ON {p}journal_subjects (request_id);

-- Audit log: append-only.
CREATE TABLE {p}audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    action       text NOT NULL,
    request_id   text NOT NULL,
    request_type text NOT NULL,
    status       text NOT NULL,
    subjects     bytea NOT NULL,
    detail       text NOT NULL,
    hash         bytea NOT NULL
);
