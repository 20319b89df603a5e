//! [`CommitWatch`]: when the agent-runner's commits to `outbound.db` end, seen from outside.
//!
//! `outbound.db` uses a DELETE journal, so every commit ends by removing
//! `outbound.db-journal`. Watching the session's `out/` folder (inotify, through `notify`) and
//! timestamping those removals splits a warm turn without touching the host or the runner:
//! the runner's claim of the message is the turn's first commit, and its reply (with the
//! `completed` ack) the last one before the reply reaches the client.

use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};

const JOURNAL: &str = "outbound.db-journal";

pub struct CommitWatch {
    _watcher: notify::RecommendedWatcher,
    commits: mpsc::Receiver<Instant>,
}

impl CommitWatch {
    /// Watches `out_dir` (a session's `out/`).
    pub fn start(out_dir: &Path) -> anyhow::Result<CommitWatch> {
        let (sender, commits) = mpsc::channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let now = Instant::now();
                let Ok(event) = event else { return };
                let journal_removed = matches!(event.kind, EventKind::Remove(_))
                    && event
                        .paths
                        .iter()
                        .any(|path| path.file_name().is_some_and(|name| name == JOURNAL));
                if journal_removed {
                    let _ = sender.send(now);
                }
            })
            .context("creating a file watcher")?;
        watcher
            .watch(out_dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", out_dir.display()))?;
        Ok(CommitWatch {
            _watcher: watcher,
            commits,
        })
    }

    /// The commit ends seen since the last call, in order.
    pub fn drain(&self) -> Vec<Instant> {
        self.commits.try_iter().collect()
    }
}
