//! Fuzz target `admin_request`: arbitrary bytes as the body of an admin API call
//! (`POST /v1/<resource>/<verb>` on `data/crabpot.sock`), read as the server reads it (an empty
//! body is `{}`, anything else must be JSON) and then as every verb's request type of
//! `host::admin::api`, followed by the checks the handlers run before touching the central DB
//! (folder names, container limits, roles, engage settings).

#![no_main]

use host::admin::api::{
    ApprovalDecide, ChatCreate, ChatUpdate, DestinationAdd, DestinationRemove, GroupCreate,
    GroupUpdate, Id, ListFilter, MemberChange, RoleChange, UserCreate, WiringCreate, WiringUpdate,
};
use host::db::central::groups::ContainerOverrides;
use host::db::central::people::Role;
use host::db::central::wirings::{WiringSettings, validate_engage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn parse<T: DeserializeOwned>(body: &Value) -> Option<T> {
    serde_json::from_value(body.clone()).ok()
}

/// The handlers' limit check. `Limits` and `ContainerOverrides` share their field names (the
/// handlers copy one into the other field by field), so serde carries every field, new ones
/// included.
fn check_limits(limits: host::admin::api::Limits) {
    let overrides =
        serde_json::to_value(limits).and_then(serde_json::from_value::<ContainerOverrides>);
    if let Ok(overrides) = overrides {
        let _ = overrides.validate();
    }
}

fn check_settings(settings: &WiringSettings) {
    if let Some(mode) = settings.engage_mode {
        let _ = validate_engage(mode, settings.engage_pattern.as_deref());
    }
}

fuzz_target!(|data: &[u8]| {
    let body: Value = if data.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(data) {
            Ok(value) => value,
            Err(_) => return,
        }
    };
    let _ = parse::<Id>(&body);
    let _ = parse::<ListFilter>(&body);
    if let Some(request) = parse::<GroupCreate>(&body) {
        let _ = protocol::ids::is_safe_folder_name(&request.folder);
        check_limits(request.limits);
    }
    if let Some(request) = parse::<GroupUpdate>(&body) {
        check_limits(request.limits);
    }
    let _ = parse::<ChatCreate>(&body);
    let _ = parse::<ChatUpdate>(&body);
    if let Some(request) = parse::<WiringCreate>(&body) {
        check_settings(&request.settings);
    }
    if let Some(request) = parse::<WiringUpdate>(&body) {
        check_settings(&request.settings);
    }
    let _ = parse::<DestinationAdd>(&body);
    let _ = parse::<DestinationRemove>(&body);
    let _ = parse::<UserCreate>(&body);
    if let Some(request) = parse::<RoleChange>(&body) {
        let _ = request.role.parse::<Role>();
    }
    let _ = parse::<MemberChange>(&body);
    let _ = parse::<ApprovalDecide>(&body);
});
