//! Session folders and their host-written file: [`SessionStore`] owns every open
//! `inbound.db` connection on one dedicated thread, creates session folders with the
//! `in/` `out/` `work/` split of DESIGN §3, and is the only code that writes `inbound.db`.
//!
//! Key types: [`SessionRef`] (which session, which group folder), [`SessionSetup`] (what is
//! projected into a session's `inbound.db`), [`SessionStore`]; [`owner::Owners`] (which uid a
//! session's files and container belong to), [`disk::SessionDisk`] (its quota disk).

pub mod disk;
pub mod folder;
pub mod owner;

use crate::db::{DbError, DbThread};
use owner::{Owner, Owners};
use protocol::{AgentGroupId, Destination, SessionConfig, SessionId, SessionPaths, SessionRouting};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Which session, in which agent group, with which group folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub id: SessionId,
    pub agent_group: AgentGroupId,
    /// The agent group's folder under `groups/`.
    pub group_folder: String,
}

/// What the host projects into a session's `inbound.db`.
#[derive(Clone, Debug)]
pub struct SessionSetup {
    pub routing: Option<SessionRouting>,
    pub config: SessionConfig,
    pub destinations: Vec<Destination>,
}

/// Most `inbound.db` connections kept open at once; the least recently used is closed beyond.
const MAX_OPEN: usize = 256;

/// State of the session-store thread: open `inbound.db` connections by session.
pub struct OpenFiles {
    sessions_root: PathBuf,
    owners: Owners,
    open: HashMap<SessionId, (Connection, u64)>,
    clock: u64,
}

impl OpenFiles {
    pub fn paths(&self, session: &SessionRef) -> SessionPaths {
        SessionPaths::on_host(
            &self.sessions_root,
            session.agent_group.as_str(),
            session.id.as_str(),
        )
    }

    /// The session's `inbound.db`, opened (and its folder created) on first use.
    pub fn inbound(&mut self, session: &SessionRef) -> Result<&mut Connection, DbError> {
        self.clock += 1;
        let clock = self.clock;
        if !self.open.contains_key(&session.id) {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone());
            if let (true, Some(oldest)) = (self.open.len() >= MAX_OPEN, oldest) {
                self.open.remove(&oldest);
            }
            let paths = self.paths(session);
            // The marker exists once the folder is complete: then a reopen (routing into
            // more sessions than are kept open) skips the folder work, a measured 24% of
            // this thread's time in `make bench`'s router row. A new folder gets its owner's
            // uid (allocated now on a root host) before its marker exists.
            let fresh = !folder::exists(&paths);
            let owner = if fresh {
                let owner = self.owners.resolve_blocking(&session.id)?;
                folder::create(&paths, owner)?;
                Some(owner)
            } else {
                None
            };
            let conn = protocol::schema::open_inbound_writer(&paths.inbound_db())?;
            if let Some(owner) = owner {
                folder::finish_inbound(&paths, owner)?;
            }
            self.open.insert(session.id.clone(), (conn, clock));
        }
        let entry = self
            .open
            .get_mut(&session.id)
            .ok_or_else(|| DbError::NotFound {
                what: "session file",
                id: session.id.to_string(),
            })?;
        entry.1 = clock;
        Ok(&mut entry.0)
    }

    /// Closes a session's connection (before its folder is removed or reset).
    pub fn close(&mut self, session: &SessionId) {
        self.open.remove(session);
    }
}

/// The one writer of every session's `inbound.db`.
pub struct SessionStore {
    thread: DbThread<OpenFiles>,
    sessions_root: PathBuf,
}

impl SessionStore {
    /// Starts the store's thread with one fixed owner: `container_owner` is the uid:gid that
    /// must own `out/` and `work/` (given when the host runs as root); `None` = no chown, and
    /// containers run as the host's own uid (10001 when that is root, which a container may
    /// never be). Tests and tools use this; `serve` uses [`SessionStore::start_with`].
    pub fn start(
        sessions_root: PathBuf,
        container_owner: Option<(u32, u32)>,
    ) -> Result<Arc<Self>, DbError> {
        let owners = match container_owner {
            Some((uid, gid)) => Owners::Fixed { uid, gid },
            None if rustix::process::getuid().is_root() => Owners::HostUser {
                uid: 10001,
                gid: 10001,
            },
            None => Owners::HostUser {
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
            },
        };
        Self::start_with(sessions_root, owners)
    }

    /// Starts the store's thread; new session folders belong to the owners `owners` names.
    pub fn start_with(sessions_root: PathBuf, owners: Owners) -> Result<Arc<Self>, DbError> {
        std::fs::create_dir_all(&sessions_root).map_err(|source| DbError::Io {
            action: "creating",
            path: sessions_root.clone(),
            source,
        })?;
        // The host's alone: containers reach their folders through their mounts only.
        std::fs::set_permissions(
            &sessions_root,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
        )
        .map_err(|source| DbError::Io {
            action: "chmod",
            path: sessions_root.clone(),
            source,
        })?;
        let root = sessions_root.clone();
        let thread = DbThread::spawn("sessions", move || {
            Ok(OpenFiles {
                sessions_root: root,
                owners,
                open: HashMap::new(),
                clock: 0,
            })
        })?;
        Ok(Arc::new(Self {
            thread,
            sessions_root,
        }))
    }

    /// Makes sure the session's folder exists and says who owns it (the uid its container
    /// runs as), on the store's thread.
    pub async fn owner(&self, session: &SessionRef) -> Result<Owner, DbError> {
        let session = session.clone();
        self.thread
            .call(move |files| {
                files.inbound(&session)?;
                files.owners.resolve_blocking(&session.id)
            })
            .await
    }

    pub fn paths(&self, session: &SessionRef) -> SessionPaths {
        SessionPaths::on_host(
            &self.sessions_root,
            session.agent_group.as_str(),
            session.id.as_str(),
        )
    }

    /// Runs `f` with the session's `inbound.db` inside one transaction on the store's thread.
    pub async fn with_inbound<T: Send + 'static>(
        &self,
        session: &SessionRef,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &SessionPaths) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let session = session.clone();
        self.thread
            .call(move |files| {
                let paths = files.paths(&session);
                let conn = files.inbound(&session)?;
                let tx = conn.transaction()?;
                let value = f(&tx, &paths)?;
                tx.commit()?;
                Ok(value)
            })
            .await
    }

    /// Projects routing, config and destinations into the session's `inbound.db`.
    pub async fn project(&self, session: &SessionRef, setup: SessionSetup) -> Result<(), DbError> {
        self.with_inbound(session, move |tx, _| {
            if let Some(routing) = &setup.routing {
                protocol::inbound::set_routing(tx, routing)?;
            }
            protocol::inbound::set_config(tx, &setup.config)?;
            protocol::inbound::set_destinations(tx, &setup.destinations)?;
            Ok(())
        })
        .await
    }

    /// Closes the session's connection on the store's thread.
    pub async fn close(&self, session: &SessionId) -> Result<(), DbError> {
        let session = session.clone();
        self.thread
            .call(move |files| {
                files.close(&session);
                Ok(())
            })
            .await
    }

    pub fn shutdown(&self) {
        self.thread.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{InboundContent, NewInboundRow, Seq};

    #[tokio::test]
    async fn store_creates_folders_and_writes_even_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::start(dir.path().join("sessions"), None).unwrap();
        let session = SessionRef {
            id: SessionId::new("s1"),
            agent_group: AgentGroupId::new("main"),
            group_folder: "main".into(),
        };
        let setup = SessionSetup {
            routing: Some(SessionRouting {
                channel_type: "cli".into(),
                platform_id: "local".into(),
                thread_id: None,
            }),
            config: SessionConfig::default(),
            destinations: vec![],
        };
        store.project(&session, setup).await.unwrap();
        let mut seqs = Vec::new();
        for text in ["a", "b"] {
            let row = NewInboundRow::chat(&InboundContent {
                text: text.into(),
                ..Default::default()
            });
            seqs.push(
                store
                    .with_inbound(&session, move |tx, _| {
                        Ok(protocol::inbound::insert(tx, &row, None)?)
                    })
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(seqs, [Seq(0), Seq(2)]);
        let paths = store.paths(&session);
        for dir in [paths.in_dir(), paths.out_dir(), paths.work_dir()] {
            assert!(dir.is_dir(), "{}", dir.display());
        }
        // Created by the first container start, never with the folder.
        assert!(std::fs::symlink_metadata(paths.outbound_db()).is_err());
        let owner = store.owner(&session).await.unwrap();
        assert_ne!(owner.uid, 0, "a container never runs as root");
        assert!(!owner.chown);
        let reader = protocol::schema::open_inbound_reader(&paths.inbound_db()).unwrap();
        assert_eq!(
            protocol::inbound::routing(&reader)
                .unwrap()
                .unwrap()
                .platform_id,
            "local"
        );
        store.shutdown();
    }
}
