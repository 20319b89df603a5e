-- crabpot.db, version 7: web users and API tokens (DESIGN §10). Secrets are never stored:
-- passwords as argon2id PHC strings, session ids, API tokens and login links as the SHA-256 of
-- the value handed out (`sha256:<hex>`). Times are unix ms. Never edit a released migration:
-- add the next number instead.

-- The password of a web user (`web:<name>`), set with `crabpot users passwd NAME`.
CREATE TABLE web_passwords (
    user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- A logged-in browser: the cookie holds the id, this row its hash. `csrf_token` must come
-- back in X-CSRF-Token on every state-changing request made with the cookie.
CREATE TABLE web_sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

-- `crabpot tokens create`: a Bearer token acting as its user, limited by its scope.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scope        TEXT NOT NULL CHECK (scope IN ('chat', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- `crabpot web login-link`: works once, before `expires_at`.
CREATE TABLE login_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
