//! [`RoomBook`]: what the adapter knows of each joined room while it runs: its joined members
//! and their display names, its name, whether it is encrypted, whether it is a direct chat.
//!
//! The book is filled from the state and timeline events `/sync` brings; a room first seen
//! after a restart (when sync only brings what changed) is read once with
//! `GET /rooms/{room}/joined_members`. Whether a room is direct is kept in `channel_state`
//! ([`super::state`]), since the invite that said so comes only once.

use super::api::{Api, ApiError};
use super::mapping::{self, RoomView};
use super::state::{State, direct_key};
use super::wire::RoomEvent;
use crate::channels::http;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// What is known of one room.
#[derive(Clone, Debug, Default)]
struct Room {
    /// Joined members and their display names; `None` until loaded.
    members: Option<BTreeMap<String, Option<String>>>,
    name: Option<String>,
    encrypted: bool,
    direct: Option<bool>,
}

pub struct RoomBook {
    api: Arc<Api>,
    state: State,
    rooms: Mutex<HashMap<String, Room>>,
}

/// The display name a member event gives, cleaned and capped.
fn display_name(content: &Value) -> Option<String> {
    content
        .get("displayname")
        .and_then(Value::as_str)
        .map(|name| name.chars().filter(|c| !c.is_control()).take(200).collect())
}

impl RoomBook {
    pub fn new(api: Arc<Api>, state: State) -> Self {
        Self {
            api,
            state,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    fn with_room<T>(&self, room_id: &str, f: impl FnOnce(&mut Room) -> T) -> T {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        f(rooms.entry(room_id.to_owned()).or_default())
    }

    /// Takes what a state event (from the room's state or timeline) says.
    pub fn note_state(&self, room_id: &str, event: &RoomEvent) {
        self.with_room(room_id, |room| match event.kind.as_str() {
            "m.room.member" => {
                let (Some(members), Some(user)) = (room.members.as_mut(), &event.state_key) else {
                    return;
                };
                if event.text("membership") == Some("join") {
                    members.insert(user.clone(), display_name(&event.content));
                } else {
                    members.remove(user);
                }
            }
            "m.room.name" => {
                room.name = event
                    .text("name")
                    .map(|name| name.chars().filter(|c| !c.is_control()).take(200).collect())
                    .filter(|name: &String| !name.trim().is_empty());
            }
            "m.room.encryption" => room.encrypted = true,
            _ => {}
        });
    }

    pub fn is_encrypted(&self, room_id: &str) -> bool {
        self.with_room(room_id, |room| room.encrypted)
    }

    /// Marks the room direct (or not), here and in `channel_state`.
    pub async fn set_direct(&self, room_id: &str, direct: bool) -> Result<(), String> {
        self.with_room(room_id, |room| room.direct = Some(direct));
        let key = direct_key(room_id);
        let result = if direct {
            self.state.put(key, "1".into()).await
        } else {
            self.state.delete(key).await
        };
        result.map_err(|e| format!("storing whether the room is direct failed: {e}"))
    }

    async fn ensure_loaded(&self, room_id: &str) -> Result<(), String> {
        let (loaded, direct_known) = self.with_room(room_id, |room| {
            (room.members.is_some(), room.direct.is_some())
        });
        if !direct_known {
            let direct = self
                .state
                .get(direct_key(room_id))
                .await
                .map_err(|e| format!("reading whether the room is direct failed: {e}"))?
                .is_some();
            self.with_room(room_id, |room| room.direct = Some(direct));
        }
        if !loaded {
            #[derive(serde::Deserialize)]
            struct Member {
                #[serde(default)]
                display_name: Option<String>,
            }
            #[derive(serde::Deserialize)]
            struct Joined {
                #[serde(default)]
                joined: BTreeMap<String, Member>,
            }
            let answer: Result<Joined, ApiError> = self
                .api
                .get(
                    "joined_members",
                    &[
                        "_matrix",
                        "client",
                        "v3",
                        "rooms",
                        room_id,
                        "joined_members",
                    ],
                    &[],
                    http::CALL_TIMEOUT,
                )
                .await;
            let joined = answer.map_err(|e| e.to_string())?;
            let members = joined
                .joined
                .into_iter()
                .map(|(user, member)| (user, member.display_name))
                .collect();
            self.with_room(room_id, |room| room.members = Some(members));
        }
        Ok(())
    }

    /// The room as the mapping needs it, for an event of `sender`; loads what is missing.
    /// When that fails (logged), the room is taken for what is known: without its members,
    /// a group unless it is known to be direct, so nothing is answered that was not asked.
    pub async fn view(&self, room_id: &str, sender: &str) -> RoomView {
        if let Err(e) = self.ensure_loaded(room_id).await {
            tracing::warn!(room_id, error = %e, "matrix room members not read");
        }
        self.with_room(room_id, |room| {
            let members = room.members.as_ref();
            let joined = members.map_or(0, |members| members.len() as u64);
            RoomView {
                room_id: room_id.to_owned(),
                is_group: mapping::is_group(room.direct.unwrap_or(false), joined),
                name: room.name.clone(),
                sender_name: members
                    .and_then(|members| members.get(sender))
                    .cloned()
                    .flatten(),
            }
        })
    }
}
