//! Tool definitions rendered for each provider: [`openai_tools`] (Chat Completions function
//! tools) and [`anthropic_tools`] (Messages tools with `input_schema`), each from the one
//! [`ToolDefinition`] with its JSON Schema normalised by [`normalize`] for what the provider
//! accepts.
//!
//! The rules: the top level is always `{"type": "object", "properties": {...}}` (Anthropic
//! requires it; OpenAI-compatible servers reject an object without `properties`);
//! annotation keywords no provider uses (`$schema`, `$id`, `$comment`, `examples`) are
//! removed everywhere; for OpenAI `default` is removed too, since strict mode and several
//! compatible servers (vLLM, llama.cpp grammars) refuse it. Property names are never touched:
//! only keywords in schema position are.

use crate::tools::ToolDefinition;
use protocol::ProviderKind;
use serde_json::{Map, Value, json};

/// Keywords removed for every provider.
const ANNOTATIONS: &[&str] = &["$schema", "$id", "$comment", "examples"];
/// Keywords removed for OpenAI only.
const OPENAI_REMOVED: &[&str] = &["default"];

/// The `tools` array of an OpenAI Chat Completions request.
pub fn openai_tools(tools: &[ToolDefinition]) -> Vec<Value> {
    tools
        .iter()
        .map(|tool| {
            json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": normalize(&tool.parameters, ProviderKind::OpenAi),
                }
            })
        })
        .collect()
}

/// The `tools` array of an Anthropic Messages request.
pub fn anthropic_tools(tools: &[ToolDefinition]) -> Vec<Value> {
    tools
        .iter()
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description,
                "input_schema": normalize(&tool.parameters, ProviderKind::Anthropic),
            })
        })
        .collect()
}

/// A copy of `schema` as `provider` accepts it (see the module documentation).
pub fn normalize(schema: &Value, provider: ProviderKind) -> Value {
    let removed: Vec<&str> = match provider {
        ProviderKind::OpenAi => ANNOTATIONS.iter().chain(OPENAI_REMOVED).copied().collect(),
        ProviderKind::Anthropic => ANNOTATIONS.to_vec(),
    };
    let mut top = match clean(schema, &removed) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    top.insert("type".into(), json!("object"));
    if !top.get("properties").is_some_and(Value::is_object) {
        top.insert("properties".into(), json!({}));
    }
    Value::Object(top)
}

/// Removes `removed` keywords from a schema object and, recursively, from its subschemas.
fn clean(schema: &Value, removed: &[&str]) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        if removed.contains(&key.as_str()) {
            continue;
        }
        let cleaned = match key.as_str() {
            // Maps from names to subschemas.
            "properties" | "patternProperties" | "$defs" | "definitions" => match value {
                Value::Object(entries) => Value::Object(
                    entries
                        .iter()
                        .map(|(name, subschema)| (name.clone(), clean(subschema, removed)))
                        .collect(),
                ),
                other => other.clone(),
            },
            // One subschema, or a list of them.
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "anyOf"
            | "oneOf"
            | "allOf"
            | "prefixItems" => match value {
                Value::Array(list) => {
                    Value::Array(list.iter().map(|item| clean(item, removed)).collect())
                }
                Value::Object(_) => clean(value, removed),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), cleaned);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolRegistry;

    #[test]
    fn normalisation_table() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "properties": {
                "default": {"type": "string", "default": "x", "examples": ["a"]},
                "list": {"type": "array", "items": {"type": "integer", "default": 1, "$comment": "c"}},
                "either": {"anyOf": [{"type": "string", "default": ""}, {"type": "null"}]}
            },
            "additionalProperties": false
        });
        assert_eq!(
            normalize(&schema, ProviderKind::OpenAi),
            json!({
                "type": "object",
                "properties": {
                    "default": {"type": "string"},
                    "list": {"type": "array", "items": {"type": "integer"}},
                    "either": {"anyOf": [{"type": "string"}, {"type": "null"}]}
                },
                "additionalProperties": false
            })
        );
        assert_eq!(
            normalize(&schema, ProviderKind::Anthropic)["properties"]["default"],
            json!({"type": "string", "default": "x"}),
            "Anthropic keeps defaults; a property named `default` is never removed"
        );
        assert_eq!(
            normalize(&json!({}), ProviderKind::Anthropic),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            normalize(&json!(null), ProviderKind::OpenAi),
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn openai_tool_list() {
        let registry = ToolRegistry::standard();
        insta::assert_json_snapshot!(openai_tools(registry.definitions()));
    }

    #[test]
    fn anthropic_tool_list() {
        let registry = ToolRegistry::standard();
        insta::assert_json_snapshot!(anthropic_tools(registry.definitions()));
    }
}
