//! Keeps `crabpot.example.toml` (at the repository's root) true to the code. Three checks:
//!
//! - the file as it is parses and gives exactly the defaults, so its uncommented values are
//!   the real defaults;
//! - with every commented `# key = value` line uncommented, it still parses (unknown keys are
//!   refused), so every key it lists is one the host reads;
//! - every field of the `Raw*` configuration structs and every `CRABPOT_*` variable the config
//!   code reads appears in it, so a new setting cannot go undocumented.

use super::{Config, RawConfig};

const EXAMPLE: &str = include_str!("../../../crabpot.example.toml");

/// The config code whose keys and variables the example must list.
const SOURCES: &[(&str, &str)] = &[
    ("raw.rs", include_str!("raw.rs")),
    ("channels.rs", include_str!("channels.rs")),
    ("matrix.rs", include_str!("matrix.rs")),
    ("email.rs", include_str!("email.rs")),
    ("web_search.rs", include_str!("web_search.rs")),
];

/// `# key = value` lines made live; everything else as it is.
fn uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_assignment(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// The field names of every `pub struct Raw...` in `source`.
fn raw_fields(source: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut inside = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("pub struct Raw") && line.ends_with('{') {
            inside = true;
        } else if inside && line == "}" {
            inside = false;
        } else if inside
            && let Some((name, _)) = line.strip_prefix("pub ").and_then(|l| l.split_once(':'))
        {
            fields.push(name.to_owned());
        }
    }
    fields
}

/// Every `CRABPOT_*` name in `source`.
fn variables(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("CRABPOT_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        found.push(tail[..end].trim_end_matches('_').to_owned());
        rest = &tail[end..];
    }
    found
}

#[test]
fn the_example_as_it_is_gives_the_defaults() {
    let raw: RawConfig = toml::from_str(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let example = Config::from_raw(raw).unwrap_or_else(|e| panic!("{e}"));
    let defaults = Config::from_raw(RawConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{example:#?}"), format!("{defaults:#?}"));
}

#[test]
fn every_key_the_example_lists_is_one_the_host_reads() {
    let text = uncommented();
    assert!(
        text.contains("\nbot_token = "),
        "the commented keys were made live"
    );
    if let Err(error) = toml::from_str::<RawConfig>(&text) {
        panic!("crabpot.example.toml with its comments made live: {error}");
    }
}

#[test]
fn every_key_and_variable_of_the_code_is_in_the_example() {
    let text = uncommented();
    let listed = |key: &str| {
        text.lines().any(|line| {
            line.split_once(" = ").is_some_and(|(name, _)| name == key)
                || line == format!("[{key}]")
                || line.starts_with(&format!("[{key}."))
                || (line.starts_with('[') && line.ends_with(&format!(".{key}]")))
        })
    };
    let mut missing = Vec::new();
    for (file, source) in SOURCES {
        let fields = raw_fields(source);
        assert!(!fields.is_empty(), "no Raw struct found in {file}");
        for field in fields {
            if !listed(&field) {
                missing.push(format!("key {field} (config/{file})"));
            }
        }
        for variable in variables(source) {
            // `CRABPOT_TELEGRAM_*` in a comment is a prefix, found as one.
            if !EXAMPLE.contains(&variable) {
                missing.push(format!("variable {variable} (config/{file})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crabpot.example.toml does not list: {missing:#?}"
    );
}
