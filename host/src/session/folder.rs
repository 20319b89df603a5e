//! Creating a session folder on disk: `in/` (host-owned, mounted read-only), `out/`
//! (container-owned), `work/` (the agent's working directory).
//!
//! The folder rules of DESIGN §3: whether a folder is new is decided by a host-owned marker,
//! `in/inbound.db`, which is created last (by the store, right after [`create`]); `out/`'s
//! contents never decide anything. Once the marker exists the host never creates, re-creates
//! or opens anything in `out/` here, and nothing in this file follows a link
//! (`symlink_metadata`, `lchown`). `out/outbound.db` is not created here: the first container
//! start does that once, inside the session's quota disk (`super::disk`).
//!
//! Modes: the session folder is 0700 to the host; `in/` is root-owned with the session's gid,
//! 02750 (the setgid bit gives what the host writes there later, `inbox/` attachments, the
//! session's group), and `inbound.db` 0640, so the session's own container can read them and
//! no other uid can; `out/` and `work/` are the session uid's, 0700.

use super::owner::Owner;
use crate::db::DbError;
use protocol::SessionPaths;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mode of `in/` and `in/inbox/`: owner root, group the session's gid, setgid.
pub const IN_MODE: u32 = 0o2750;
/// Mode of `inbound.db`: the session's container reads it through its group.
pub const INBOUND_MODE: u32 = 0o640;
/// Mode of `out/` and `work/`, owned by the session's uid.
pub const OWNED_MODE: u32 = 0o700;

/// Whether the session's folder is complete: its marker `in/inbound.db` exists (as anything:
/// a link there is refused when it is opened, never followed here).
pub fn exists(paths: &SessionPaths) -> bool {
    std::fs::symlink_metadata(paths.inbound_db()).is_ok()
}

/// Creates the folder layout of a new session (the marker does not exist yet). Each part may
/// exist from an interrupted earlier try; then it must be a real folder, never a link.
pub fn create(paths: &SessionPaths, owner: Owner) -> Result<(), DbError> {
    let root = paths.root();
    std::fs::create_dir_all(root).map_err(|source| io("creating", root, source))?;
    real_dir(root)?;
    set_mode(root, 0o700)?;
    for dir in [paths.in_dir(), paths.in_dir().join(protocol::paths::INBOX)] {
        make_dir(&dir)?;
        if owner.chown {
            lchown(&dir, 0, owner.gid)?;
        }
        set_mode(&dir, IN_MODE)?;
    }
    // No container has run yet (it needs the marker), so `out/` and `work/` hold nothing a
    // container wrote; `lchown` and `chmod` of the folder itself never follow a link anyway.
    for dir in [paths.out_dir(), paths.work_dir()] {
        make_dir(&dir)?;
        if owner.chown {
            lchown(&dir, owner.uid, owner.gid)?;
        }
        set_mode(&dir, OWNED_MODE)?;
    }
    Ok(())
}

/// Gives a just-created `inbound.db` its owner and mode (the session's container reads it).
pub fn finish_inbound(paths: &SessionPaths, owner: Owner) -> Result<(), DbError> {
    let path = paths.inbound_db();
    if owner.chown {
        lchown(&path, 0, owner.gid)?;
    }
    set_mode(&path, INBOUND_MODE)
}

/// Creates `dir` unless it is already a real folder; a link or a file there is an error.
fn make_dir(dir: &Path) -> Result<(), DbError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => real_dir(dir),
        Err(source) => Err(io("creating", dir, source)),
    }
}

fn real_dir(dir: &Path) -> Result<(), DbError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| io("reading", dir, source))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "{} is not a folder (a link or a file is never followed)",
            dir.display()
        )))
    }
}

fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), DbError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|source| io("chown", path, source))
}

/// `chmod` of a path already checked to be a real folder or file of the host's.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me() -> Owner {
        Owner {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            chown: false,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_the_layout_with_private_modes_and_no_outbound_db() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SessionPaths::at(dir.path().join("s"));
        assert!(!exists(&paths));
        create(&paths, me()).unwrap();
        assert_eq!(mode(paths.root()), 0o700);
        assert_eq!(mode(&paths.in_dir()), IN_MODE);
        assert_eq!(mode(&paths.in_dir().join("inbox")), IN_MODE);
        assert_eq!(mode(&paths.out_dir()), OWNED_MODE);
        assert_eq!(mode(&paths.work_dir()), OWNED_MODE);
        assert!(std::fs::symlink_metadata(paths.outbound_db()).is_err());
        // Interrupted before the marker: running again is fine.
        create(&paths, me()).unwrap();
        std::fs::write(paths.inbound_db(), b"").unwrap();
        finish_inbound(&paths, me()).unwrap();
        assert_eq!(mode(&paths.inbound_db()), INBOUND_MODE);
        assert!(exists(&paths));
    }

    #[test]
    fn planted_links_are_refused_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        for planted in ["out", "work", "in"] {
            let paths = SessionPaths::at(dir.path().join(format!("s-{planted}")));
            std::fs::create_dir_all(paths.root()).unwrap();
            std::os::unix::fs::symlink(&target, paths.root().join(planted)).unwrap();
            let err = create(&paths, me()).unwrap_err();
            assert!(err.to_string().contains("not a folder"), "{err}");
            assert_eq!(mode(&target), 0o755, "the target's mode is untouched");
            assert_eq!(
                std::fs::read_dir(&target).unwrap().count(),
                0,
                "nothing at the target"
            );
        }
        // A marker that is a dangling link counts as existing: nothing is created at its target.
        let paths = SessionPaths::at(dir.path().join("s-marker"));
        create(&paths, me()).unwrap();
        let missing = dir.path().join("missing.db");
        std::os::unix::fs::symlink(&missing, paths.inbound_db()).unwrap();
        assert!(exists(&paths));
        assert!(std::fs::symlink_metadata(&missing).is_err());
    }
}
