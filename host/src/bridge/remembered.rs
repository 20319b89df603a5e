//! Drafts remembered across a host restart ([`Remembered`]). Where a platform shows a reply
//! being written as one message edited in place, that message is on the platform for good;
//! a host that restarts mid-reply must edit the same message into the final reply, or the
//! person would see the half-written draft and the reply as two messages.
//!
//! So the draft's platform message is written down through a [`DraftLog`] (the central DB,
//! in the daemon) when it is first sent, and forgotten when its reply took its place or it was
//! removed. At start the host hands the drafts it finds to [`Remembered::adopt`]; the next
//! draft or reply of that turn edits the remembered message, and a later turn of the session,
//! or the end of the turn, removes it.

use crate::edge::{BoxFuture, ChatAddress};
use protocol::SessionId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A draft's platform message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownDraft {
    pub session: SessionId,
    /// The draft's key: the id of the inbound row its reply answers.
    pub key: String,
    pub address: ChatAddress,
    pub platform_id: String,
}

/// Where drafts are written down. Failures are the log's to report: a draft that was not
/// written down is at worst left behind after a crash.
pub trait DraftLog: Send + Sync {
    fn shown(&self, draft: ShownDraft) -> BoxFuture<'_, ()>;
    fn gone(&self, session: SessionId, key: String) -> BoxFuture<'_, ()>;
}

/// The log, and the drafts a restarted host found that no stream has taken up yet.
#[derive(Default)]
pub struct Remembered {
    log: OnceLock<Arc<dyn DraftLog>>,
    found: Mutex<HashMap<(SessionId, String), ShownDraft>>,
}

impl Remembered {
    /// Starts writing drafts down in `log`, with the drafts an earlier run left.
    pub fn adopt(&self, log: Arc<dyn DraftLog>, found: Vec<ShownDraft>) {
        let _ = self.log.set(log);
        let mut map = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        for draft in found {
            map.insert((draft.session.clone(), draft.key.clone()), draft);
        }
    }

    /// A draft's first message went out.
    pub async fn shown(&self, draft: ShownDraft) {
        if let Some(log) = self.log.get() {
            log.shown(draft).await;
        }
    }

    /// A draft's message was replaced by its reply, or removed.
    pub async fn gone(&self, session: &SessionId, key: &str) {
        if let Some(log) = self.log.get() {
            log.gone(session.clone(), key.to_owned()).await;
        }
    }

    /// Takes the found drafts of `session`: the one of `key`, if any, and the others (of
    /// turns that are over).
    pub fn take_session(
        &self,
        session: &SessionId,
        key: &str,
    ) -> (Option<ShownDraft>, Vec<ShownDraft>) {
        let mut map = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return (None, Vec::new());
        }
        let keys: Vec<(SessionId, String)> =
            map.keys().filter(|(s, _)| s == session).cloned().collect();
        let mut same = None;
        let mut others = Vec::new();
        for id in keys {
            if let Some(draft) = map.remove(&id) {
                if draft.key == key {
                    same = Some(draft);
                } else {
                    others.push(draft);
                }
            }
        }
        (same, others)
    }

    /// Takes the found draft of `key` in `session`.
    pub fn take(&self, session: &SessionId, key: &str) -> Option<ShownDraft> {
        let mut map = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.remove(&(session.clone(), key.to_owned()))
    }
}
