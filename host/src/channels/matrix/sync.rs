//! [`Syncer`]: the `/sync` long poll, invites, and the `since` token kept across restarts.
//!
//! Each answer's invites are decided by the policy ([`InvitePolicy`]) and its joined rooms'
//! events taken in order ([`Inbound::take`]): the room's state first, then the gap a
//! `limited` timeline left (paged back with `/messages` down to the previous token), then the
//! timeline. Only once every event of the batch was taken is `since` moved to the answer's
//! `next_batch` and stored (`channel_state` key `since`); an event that must be taken again
//! stops the batch, and the same `since` is synced again after a back-off. The router stores
//! a platform message once, so events taken again are not repeated: a restart loses and
//! repeats nothing.
//!
//! The very first sync of an account (no stored token) takes no timeline: the bot starts
//! from now instead of answering a room's history.

use super::api::{Api, ApiError};
use super::inbound::{Inbound, TakeAgain};
use super::rooms::RoomBook;
use super::state::{SINCE_KEY, State};
use super::wire::{InvitedRoom, JoinedRoom, MessagesPage, RoomEvent, SyncAnswer};
use crate::channels::http;
use crate::config::matrix::InvitePolicy;
use crate::edge::{ChannelError, Health, HealthState};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one `/sync` waits for an event, in milliseconds.
pub const SYNC_TIMEOUT_MS: u64 = 25_000;

/// The most timeline events one sync brings per room; more makes the timeline `limited`.
const TIMELINE_LIMIT: u64 = 50;

/// The most events paged back to fill one room's gap.
const MAX_GAP_EVENTS: usize = 1000;

/// The longest back-off between failed syncs.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The sync filter: room events, no presence, no account data, no ephemeral events, and
/// members loaded lazily (the [`RoomBook`] reads a room's members when it needs them), so
/// an answer stays small in big rooms.
pub fn filter(timeline_limit: u64) -> Value {
    json!({
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "state": {"lazy_load_members": true},
            "timeline": {"limit": timeline_limit, "lazy_load_members": true},
        },
    })
}

/// The long poll of one bot.
pub struct Syncer {
    pub api: Arc<Api>,
    pub inbound: Arc<Inbound>,
    pub state: State,
    pub rooms: Arc<RoomBook>,
    pub invites: InvitePolicy,
    pub health: Arc<Mutex<Health>>,
}

impl Syncer {
    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
    }

    fn user_id(&self) -> &str {
        &self.inbound.bot.user_id
    }

    /// The stored token; `None` when none was stored (or it cannot be read, which is logged:
    /// then the bot starts from now).
    async fn stored_since(&self) -> Option<String> {
        match self.state.get(SINCE_KEY.to_owned()).await {
            Ok(value) => value.filter(|token| !token.is_empty()),
            Err(e) => {
                tracing::warn!(error = %e, "the matrix sync token cannot be read");
                None
            }
        }
    }

    /// Syncs until `shutdown`; an `Err` is an access token refused while syncing.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ChannelError> {
        let mut since = self.stored_since().await;
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
            }
            let (filter, timeout) = match &since {
                Some(_) => (filter(TIMELINE_LIMIT), SYNC_TIMEOUT_MS),
                None => (filter(1), 0),
            };
            let filter = filter.to_string();
            let timeout_text = timeout.to_string();
            let mut query = vec![
                ("filter", filter.as_str()),
                ("timeout", timeout_text.as_str()),
            ];
            if let Some(since) = &since {
                query.push(("since", since.as_str()));
            }
            let call = self.api.get::<SyncAnswer>(
                "sync",
                &["_matrix", "client", "v3", "sync"],
                &query,
                Duration::from_millis(timeout) + Duration::from_secs(15),
            );
            let polled = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                polled = call => polled,
            };
            let answer = match polled {
                Ok(answer) => answer,
                Err(ApiError::Unauthorized(why)) => {
                    let error = ChannelError::from(ApiError::Unauthorized(why));
                    self.set_health(Health::failing(error.to_string()));
                    return Err(error);
                }
                Err(ApiError::Channel(error)) => {
                    backoff = match error {
                        ChannelError::RateLimited { retry_after } => retry_after,
                        _ => (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF),
                    };
                    tracing::warn!(%error, ?backoff, "matrix sync failed");
                    self.set_health(Health {
                        state: HealthState::Degraded,
                        last_error: Some(format!("matrix sync failed, retrying: {error}")),
                    });
                    continue;
                }
            };
            backoff = Duration::ZERO;
            self.set_health(Health::connected());
            match self.take_batch(&answer, since.as_deref()).await {
                Ok(()) => {
                    if answer.next_batch.is_empty() {
                        continue;
                    }
                    let stored = self
                        .state
                        .put(SINCE_KEY.to_owned(), answer.next_batch.clone())
                        .await;
                    if let Err(e) = stored {
                        // The router stores a platform message once, so a batch taken again
                        // after a restart is harmless; say so rather than stop.
                        tracing::warn!(error = %e, "the matrix sync token was not stored");
                    }
                    since = Some(answer.next_batch);
                }
                Err(again) => {
                    tracing::warn!(%again, "matrix batch not taken yet");
                    backoff = Duration::from_secs(1);
                }
            }
        }
    }

    /// Takes one sync answer in; see the module docs.
    async fn take_batch(&self, answer: &SyncAnswer, since: Option<&str>) -> Result<(), TakeAgain> {
        for (room_id, invited) in &answer.rooms.invite {
            self.invited(room_id, invited).await?;
        }
        let Some(since) = since else {
            tracing::info!("matrix: first sync of this account; starting from now");
            return Ok(());
        };
        for (room_id, joined) in &answer.rooms.join {
            self.take_room(room_id, joined, since).await?;
        }
        Ok(())
    }

    async fn take_room(
        &self,
        room_id: &str,
        joined: &JoinedRoom,
        since: &str,
    ) -> Result<(), TakeAgain> {
        for value in &joined.state.events {
            if let Some(event) = RoomEvent::parse(value) {
                self.inbound.take(room_id, event).await?;
            }
        }
        if joined.timeline.limited
            && let Some(prev_batch) = &joined.timeline.prev_batch
        {
            for value in self.gap(room_id, prev_batch, since).await? {
                if let Some(event) = RoomEvent::parse(&value) {
                    self.inbound.take(room_id, event).await?;
                }
            }
        }
        for value in &joined.timeline.events {
            match RoomEvent::parse(value) {
                Some(event) => self.inbound.take(room_id, event).await?,
                None => tracing::warn!(room_id, "an unreadable matrix event was skipped"),
            }
        }
        Ok(())
    }

    /// The events between `since` and `prev_batch` that a limited timeline left out, oldest
    /// first, at most [`MAX_GAP_EVENTS`].
    async fn gap(
        &self,
        room_id: &str,
        prev_batch: &str,
        since: &str,
    ) -> Result<Vec<Value>, TakeAgain> {
        let mut events = Vec::new();
        let mut from = prev_batch.to_owned();
        while events.len() < MAX_GAP_EVENTS {
            let page: Result<MessagesPage, ApiError> = self
                .api
                .get(
                    "messages",
                    &["_matrix", "client", "v3", "rooms", room_id, "messages"],
                    &[
                        ("dir", "b"),
                        ("from", &from),
                        ("to", since),
                        ("limit", "100"),
                    ],
                    http::CALL_TIMEOUT,
                )
                .await;
            let page = match page {
                Ok(page) => page,
                Err(ApiError::Channel(e)) if !e.is_retryable() => {
                    tracing::warn!(room_id, error = %e, "matrix: the gap of a room cannot be read");
                    break;
                }
                Err(e) => {
                    return Err(TakeAgain {
                        event_id: format!("(gap of {room_id})"),
                        reason: e.to_string(),
                    });
                }
            };
            let done = page.chunk.is_empty() || page.end.as_deref().is_none_or(|end| end == from);
            events.extend(page.chunk);
            match page.end {
                Some(end) if !done => from = end,
                _ => break,
            }
        }
        if events.len() >= MAX_GAP_EVENTS {
            tracing::warn!(
                room_id,
                "matrix: a room's gap was cut at {MAX_GAP_EVENTS} events"
            );
        }
        events.truncate(MAX_GAP_EVENTS);
        events.reverse();
        tracing::info!(
            room_id,
            events = events.len(),
            "matrix: a limited timeline's gap paged back"
        );
        Ok(events)
    }

    /// An invite: joined or declined per the policy.
    async fn invited(&self, room_id: &str, invited: &InvitedRoom) -> Result<(), TakeAgain> {
        let again = |reason: String| TakeAgain {
            event_id: format!("(invite to {room_id})"),
            reason,
        };
        let invite = invited
            .invite_state
            .events
            .iter()
            .filter_map(RoomEvent::parse)
            .find(|event| {
                event.kind == "m.room.member"
                    && event.state_key.as_deref() == Some(self.user_id())
                    && event.text("membership") == Some("invite")
            });
        let (inviter, is_direct) = match &invite {
            Some(event) => (
                event.sender.clone(),
                event
                    .content
                    .get("is_direct")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
            None => (String::new(), false),
        };
        let accept = match self.invites {
            InvitePolicy::All => true,
            InvitePolicy::None => {
                tracing::info!(room_id, %inviter, "matrix invite left for joining by hand (invites = none)");
                return Ok(());
            }
            InvitePolicy::Known => self
                .state
                .knows(format!("matrix:{inviter}"), room_id.to_owned())
                .await
                .map_err(|e| again(e.to_string()))?,
        };
        if !accept {
            tracing::info!(room_id, %inviter, "matrix invite from an unknown user declined (invites = known)");
            let left: Result<Value, ApiError> = self
                .api
                .send_json(
                    "leave",
                    Method::POST,
                    &["_matrix", "client", "v3", "rooms", room_id, "leave"],
                    json!({}),
                )
                .await;
            if let Err(e) = left {
                tracing::warn!(room_id, error = %e, "matrix invite not declined");
            }
            return Ok(());
        }
        if is_direct {
            self.rooms.set_direct(room_id, true).await.map_err(again)?;
        }
        let joined: Result<Value, ApiError> = self
            .api
            .send_json(
                "join",
                Method::POST,
                &["_matrix", "client", "v3", "join", room_id],
                json!({}),
            )
            .await;
        match joined {
            Ok(_) => {
                tracing::info!(room_id, %inviter, is_direct, "matrix room joined");
                Ok(())
            }
            Err(ApiError::Channel(e)) if !e.is_retryable() => {
                tracing::warn!(room_id, error = %e, "matrix room not joined");
                Ok(())
            }
            Err(e) => Err(again(e.to_string())),
        }
    }
}
