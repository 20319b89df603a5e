-- crabpot.db, version 1: the host's own state. Host-only, WAL.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE agent_groups (
    id               TEXT PRIMARY KEY NOT NULL,
    folder           TEXT NOT NULL UNIQUE,       -- groups/<folder>/, mounted at /group
    name             TEXT NOT NULL,
    container_config TEXT NOT NULL DEFAULT '{}', -- JSON: per-group limit overrides
    created_at       INTEGER NOT NULL
);

CREATE TABLE messaging_groups (
    id                    TEXT PRIMARY KEY NOT NULL,
    channel_type          TEXT NOT NULL,
    platform_id           TEXT NOT NULL,
    name                  TEXT NOT NULL,
    is_group              INTEGER NOT NULL DEFAULT 0,
    unknown_sender_policy TEXT NOT NULL DEFAULT 'public'
                          CHECK (unknown_sender_policy IN ('strict', 'request_approval', 'public')),
    created_at            INTEGER NOT NULL,
    UNIQUE (channel_type, platform_id)
);

CREATE TABLE wirings (
    id                     TEXT PRIMARY KEY NOT NULL,
    messaging_group_id     TEXT NOT NULL REFERENCES messaging_groups (id) ON DELETE CASCADE,
    agent_group_id         TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    session_mode           TEXT NOT NULL DEFAULT 'shared'
                           CHECK (session_mode IN ('shared', 'per-thread', 'agent-shared')),
    engage_mode            TEXT NOT NULL DEFAULT 'pattern'
                           CHECK (engage_mode IN ('pattern', 'mention', 'mention-sticky')),
    engage_pattern         TEXT,
    sender_scope           TEXT NOT NULL DEFAULT 'all' CHECK (sender_scope IN ('all', 'known')),
    ignored_message_policy TEXT NOT NULL DEFAULT 'drop' CHECK (ignored_message_policy IN ('drop', 'accumulate')),
    priority               INTEGER NOT NULL DEFAULT 0,
    created_at             INTEGER NOT NULL,
    UNIQUE (messaging_group_id, agent_group_id)
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY NOT NULL,
    agent_group_id     TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    session_key        TEXT NOT NULL,            -- derived from the session mode; unique per group
    messaging_group_id TEXT REFERENCES messaging_groups (id) ON DELETE SET NULL,
    thread_id          TEXT,                     -- the origin chat's thread, if any
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    created_at         INTEGER NOT NULL,
    last_active_at     INTEGER NOT NULL,
    UNIQUE (agent_group_id, session_key)
);

CREATE TABLE agent_destinations (
    agent_group_id        TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    display_name          TEXT NOT NULL,
    type                  TEXT NOT NULL CHECK (type IN ('channel', 'agent')),
    messaging_group_id    TEXT REFERENCES messaging_groups (id) ON DELETE CASCADE,
    thread_id             TEXT,
    target_agent_group_id TEXT REFERENCES agent_groups (id) ON DELETE CASCADE,
    created_at            INTEGER NOT NULL,
    PRIMARY KEY (agent_group_id, name)
);

CREATE TABLE dropped_messages (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    direction          TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    reason             TEXT NOT NULL,
    channel_type       TEXT,
    platform_id        TEXT,
    sender             TEXT,
    session_id         TEXT,
    agent_group_id     TEXT,
    message_id         TEXT,
    count              INTEGER NOT NULL DEFAULT 1,
    first_seen         INTEGER NOT NULL,
    last_seen          INTEGER NOT NULL
);
CREATE UNIQUE INDEX dropped_messages_key ON dropped_messages (
    direction, reason, coalesce(channel_type, ''), coalesce(platform_id, ''), coalesce(sender, ''),
    coalesce(session_id, '')
);

CREATE TABLE usage (
    session_id     TEXT NOT NULL,
    agent_group_id TEXT NOT NULL,
    model          TEXT NOT NULL,
    requests       INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (session_id, model)
);

-- Platform message ids already stored, per agent group: a repeat is stored once.
CREATE TABLE seen_platform_messages (
    agent_group_id      TEXT NOT NULL,
    channel_type        TEXT NOT NULL,
    platform_id         TEXT NOT NULL,
    platform_message_id TEXT NOT NULL,
    seen_at             INTEGER NOT NULL,
    PRIMARY KEY (agent_group_id, channel_type, platform_id, platform_message_id)
);
