//! The watch on a running session's `out/` ([`Supervisor::watch_out`]): file events that can
//! mean new content in `outbound.db` ([`is_relevant`]) are forwarded to delivery, which reads
//! the session.
//!
//! Only writes count. Opens, reads and read-only closes (`Access`) are dropped: the host's own
//! read-only open of `outbound.db` would otherwise wake delivery again, in a loop that kept a
//! core busy per idle container. Metadata changes (a `touch`) and the heartbeat are dropped
//! too. What is left is still container-driven, so delivery coalesces events per session and
//! backs off a session whose events bring nothing new.

use super::Supervisor;
use crate::config::WakeMode;
use crate::session::SessionRef;
use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind};

/// True when `event` can mean that `outbound.db` has new content: a write, a close after
/// writing, a create, rename or removal of `outbound.db` or its journal, or a queue overflow
/// (`need_rescan`), after which anything may have changed.
pub fn is_relevant(event: &notify::Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    let kind_counts = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Other => false,
    };
    kind_counts
        && event.paths.iter().any(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.starts_with(protocol::paths::OUTBOUND_DB)
                        && name != protocol::paths::HEARTBEAT
                })
        })
}

impl Supervisor {
    /// Watches `out/` and forwards changes to delivery. `None` in poll mode or when the watch
    /// cannot be set up (delivery's periodic pass still covers the session).
    pub(super) fn watch_out(&self, session: &SessionRef) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        if self.config.wake_mode == WakeMode::Poll {
            return None;
        }
        let sender = self.out_changed.clone();
        let target = session.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if is_relevant(&event) {
                // Delivery holds the receiver while the host serves; after that nobody reads.
                let _ = sender.send(target.clone());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch out/; relying on the periodic pass");
                return None;
            }
        };
        let out = self.sessions.paths(session).out_dir();
        match watcher.watch(&out, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch out/; relying on the periodic pass");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, Flag, MetadataKind, RemoveKind, RenameMode};
    use notify::{Event, EventKind};

    fn check(kind: EventKind, file: &str, expected: bool) {
        let event = Event::new(kind).add_path(format!("/data/s/out/{file}").into());
        assert_eq!(is_relevant(&event), expected, "{kind:?} on {file}");
    }

    #[test]
    fn only_events_that_can_mean_new_content_are_forwarded() {
        let db = protocol::paths::OUTBOUND_DB;
        let journal = format!("{db}-journal");
        for (kind, file, expected) in [
            // The host's own read-only open, reads and close: never.
            (
                EventKind::Access(AccessKind::Open(AccessMode::Read)),
                db,
                false,
            ),
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                db,
                false,
            ),
            (EventKind::Access(AccessKind::Read), db, false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                db,
                false,
            ),
            (EventKind::Access(AccessKind::Any), db, false),
            // A touch changes no content.
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                db,
                false,
            ),
            // Writes do.
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                db,
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                db,
                true,
            ),
            (EventKind::Modify(ModifyKind::Any), db, true),
            (EventKind::Create(CreateKind::File), &journal, true),
            (EventKind::Remove(RemoveKind::File), &journal, true),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                db,
                true,
            ),
            // Other files in out/: the heartbeat, the transcript, the outbox.
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                protocol::paths::HEARTBEAT,
                false,
            ),
            (
                EventKind::Create(CreateKind::File),
                "transcript.json",
                false,
            ),
            (EventKind::Other, db, false),
        ] {
            check(kind, file, expected);
        }
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(is_relevant(&overflow), "a queue overflow may hide anything");
    }
}
