-- crabpot.db, version 8: web conversations (the `web` channel, DESIGN §10). Never edit a
-- released migration: add the next number instead.
--
-- A web conversation is a chat (messaging group) of channel type `web` owned by one user:
-- `kind` 'browser' (platform id `<user>/<conversation id>`) or 'api' (the OpenAI-compatible
-- API, platform id `api/<user>/<the request's user field or default>`). `next_event_id` is
-- the id the next event of its log gets, so ids grow by one per conversation.
CREATE TABLE web_conversations (
    id                 TEXT PRIMARY KEY NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    messaging_group_id TEXT NOT NULL UNIQUE REFERENCES messaging_groups (id) ON DELETE CASCADE,
    platform_id        TEXT NOT NULL UNIQUE,
    agent_group_id     TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('browser', 'api')),
    title              TEXT NOT NULL,
    next_event_id      INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX web_conversations_user ON web_conversations (user_id, updated_at);

-- The durable log of a conversation: messages (the person's and the agent's), edits,
-- deletions and completed turns, as the JSON the browser gets (`body`). Drafts and typing
-- are never stored. `message_key` is `<outbound row id>#<piece>` for an agent's message, so
-- a resend after a crash finds the message it already stored instead of adding it twice.
-- `files` is the JSON list of the host paths (under data/files/) of the files a message
-- carries, which the browser downloads by index; it never reaches the browser itself.
CREATE TABLE web_events (
    conversation_id TEXT NOT NULL REFERENCES web_conversations (id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    message_key     TEXT,
    files           TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, event_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX web_events_message_key ON web_events (conversation_id, message_key)
    WHERE message_key IS NOT NULL;
