//! The client-server API objects the adapter reads: a `/sync` answer ([`SyncAnswer`]) with
//! its joined and invited rooms, and one room event ([`RoomEvent`]).
//!
//! Events are kept as JSON values until each is read on its own ([`RoomEvent::parse`]), so one
//! event of an unexpected shape is skipped instead of failing its whole batch. Every field
//! has a default: a homeserver may leave out what is empty.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The answer to `GET /sync`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SyncAnswer {
    pub next_batch: String,
    #[serde(default)]
    pub rooms: Rooms,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Rooms {
    #[serde(default)]
    pub join: BTreeMap<String, JoinedRoom>,
    #[serde(default)]
    pub invite: BTreeMap<String, InvitedRoom>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct JoinedRoom {
    #[serde(default)]
    pub state: Events,
    #[serde(default)]
    pub timeline: Timeline,
    #[serde(default)]
    pub summary: Summary,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvitedRoom {
    #[serde(default)]
    pub invite_state: Events,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Events {
    #[serde(default)]
    pub events: Vec<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Timeline {
    #[serde(default)]
    pub events: Vec<Value>,
    /// More events happened since the last sync than the timeline holds: the gap before
    /// `prev_batch` must be paged back.
    #[serde(default)]
    pub limited: bool,
    #[serde(default)]
    pub prev_batch: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Summary {
    #[serde(rename = "m.joined_member_count", default)]
    pub joined_member_count: Option<u64>,
}

/// The answer to `GET /rooms/{room}/messages`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MessagesPage {
    #[serde(default)]
    pub chunk: Vec<Value>,
    #[serde(default)]
    pub end: Option<String>,
}

/// One room event, read from its JSON.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RoomEvent {
    #[serde(rename = "type")]
    pub kind: String,
    /// Empty on the stripped state events of an invite, which carry no id.
    #[serde(default)]
    pub event_id: String,
    pub sender: String,
    #[serde(default)]
    pub content: Value,
    /// Set on state events (`m.room.member`: the member's user id).
    #[serde(default)]
    pub state_key: Option<String>,
}

impl RoomEvent {
    /// The event in `value`; `None` when it lacks what every event has (a type and a sender,
    /// strings).
    pub fn parse(value: &Value) -> Option<RoomEvent> {
        serde_json::from_value(value.clone()).ok()
    }

    /// A string field of the content.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.content.get(field).and_then(Value::as_str)
    }

    /// `content["m.relates_to"]`, when it is an object.
    pub fn relation(&self) -> Option<&serde_json::Map<String, Value>> {
        self.content.get("m.relates_to").and_then(Value::as_object)
    }

    /// `m.relates_to.rel_type`.
    pub fn relation_type(&self) -> Option<&str> {
        self.relation()
            .and_then(|relation| relation.get("rel_type"))
            .and_then(Value::as_str)
    }
}
