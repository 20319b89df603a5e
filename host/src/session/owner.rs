//! Who a session's files belong to and which uid its container runs as (DESIGN §3, §5):
//! [`Owners`] is the host-wide rule, [`Owner`] its answer for one session.
//!
//! On a root host every session gets a uid of its own from `container_uid_range` (allocated in
//! the central DB when its folder is created, kept for the session's life; gid = uid), so no
//! session's container can read another's files. A configured `container_user` overrides that
//! with one fixed uid for all. A host that is not root cannot chown: its containers run as the
//! host's own uid, as they always did, and the log says that sessions are not isolated by uid.

use crate::db::central::uids::{self, UidRange};
use crate::db::{DbError, DbThread};
use protocol::SessionId;
use rusqlite::Connection;
use std::sync::Arc;

/// The host-wide ownership rule.
#[derive(Clone)]
pub enum Owners {
    /// The host is not root (a developer's machine, unit tests): the host's own uid:gid,
    /// nothing is chowned.
    HostUser { uid: u32, gid: u32 },
    /// A root host with `container_user` set: every session's container runs as this uid:gid.
    Fixed { uid: u32, gid: u32 },
    /// A root host: each session its own uid from `range`, kept in the central DB.
    PerSession {
        range: UidRange,
        central: Arc<DbThread<Connection>>,
    },
}

/// The uid:gid one session's container runs as and its `out/` and `work/` belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// Whether the host chowns the session's files to it (only a root host can).
    pub chown: bool,
}

impl Owner {
    /// `uid:gid`, as a container spec names its user.
    pub fn user(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

impl Owners {
    /// The rule for this process: per-session uids when root, unless `fixed` is configured.
    pub fn for_host(
        fixed: Option<(u32, u32)>,
        range: UidRange,
        central: Arc<DbThread<Connection>>,
    ) -> Owners {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        match (uid, fixed) {
            (0, Some((uid, gid))) => Owners::Fixed { uid, gid },
            (0, None) => Owners::PerSession { range, central },
            // Not root: a configured user cannot be given the files either.
            (_, _) => Owners::HostUser { uid, gid },
        }
    }

    /// What the log and `crabpot status` say about it.
    pub fn describe(&self) -> String {
        match self {
            Owners::HostUser { uid, .. } => format!(
                "every container runs as the host's own uid {uid} (the host is not root, so \
                 sessions are not isolated from each other by uid)"
            ),
            Owners::Fixed { uid, gid } => {
                format!("every container runs as {uid}:{gid} (container_user)")
            }
            Owners::PerSession { range, .. } => {
                format!("one uid per session from {range} (container_uid_range)")
            }
        }
    }

    /// The session's owner, allocating its uid on first use. Blocks on the central DB's
    /// thread, so it is called from the session store's thread only.
    pub fn resolve_blocking(&self, session: &SessionId) -> Result<Owner, DbError> {
        match self {
            Owners::HostUser { uid, gid } => Ok(Owner {
                uid: *uid,
                gid: *gid,
                chown: false,
            }),
            Owners::Fixed { uid, gid } => Ok(Owner {
                uid: *uid,
                gid: *gid,
                chown: true,
            }),
            Owners::PerSession { range, central } => {
                let (range, session) = (*range, session.clone());
                let uid =
                    central.call_blocking(move |conn| uids::allocate(conn, &session, range))?;
                Ok(Owner {
                    uid,
                    gid: uid,
                    chown: true,
                })
            }
        }
    }
}
