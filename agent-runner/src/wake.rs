//! Noticing new inbound rows: [`Wake`] watches `in/` with `notify` (non-recursive) and falls
//! back to a poll every `poll_interval_ms` — or every 500 ms when no watcher could be made
//! (file events do not cross some VM file shares).
//!
//! The watcher callback only forwards into a channel. Events of our own reads (`open`,
//! `close` without write, attribute changes) are dropped there, or every read would wake
//! the runner again.

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

/// The poll interval when there is no watcher.
pub const POLL_WITHOUT_WATCHER: Duration = Duration::from_millis(500);

/// Why the runner woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeReason {
    FileEvent,
    Poll,
}

/// File events and the fallback poll, merged.
pub struct Wake {
    events: mpsc::UnboundedReceiver<()>,
    /// Kept alive for as long as events are wanted.
    watcher: Option<notify::RecommendedWatcher>,
    poll: Interval,
}

impl Wake {
    /// Watches `in_dir` (when `watch_files`) and polls every `poll_interval`; when the
    /// directory cannot be watched, polls every [`POLL_WITHOUT_WATCHER`] instead. With
    /// `watch_files` false it only polls, at `poll_interval`.
    pub fn new(in_dir: &Path, poll_interval: Duration, watch_files: bool) -> Self {
        let (sender, events) = mpsc::unbounded_channel();
        let (watcher, interval) = if watch_files {
            match watch(in_dir, sender) {
                Ok(watcher) => (Some(watcher), poll_interval),
                Err(error) => {
                    tracing::warn!(dir = %in_dir.display(), %error, "cannot watch for new messages; polling every 500 ms");
                    (None, POLL_WITHOUT_WATCHER)
                }
            }
        } else {
            (None, poll_interval)
        };
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            events,
            watcher,
            poll,
        }
    }

    /// True when file events are being watched.
    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }

    /// Waits for the next file event or poll tick. A burst of events wakes once.
    pub async fn next(&mut self) -> WakeReason {
        let reason = tokio::select! {
            event = self.events.recv() => match event {
                Some(()) => WakeReason::FileEvent,
                // The watcher is gone: only the poll is left.
                None => {
                    self.poll.tick().await;
                    WakeReason::Poll
                }
            },
            _ = self.poll.tick() => WakeReason::Poll,
        };
        while self.events.try_recv().is_ok() {}
        reason
    }
}

fn watch(
    in_dir: &Path,
    sender: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let wake = match event {
            Ok(event) => is_write(&event.kind),
            // An error may mean lost events: look, to be safe.
            Err(_) => true,
        };
        if wake {
            let _ = sender.send(());
        }
    })?;
    watcher.watch(in_dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// True for events that can mean new rows: creates, writes, renames, removes.
fn is_write(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, MetadataKind};

    #[test]
    fn own_reads_do_not_wake() {
        assert!(!is_write(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_write(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_write(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        assert!(is_write(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_write(&EventKind::Create(CreateKind::File)));
    }

    #[tokio::test]
    async fn a_write_in_the_folder_wakes() {
        let dir = tempfile::tempdir().unwrap();
        let mut wake = Wake::new(dir.path(), Duration::from_secs(3600), true);
        assert!(wake.is_watching());
        std::fs::write(dir.path().join("inbound.db"), b"x").unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(10), wake.next()).await;
        assert_eq!(reason.unwrap(), WakeReason::FileEvent);
    }

    #[tokio::test]
    async fn a_missing_folder_falls_back_to_polling() {
        let dir = tempfile::tempdir().unwrap();
        let mut wake = Wake::new(&dir.path().join("missing"), Duration::from_secs(3600), true);
        assert!(!wake.is_watching());
        let reason = tokio::time::timeout(Duration::from_secs(10), wake.next()).await;
        assert_eq!(reason.unwrap(), WakeReason::Poll);
    }

    #[tokio::test]
    async fn without_watching_only_the_poll_wakes() {
        let dir = tempfile::tempdir().unwrap();
        let mut wake = Wake::new(dir.path(), Duration::from_millis(20), false);
        assert!(!wake.is_watching());
        std::fs::write(dir.path().join("inbound.db"), b"x").unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(10), wake.next()).await;
        assert_eq!(reason.unwrap(), WakeReason::Poll);
    }
}
