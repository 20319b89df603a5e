-- crabpot.db, version 10: the drafts of replies being written that show as a platform message
-- edited in place (Telegram, Slack, Discord), so a host that restarts mid-reply edits the same
-- message into the final reply instead of leaving the draft behind. Never edit a released
-- migration: add the next number instead.
CREATE TABLE live_drafts (
    session_id          TEXT NOT NULL,
    draft_key           TEXT NOT NULL,
    channel_type        TEXT NOT NULL,
    platform_id         TEXT NOT NULL,
    thread_id           TEXT,
    platform_message_id TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    PRIMARY KEY (session_id, draft_key)
) WITHOUT ROWID;
