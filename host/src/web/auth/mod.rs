//! Who is calling the web server: web users (`web:<name>`, argon2id [`passwords`],
//! server-side sessions in HttpOnly SameSite=Strict cookies with a CSRF token each,
//! rate-limited logins ([`limits`]), one-time login links) and API tokens (`crabpot tokens`,
//! stored hashed, scope `chat` or `admin`). Handlers take a [`Caller`] ([`caller`]); the
//! login, logout and session endpoints are in [`login`].
//!
//! Threat model. The server may be reached by anyone who can open its port (a reverse proxy
//! may put it on the internet), and a logged-in browser also visits hostile sites.
//! - Stolen database: it holds no secret that logs in. Passwords are argon2id hashes; session
//!   ids, API tokens and login links are 256 random bits stored as SHA-256 ([`secrets`]).
//! - Password guessing: failed logins are limited per account and per client address, and a
//!   login for a user that does not exist hashes a dummy password, so its timing does not
//!   tell which users exist.
//! - Cross-site requests: the cookie is SameSite=Strict and HttpOnly, and every
//!   state-changing request made with it must also carry the session's CSRF token in
//!   `X-CSRF-Token`, which another site cannot read. `POST /login` refuses a foreign
//!   `Origin`. Bearer tokens are never sent by a browser on its own, so they need no CSRF
//!   token.
//! - Scope: a `chat` token never reaches the admin API, even if its user is an owner; the
//!   admin API over HTTP needs an owner or global admin ([`Caller::require_admin`]).
//! - Logout and revocation are server-side: the session row or the token is gone at once.
//!
//! Not covered here: TLS (a reverse proxy's; set `web_behind_https` so cookies are
//! `Secure`), and anyone who can read `data/` or use `data/crabpot.sock` (the operator).

pub mod caller;
pub mod limits;
pub mod login;
pub mod passwords;
pub use crate::secrets;

pub use crate::db::central::web::Scope;
pub use caller::{Access, Caller, Rejection};

use crate::db::DbThread;
use limits::{LoginLimiter, LoginLimits, SystemClock};
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "crabpot_session";

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The authentication service.
pub struct Auth {
    pub central: Arc<DbThread<Connection>>,
    /// Failed logins, per account and address.
    pub limiter: LoginLimiter,
}

impl Auth {
    pub fn new(central: Arc<DbThread<Connection>>) -> Arc<Auth> {
        Arc::new(Auth {
            central,
            limiter: LoginLimiter::new(LoginLimits::default(), Arc::new(SystemClock)),
        })
    }
}
