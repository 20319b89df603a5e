//! Creating a session folder on disk: `in/` (host-owned, mounted read-only), `out/`
//! (container-owned), `work/` (the agent's working directory), and the two session files.
//!
//! `outbound.db` is created here, before any container has seen the folder; afterwards the
//! host only ever opens it read-only.

use crate::db::DbError;
use protocol::SessionPaths;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Creates the folder layout and both session files if missing. `owner` (uid, gid) is given
/// to `out/`, `work/` and what lies in `out/`, so a non-root container can write them.
pub fn create(paths: &SessionPaths, owner: Option<(u32, u32)>) -> Result<(), DbError> {
    let fresh = !paths.outbound_db().exists();
    for dir in [
        paths.in_dir(),
        paths.in_dir().join(protocol::paths::INBOX),
        paths.out_dir(),
        paths.work_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| io("creating", &dir, source))?;
    }
    set_mode(&paths.in_dir(), 0o755)?;
    if fresh {
        std::fs::create_dir_all(paths.out_dir().join(protocol::paths::OUTBOX))
            .map_err(|source| io("creating", &paths.out_dir(), source))?;
        protocol::schema::create_outbound(&paths.outbound_db())?;
    }
    // Only on creation: later, `out/` holds what the container wrote, and a chown there
    // could follow a planted symlink out of the folder.
    if let (true, Some((uid, gid))) = (fresh, owner) {
        for path in [
            paths.out_dir(),
            paths.out_dir().join(protocol::paths::OUTBOX),
            paths.outbound_db(),
            paths.work_dir(),
        ] {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|source| io("chown", &path, source))?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), DbError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| io("chmod", path, source))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> DbError {
    DbError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
