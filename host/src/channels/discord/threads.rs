//! Which guild channels are threads, and of which channel ([`ThreadParents`]). A Discord
//! thread is a channel of its own (types 10, 11, 12) with a `parent_id`; crabpot makes it a
//! thread of its parent's chat (`platform_id` = the parent, `thread_id` = the thread), so one
//! wiring of a channel covers its threads. The gateway tells of threads (GUILD_CREATE's
//! `threads`, THREAD_CREATE, THREAD_UPDATE, CHANNEL_CREATE); a channel not seen yet is
//! looked up once with `GET /channels/{id}`.

use super::rest::{Body, Rest};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// At most this many channels are remembered; past it the map starts again.
const MAX_KNOWN: usize = 100_000;

/// Channel id → its parent when it is a thread (`None`: not a thread).
#[derive(Default)]
pub struct ThreadParents {
    known: Mutex<HashMap<String, Option<String>>>,
}

/// A channel object's id, and its parent when it is a thread.
pub fn thread_of(channel: &Value) -> Option<(String, Option<String>)> {
    let id = channel.get("id")?.as_str()?.to_owned();
    let is_thread = matches!(channel.get("type").and_then(Value::as_u64), Some(10..=12));
    let parent = channel
        .get("parent_id")
        .and_then(Value::as_str)
        .filter(|_| is_thread)
        .map(str::to_owned);
    Some((id, parent))
}

impl ThreadParents {
    /// Remembers what a channel object says.
    pub fn learn(&self, channel: &Value) {
        if let Some((id, parent)) = thread_of(channel) {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(id, parent);
        }
    }

    /// Remembers the channels and threads of a GUILD_CREATE.
    pub fn learn_guild(&self, guild: &Value) {
        for list in ["channels", "threads"] {
            if let Some(channels) = guild.get(list).and_then(Value::as_array) {
                for channel in channels {
                    self.learn(channel);
                }
            }
        }
    }

    /// The parent of `channel_id` when it is a thread, looked up if never seen. A failed
    /// lookup counts as "not a thread" this time and is tried again next time.
    pub async fn parent(&self, rest: &Rest, channel_id: &str) -> Option<String> {
        let cached = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel_id)
            .cloned();
        if let Some(parent) = cached {
            return parent;
        }
        if channel_id.is_empty() || !channel_id.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        match rest
            .call(
                http::Method::GET,
                &format!("/channels/{channel_id}"),
                Body::None,
            )
            .await
        {
            Ok(channel) => {
                self.learn(&channel);
                thread_of(&channel).and_then(|(_, parent)| parent)
            }
            Err(e) => {
                tracing::debug!(error = %e, "discord: looking up a channel failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn threads_name_their_parent() {
        assert_eq!(
            thread_of(&json!({"id": "2", "type": 11, "parent_id": "1"})),
            Some(("2".into(), Some("1".into())))
        );
        assert_eq!(
            thread_of(&json!({"id": "1", "type": 0, "parent_id": "9"})),
            Some(("1".into(), None))
        );
        assert_eq!(thread_of(&json!({"type": 11})), None);
        let parents = ThreadParents::default();
        parents.learn_guild(&json!({"channels": [{"id": "1", "type": 0}],
            "threads": [{"id": "2", "type": 12, "parent_id": "1"}]}));
        let known = parents.known.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(known.get("2"), Some(&Some("1".to_owned())));
        assert_eq!(known.get("1"), Some(&None));
    }
}
