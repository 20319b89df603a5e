-- crabpot.db, version 3: scheduled tasks, questions asked in chats, and agents that create
-- agents. Never edit a released migration: add the next number instead.

-- Approvals gain the kind `create_agent` (an agent asked for a child agent) and a JSON
-- `payload` saying what was asked. SQLite cannot change a CHECK in place, so the table is
-- rebuilt; the log is rebuilt with it so its foreign key follows (dropping a parent table
-- with foreign keys on would delete the log's rows).
CREATE TABLE approvals_v3 (
    id                 TEXT PRIMARY KEY NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('sender', 'channel', 'create_agent')),
    status             TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    agent_group_id     TEXT REFERENCES agent_groups (id) ON DELETE CASCADE,
    messaging_group_id TEXT REFERENCES messaging_groups (id) ON DELETE CASCADE,
    requester          TEXT NOT NULL,
    summary            TEXT NOT NULL,
    approvers          TEXT NOT NULL DEFAULT '[]',
    held               TEXT NOT NULL DEFAULT '[]',
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    decided_by         TEXT,
    decided_at         INTEGER,
    reason             TEXT,
    payload            TEXT
);
INSERT INTO approvals_v3 (id, kind, status, agent_group_id, messaging_group_id, requester, summary,
    approvers, held, created_at, expires_at, decided_by, decided_at, reason)
SELECT id, kind, status, agent_group_id, messaging_group_id, requester, summary, approvers, held,
    created_at, expires_at, decided_by, decided_at, reason FROM approvals;

CREATE TABLE approval_log_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT NOT NULL REFERENCES approvals_v3 (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
INSERT INTO approval_log_v3 (id, approval_id, at, actor, action, outcome)
SELECT id, approval_id, at, actor, action, outcome FROM approval_log;

DROP TABLE approval_log;
DROP TABLE approvals;
-- Renaming rewrites the log's foreign key to the new name.
ALTER TABLE approvals_v3 RENAME TO approvals;
ALTER TABLE approval_log_v3 RENAME TO approval_log;
CREATE INDEX approvals_status ON approvals (status, created_at);

-- Whether an agent group's agents may create child agents: `approval` (an admin decides, the
-- default), `allow` or `deny`. A child remembers its parent.
ALTER TABLE agent_groups ADD COLUMN create_agent_policy TEXT NOT NULL DEFAULT 'approval'
    CHECK (create_agent_policy IN ('approval', 'allow', 'deny'));
ALTER TABLE agent_groups ADD COLUMN parent_agent_group_id TEXT;

-- Questions remember the chat they were asked in and when the agent stops waiting.
ALTER TABLE questions ADD COLUMN channel_type TEXT;
ALTER TABLE questions ADD COLUMN platform_id TEXT;
ALTER TABLE questions ADD COLUMN thread_id TEXT;
ALTER TABLE questions ADD COLUMN expires_at INTEGER;
CREATE INDEX questions_chat ON questions (question_id, channel_type, platform_id);

-- The earliest time a scheduled row of the session comes due (a copy of its inbound.db), so
-- the sweep can wake sessions without a container when a task is due.
ALTER TABLE sessions ADD COLUMN next_due_at INTEGER;
CREATE INDEX sessions_next_due ON sessions (next_due_at) WHERE next_due_at IS NOT NULL;

-- Which session holds which task (the task's rows live in that session's inbound.db).
CREATE TABLE tasks (
    task_id        TEXT NOT NULL,
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (session_id, task_id)
);
CREATE INDEX tasks_id ON tasks (task_id);
