//! The admin API described as OpenAPI 3 ([`document`], served at `GET /api/openapi.json`),
//! built from [`ENDPOINTS`]: every `<resource>/<verb>` with its summary and its request type.
//! A request body's schema is derived from the request type itself (its `Default` value,
//! serialised: field names, JSON types, and the value as an example), so a renamed or added
//! field shows up without anyone editing the document.
//!
//! The e2e suite (`tests/tests/web_auth.rs`) calls every listed endpoint and fails if one is
//! not dispatched, so the table cannot list a verb that does not exist.

use super::api::{
    AdapterAdd, AdapterRemove, ApprovalDecide, ChatUpdate, DestinationAdd, DestinationRemove,
    GroupCreate, GroupUpdate, Id, ListFilter, LoginLinkCreate, MemberChange, PasswordSet,
    RoleChange, UserCreate, WebhookCreate, WebhookRemove, WiringCreate, WiringUpdate,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// One admin verb.
pub struct Endpoint {
    pub resource: &'static str,
    pub verb: &'static str,
    pub summary: &'static str,
    /// The request body's example; `None` for verbs that take none.
    pub example: Option<fn() -> Value>,
}

fn example<T: Serialize + Default>() -> Value {
    serde_json::to_value(T::default()).unwrap_or(Value::Null)
}

fn chat_create() -> Value {
    json!({ "channel_type": "", "platform_id": "", "name": null, "is_group": false,
            "unknown_sender_policy": null })
}

fn token_create() -> Value {
    serde_json::to_value(super::api::TokenCreate {
        user: String::new(),
        scope: crate::db::central::web::Scope::Chat,
    })
    .unwrap_or(Value::Null)
}

fn egress_log_query() -> Value {
    serde_json::to_value(crate::db::central::egress_log::EgressLogQuery {
        session: Some(String::new()),
        group: Some(String::new()),
        limit: Some(50),
    })
    .unwrap_or(Value::Null)
}

const fn endpoint(
    resource: &'static str,
    verb: &'static str,
    summary: &'static str,
    example: Option<fn() -> Value>,
) -> Endpoint {
    Endpoint {
        resource,
        verb,
        summary,
        example,
    }
}

/// Every admin verb, in `crabpot --help` order.
pub const ENDPOINTS: &[Endpoint] = &[
    endpoint(
        "status",
        "show",
        "The running host: Docker, containers, queue, approvals, disk, channels.",
        None,
    ),
    endpoint("groups", "list", "List agent groups.", None),
    endpoint("groups", "show", "One agent group.", Some(example::<Id>)),
    endpoint(
        "groups",
        "create",
        "Create an agent group and its folder.",
        Some(example::<GroupCreate>),
    ),
    endpoint(
        "groups",
        "update",
        "Change an agent group's name, limits or create-agent policy.",
        Some(example::<GroupUpdate>),
    ),
    endpoint(
        "groups",
        "delete",
        "Delete an agent group (its session files stay on disk).",
        Some(example::<Id>),
    ),
    endpoint(
        "groups",
        "restart",
        "Stop the group's containers; they start again on the next message.",
        Some(example::<Id>),
    ),
    endpoint("chats", "list", "List chats (messaging groups).", None),
    endpoint(
        "chats",
        "show",
        "One chat, by id or CHANNEL/PLATFORM_ID.",
        Some(example::<Id>),
    ),
    endpoint("chats", "create", "Create a chat.", Some(chat_create)),
    endpoint(
        "chats",
        "update",
        "Change a chat.",
        Some(example::<ChatUpdate>),
    ),
    endpoint("chats", "delete", "Delete a chat.", Some(example::<Id>)),
    endpoint(
        "wirings",
        "list",
        "List wirings.",
        Some(example::<ListFilter>),
    ),
    endpoint(
        "wirings",
        "create",
        "Wire a chat to an agent group.",
        Some(example::<WiringCreate>),
    ),
    endpoint(
        "wirings",
        "update",
        "Change a wiring's settings.",
        Some(example::<WiringUpdate>),
    ),
    endpoint("wirings", "delete", "Remove a wiring.", Some(example::<Id>)),
    endpoint(
        "destinations",
        "list",
        "List destinations.",
        Some(example::<ListFilter>),
    ),
    endpoint(
        "destinations",
        "add",
        "Let a group send to a chat or an agent, by name.",
        Some(example::<DestinationAdd>),
    ),
    endpoint(
        "destinations",
        "remove",
        "Take a destination away.",
        Some(example::<DestinationRemove>),
    ),
    endpoint("users", "list", "List users.", None),
    endpoint(
        "users",
        "create",
        "Create a user.",
        Some(example::<UserCreate>),
    ),
    endpoint(
        "users",
        "passwd",
        "Set the web password of web:USER (created if needed).",
        Some(example::<PasswordSet>),
    ),
    endpoint("roles", "list", "List role grants.", None),
    endpoint(
        "roles",
        "grant",
        "Grant owner or admin.",
        Some(example::<RoleChange>),
    ),
    endpoint(
        "roles",
        "revoke",
        "Revoke a role.",
        Some(example::<RoleChange>),
    ),
    endpoint(
        "members",
        "list",
        "List members.",
        Some(example::<ListFilter>),
    ),
    endpoint(
        "members",
        "add",
        "Make a user a member of a group.",
        Some(example::<MemberChange>),
    ),
    endpoint(
        "members",
        "remove",
        "Remove a member.",
        Some(example::<MemberChange>),
    ),
    endpoint(
        "sessions",
        "list",
        "List sessions.",
        Some(example::<ListFilter>),
    ),
    endpoint("sessions", "show", "One session.", Some(example::<Id>)),
    endpoint(
        "sessions",
        "stop",
        "Stop a session's container.",
        Some(example::<Id>),
    ),
    endpoint("sessions", "reset", "Reset a session.", Some(example::<Id>)),
    endpoint(
        "approvals",
        "list",
        "List approvals.",
        Some(example::<ListFilter>),
    ),
    endpoint("approvals", "show", "One approval.", Some(example::<Id>)),
    endpoint(
        "approvals",
        "approve",
        "Approve.",
        Some(example::<ApprovalDecide>),
    ),
    endpoint(
        "approvals",
        "deny",
        "Deny.",
        Some(example::<ApprovalDecide>),
    ),
    endpoint(
        "dropped",
        "list",
        "Dropped messages, most recent first.",
        Some(example::<ListFilter>),
    ),
    endpoint(
        "tasks",
        "list",
        "List scheduled tasks.",
        Some(example::<ListFilter>),
    ),
    endpoint("tasks", "pause", "Pause a task.", Some(example::<Id>)),
    endpoint("tasks", "resume", "Resume a task.", Some(example::<Id>)),
    endpoint("tasks", "cancel", "Cancel a task.", Some(example::<Id>)),
    endpoint("tasks", "run-now", "Run a task now.", Some(example::<Id>)),
    endpoint(
        "adapters",
        "add",
        "Register an out-of-process adapter; answers its token once.",
        Some(example::<AdapterAdd>),
    ),
    endpoint(
        "channels",
        "list",
        "List every channel adapter with its health.",
        None,
    ),
    endpoint("adapters", "list", "List adapters with their health.", None),
    endpoint(
        "adapters",
        "remove",
        "Remove an adapter.",
        Some(example::<AdapterRemove>),
    ),
    endpoint(
        "tokens",
        "create",
        "Create an API token; answers its secret once.",
        Some(token_create),
    ),
    endpoint(
        "tokens",
        "list",
        "List API tokens (never their secrets).",
        None,
    ),
    endpoint(
        "tokens",
        "revoke",
        "Revoke an API token.",
        Some(example::<Id>),
    ),
    endpoint(
        "webhooks",
        "create",
        "Create an inbound (group) or outbound (url) webhook; answers its secret once.",
        Some(example::<WebhookCreate>),
    ),
    endpoint(
        "webhooks",
        "list",
        "List webhooks (never their secrets).",
        None,
    ),
    endpoint(
        "webhooks",
        "remove",
        "Remove a webhook with its chat and the destinations naming it.",
        Some(example::<WebhookRemove>),
    ),
    endpoint(
        "egress",
        "log",
        "The newest egress attempts (allowed and refused), of one session or group if given.",
        Some(egress_log_query),
    ),
    endpoint(
        "web",
        "login-link",
        "Make a one-time login link for web:USER.",
        Some(example::<LoginLinkCreate>),
    ),
];

/// A JSON schema for values shaped like `value`, with `value` as its example.
fn schema_of(value: &Value) -> Value {
    match value {
        Value::Null => json!({ "nullable": true }),
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(n) if n.is_f64() => json!({ "type": "number" }),
        Value::Number(_) => json!({ "type": "integer" }),
        Value::String(_) => json!({ "type": "string" }),
        Value::Array(items) => json!({
            "type": "array",
            "items": items.first().map_or_else(|| json!({}), schema_of),
        }),
        Value::Object(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(name, value)| (name.clone(), schema_of(value)))
                .collect();
            json!({ "type": "object", "properties": properties })
        }
    }
}

/// The OpenAPI 3 document for the admin API under `prefix` (`/api/v1` on the web server).
pub fn document(prefix: &str) -> Value {
    let error_kinds = ["not_found", "invalid", "conflict", "refused", "internal"];
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let path = if endpoint.resource == "status" {
            format!("{prefix}/status")
        } else {
            format!("{prefix}/{}/{}", endpoint.resource, endpoint.verb)
        };
        let mut operation = json!({
            "operationId": format!("{}_{}", endpoint.resource, endpoint.verb.replace('-', "_")),
            "summary": endpoint.summary,
            "tags": [endpoint.resource],
            "responses": {
                "200": { "description": "The answer, as JSON.",
                         "content": { "application/json": { "schema": {} } } },
                "default": { "description": "A failure.",
                             "content": { "application/json": {
                                 "schema": { "$ref": "#/components/schemas/ApiError" } } } },
            },
        });
        if let Some(example) = endpoint.example {
            let example = example();
            operation["requestBody"] = json!({
                "required": false,
                "content": { "application/json": {
                    "schema": schema_of(&example),
                    "example": example,
                } },
            });
        }
        paths.insert(path, json!({ "post": operation }));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "crabpot admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin API of data/crabpot.sock (paths /v1/...), also served by \
                the web server under /api/v1 to owners and global admins: a Bearer token of \
                scope admin, or a session cookie with X-CSRF-Token.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "ApiError": {
                    "type": "object",
                    "required": ["kind", "error"],
                    "properties": {
                        "kind": { "type": "string", "enum": error_kinds },
                        "error": { "type": "string" },
                    },
                },
            },
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "session": { "type": "apiKey", "in": "cookie", "name": crate::web::auth::SESSION_COOKIE },
            },
        },
        "security": [{ "bearer": [] }, { "session": [] }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_a_path_with_its_request_fields() {
        let document = document("/api/v1");
        let paths = document["paths"].as_object().unwrap();
        assert_eq!(
            paths.len(),
            ENDPOINTS.len(),
            "no two endpoints share a path"
        );
        let create = &paths["/api/v1/groups/create"]["post"];
        let properties =
            &create["requestBody"]["content"]["application/json"]["schema"]["properties"];
        assert_eq!(properties["folder"]["type"], "string");
        assert_eq!(properties["memory_mb"]["nullable"], true);
        assert_eq!(
            paths["/api/v1/tokens/create"]["post"]["requestBody"]["content"]["application/json"]["example"]
                ["scope"],
            "chat"
        );
        assert!(paths.contains_key("/api/v1/status"));
        assert!(
            paths["/api/v1/users/list"]["post"]
                .get("requestBody")
                .is_none()
        );
    }
}
