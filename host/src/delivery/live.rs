//! Drafts from the runner into the bridge ([`LiveInput`], the proxy's `LiveSink`): a turn's
//! start and the text of its reply as it streams, for the session's live stream
//! (`bridge::live`). The draft goes where the final reply would: its route is resolved from
//! the central DB exactly as delivery resolves a reply to the origin, never from anything the
//! container said. The proxy has already parsed the event as hostile input and capped its
//! rate; here it is queued and never waited on.

use super::Delivery;
use super::route::Route;
use crate::bridge::live::{ORIGIN_TIMEOUT, Refusal};
use crate::edge::ChatAddress;
use crate::proxy::{LiveRefusal, LiveSink, SessionLabel};
use crate::session::SessionRef;
use protocol::MessageId;
use protocol::live::LiveEvent;
use std::sync::{Arc, Weak};

/// The proxy's way into delivery's live streams.
pub struct LiveInput {
    delivery: Weak<Delivery>,
}

impl LiveInput {
    pub fn new(delivery: &Arc<Delivery>) -> Arc<Self> {
        Arc::new(Self {
            delivery: Arc::downgrade(delivery),
        })
    }
}

impl LiveSink for LiveInput {
    fn live(&self, session: &SessionLabel, event: LiveEvent) -> Result<(), LiveRefusal> {
        let Some(delivery) = self.delivery.upgrade() else {
            return Err(LiveRefusal::NotStreaming);
        };
        let streams = Arc::clone(delivery.bridge.streams());
        let id = &session.session_id;
        let begin = |key: &MessageId| {
            let origin = origin(Arc::clone(&delivery), session.clone(), key.clone());
            streams.begin(id, key.as_str(), origin);
        };
        let result = match event {
            LiveEvent::TurnStarted { in_reply_to } => {
                begin(&in_reply_to);
                Ok(())
            }
            LiveEvent::Draft {
                in_reply_to,
                offset,
                text,
            } => match streams.append(id, in_reply_to.as_str(), offset, &text) {
                // A draft with no turn_started before it (a lost post): open it now.
                Err(Refusal::NotStreaming) if offset == 0 => {
                    begin(&in_reply_to);
                    streams.append(id, in_reply_to.as_str(), offset, &text)
                }
                other => other,
            },
            LiveEvent::DraftReset { in_reply_to } => streams.reset(id, in_reply_to.as_str()),
        };
        result.map_err(|refusal| match refusal {
            Refusal::OffsetMismatch { have } => LiveRefusal::OffsetMismatch { have },
            Refusal::NotStreaming => LiveRefusal::NotStreaming,
        })
    }
}

/// Where the reply to `key` goes, if it is a chat: the route delivery would give the final
/// row (`None` for another agent, or when it cannot be known in time).
async fn origin(
    delivery: Arc<Delivery>,
    session: SessionLabel,
    key: MessageId,
) -> Option<ChatAddress> {
    let lookup = async {
        let group = session.agent_group_id.clone();
        let folder = delivery
            .central
            .call(move |conn| Ok(crate::db::central::agent_group(conn, &group)?.folder))
            .await
            .ok()?;
        let session = SessionRef {
            id: session.session_id,
            agent_group: session.agent_group_id,
            group_folder: folder,
        };
        match delivery.route(&session, None, Some(&key)).await {
            Ok(Route::Chat(address)) => Some(address),
            Ok(Route::Agent { .. } | Route::Return { .. } | Route::Fanout { .. }) | Err(_) => None,
        }
    };
    tokio::time::timeout(ORIGIN_TIMEOUT, lookup)
        .await
        .ok()
        .flatten()
}
