//! What `crabpot serve` keeps on disk at start: the `main` agent group on first start, the
//! data dir and its files private to the host, and absolute paths.

use super::MAIN_GROUP;
use crate::channels::cli;
use crate::db::central::{self, NewWiring, SessionMode, people};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// On first start: the `main` agent group, wired to the terminal chat, and the terminal's
/// user (`cli:<terminal_user>`, the identity `crabpot chat` uses by default) as the owner
/// when no one is owner yet.
pub(super) fn bootstrap(conn: &mut rusqlite::Connection) -> Result<(), crate::db::DbError> {
    let tx = conn.transaction()?;
    let group = central::ensure_agent_group(&tx, MAIN_GROUP, "Main")?;
    let (chat, created) = central::ensure_messaging_group(
        &tx,
        cli::CHANNEL_TYPE,
        cli::PLATFORM_ID,
        "terminal",
        false,
    )?;
    if created {
        central::ensure_wiring(
            &tx,
            &chat,
            &group.id,
            &NewWiring {
                session_mode: SessionMode::Shared,
                engage_mode: "pattern".into(),
                engage_pattern: Some(".*".into()),
                priority: 0,
                destination_name: "terminal".into(),
            },
        )?;
        let has_owner = people::list_roles(&tx)?
            .iter()
            .any(|grant| grant.role == people::Role::Owner);
        if !has_owner {
            let name = cli::terminal_user();
            let id = cli::user_id(&name);
            people::ensure_user(&tx, &id, Some(&name))?;
            people::grant_role(&tx, &id, people::Role::Owner, None)?;
            tracing::info!(user = %id, "the terminal's user is the owner (first start)");
        }
    }
    tx.commit()?;
    Ok(())
}

/// The data dir and what the host keeps there are the host's alone (DESIGN §3): the data dir,
/// `sessions/` and its group folders, `files/` and `logs/` 0700, the central DB and its WAL
/// files and logs 0600. Fixes what an older version or a default umask left readable; links
/// are never followed.
pub(super) fn make_private(data_dir: &Path) {
    let set = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::symlink_metadata(path) {
            Ok(meta)
                if !meta.file_type().is_symlink() && meta.permissions().mode() & 0o7777 != mode =>
            {
                if let Err(e) =
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot make it private");
                }
            }
            Ok(_) | Err(_) => {}
        }
    };
    set(data_dir, 0o700);
    for name in [
        "crabpot.db",
        "crabpot.db-wal",
        "crabpot.db-shm",
        "crabpot.db-journal",
    ] {
        set(&data_dir.join(name), 0o600);
    }
    for name in ["sessions", "files", "logs"] {
        set(&data_dir.join(name), 0o700);
    }
    let entries = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
    };
    for group in entries(data_dir.join("sessions")) {
        set(&group, 0o700);
        for session in entries(group) {
            set(&session, 0o700);
        }
    }
    for log in entries(data_dir.join("logs")) {
        set(&log, 0o600);
    }
}

pub(super) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{} does not exist", path.display()))
}
