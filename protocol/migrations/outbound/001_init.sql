-- outbound.db, version 1. The container is the only writer; the host opens it read-only, always.
-- The CHECKs help an honest runner; the host still validates every row it reads as hostile input.

CREATE TABLE messages_out (
    id            TEXT PRIMARY KEY NOT NULL,
    seq           INTEGER NOT NULL UNIQUE CHECK (seq > 0 AND seq % 2 = 1),
    in_reply_to   TEXT,
    created_at    INTEGER NOT NULL,              -- unix milliseconds
    deliver_after INTEGER,                       -- unix milliseconds; NULL = now
    kind          TEXT NOT NULL CHECK (kind IN ('chat', 'system')),
    destination   TEXT,                          -- a name from inbound destinations; NULL = origin chat
    thread_id     TEXT,
    content       TEXT NOT NULL                  -- JSON
);

CREATE TABLE processing_ack (
    message_id TEXT PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
    changed_at INTEGER NOT NULL
);

CREATE TABLE container_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    current_tool    TEXT,
    tool_timeout_ms INTEGER,
    tool_started_at INTEGER,
    updated_at      INTEGER NOT NULL
);
