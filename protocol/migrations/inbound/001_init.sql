-- inbound.db, version 1. The host is the only writer; the container opens it read-only.

CREATE TABLE messages_in (
    id                TEXT PRIMARY KEY NOT NULL,
    seq               INTEGER NOT NULL UNIQUE CHECK (seq >= 0 AND seq % 2 = 0),
    kind              TEXT NOT NULL CHECK (kind IN ('chat', 'task', 'webhook', 'system')),
    created_at        INTEGER NOT NULL,          -- unix milliseconds
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'completed', 'failed', 'paused', 'cancelled')),
    process_after     INTEGER,                   -- unix milliseconds; NULL = now
    recurrence        TEXT,                      -- cron expression
    series_id         TEXT,
    tries             INTEGER NOT NULL DEFAULT 0,
    trigger           INTEGER NOT NULL DEFAULT 1 CHECK (trigger IN (0, 1)),
    on_wake           INTEGER NOT NULL DEFAULT 0 CHECK (on_wake IN (0, 1)),
    channel_type      TEXT,
    platform_id       TEXT,
    thread_id         TEXT,
    source_session_id TEXT,
    content           TEXT NOT NULL              -- JSON
);
CREATE INDEX messages_in_status ON messages_in (status, process_after);

CREATE TABLE delivered (
    message_out_id      TEXT PRIMARY KEY NOT NULL,
    seq                 INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('sending', 'delivered', 'failed', 'dropped')),
    platform_message_id TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE destinations (
    name           TEXT PRIMARY KEY NOT NULL,
    display_name   TEXT NOT NULL,
    type           TEXT NOT NULL CHECK (type IN ('channel', 'agent')),
    channel_type   TEXT,
    platform_id    TEXT,
    thread_id      TEXT,
    agent_group_id TEXT
);

CREATE TABLE session_routing (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    channel_type TEXT NOT NULL,
    platform_id  TEXT NOT NULL,
    thread_id    TEXT
);

CREATE TABLE session_config (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL                         -- JSON of protocol::SessionConfig; never a secret
);
