-- crabpot.db, version 2: people, roles, approvals, questions, agent-to-agent sessions and
-- sticky threads (DESIGN §7). Never edit a released migration: add the next number instead.

-- A user is one identity on one platform: `<channel_type>:<handle>`, exactly the sender id
-- the channel adapter reports (e.g. `cli:alice`).
CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- owner: global. admin: global (agent_group_id NULL) or for one agent group.
CREATE TABLE user_roles (
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           TEXT NOT NULL CHECK (role IN ('owner', 'admin')),
    agent_group_id TEXT REFERENCES agent_groups (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    CHECK (role = 'admin' OR agent_group_id IS NULL)
);
CREATE UNIQUE INDEX user_roles_key ON user_roles (user_id, role, coalesce(agent_group_id, ''));

-- Who may talk to an agent group when a wiring's sender scope is `known` or a chat's
-- unknown-sender policy is not `public`.
CREATE TABLE members (
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (agent_group_id, user_id)
);

-- Where a user can be reached privately, per channel (e.g. cli / dm:alice).
CREATE TABLE user_dms (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_type TEXT NOT NULL,
    platform_id  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, channel_type)
);

-- A decision someone must take: let an unknown sender in (`sender`), or wire an unwired chat
-- (`channel`). `approvers` is the JSON array of user ids who may decide; the operator (the
-- admin socket) may always decide. `held` is the JSON array of held inbound events.
CREATE TABLE approvals (
    id                 TEXT PRIMARY KEY NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('sender', 'channel')),
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
    reason             TEXT
);
CREATE INDEX approvals_status ON approvals (status, created_at);

-- Every decision attempt on an approval, accepted or refused.
CREATE TABLE approval_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL
);

-- Questions an agent asked a person (filled in by the question tools).
CREATE TABLE questions (
    id             TEXT PRIMARY KEY NOT NULL,
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id) ON DELETE CASCADE,
    question_id    TEXT NOT NULL,
    title          TEXT NOT NULL,
    question       TEXT NOT NULL,
    options        TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered', 'expired')),
    answer         TEXT,
    answered_by    TEXT,
    created_at     INTEGER NOT NULL,
    answered_at    INTEGER,
    UNIQUE (session_id, question_id)
);

-- A session started by another agent's message: its answers go back to this session.
ALTER TABLE sessions ADD COLUMN source_session_id TEXT;

-- Threads where a mention-sticky wiring was mentioned: the thread's session keeps listening.
CREATE TABLE sticky_threads (
    wiring_id  TEXT NOT NULL REFERENCES wirings (id) ON DELETE CASCADE,
    thread_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (wiring_id, thread_id)
);

-- Drops are kept apart per agent group too.
DROP INDEX dropped_messages_key;
CREATE UNIQUE INDEX dropped_messages_key ON dropped_messages (
    direction, reason, coalesce(agent_group_id, ''), coalesce(channel_type, ''),
    coalesce(platform_id, ''), coalesce(sender, ''), coalesce(session_id, '')
);
