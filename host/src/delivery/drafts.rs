//! The central DB as the bridge's [`DraftLog`] ([`CentralDrafts`]): where drafts shown as a
//! platform message are written down (`db::central::live_drafts`), so a restarted host edits
//! the same message into the reply (`bridge::remembered`).

use crate::bridge::remembered::{DraftLog, ShownDraft};
use crate::db::central::live_drafts::{self, LiveDraft};
use crate::db::{DbError, DbThread};
use crate::edge::{BoxFuture, ChatAddress};
use protocol::SessionId;
use rusqlite::Connection;
use std::sync::Arc;

pub struct CentralDrafts {
    central: Arc<DbThread<Connection>>,
}

impl CentralDrafts {
    /// The log, and the drafts an earlier run of the host left.
    pub async fn load(
        central: Arc<DbThread<Connection>>,
    ) -> Result<(Arc<Self>, Vec<ShownDraft>), DbError> {
        let found = central
            .call(|conn| live_drafts::list(conn))
            .await?
            .into_iter()
            .map(|draft| ShownDraft {
                session: draft.session,
                key: draft.key,
                address: ChatAddress {
                    channel_type: draft.channel_type,
                    platform_id: draft.platform_id,
                    thread_id: draft.thread_id,
                },
                platform_id: draft.platform_message_id,
            })
            .collect();
        Ok((Arc::new(Self { central }), found))
    }
}

impl DraftLog for CentralDrafts {
    fn shown(&self, draft: ShownDraft) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let row = LiveDraft {
                session: draft.session,
                key: draft.key,
                channel_type: draft.address.channel_type,
                platform_id: draft.address.platform_id,
                thread_id: draft.address.thread_id,
                platform_message_id: draft.platform_id,
            };
            if let Err(e) = self
                .central
                .call(move |conn| live_drafts::put(conn, &row))
                .await
            {
                tracing::warn!(error = %e, "a draft's message was not written down: a restart now would leave it behind");
            }
        })
    }

    fn gone(&self, session: SessionId, key: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self
                .central
                .call(move |conn| live_drafts::delete(conn, &session, &key))
                .await
            {
                tracing::warn!(error = %e, "a finished draft was not forgotten");
            }
        })
    }
}
