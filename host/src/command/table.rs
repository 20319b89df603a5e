//! Text for people: [`Table`] (aligned columns, one row per line) and [`outline`] (an indented
//! rendering of a JSON document, for `show` verbs). A time field ([`field_cell`]: `at`,
//! `*_at`, `created`, `last_seen`, ...) holding epoch milliseconds or RFC 3339 is shown as a
//! local date with its age, `2026-12-06 21:03 (5 min ago)`; `--json` output is left as the API
//! gives it.

use chrono::{DateTime, Local, Utc};
use serde_json::Value;
use std::fmt::Write;

/// Aligned columns with a header line.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text; `(none)` when it has no rows.
    pub fn render(&self) -> String {
        if self.rows.is_empty() {
            return "(none)\n".to_owned();
        }
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let _ = write!(text, "{cell:<width$}  ");
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// A cell for a JSON value: strings bare, null as `-`, the rest as JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".to_owned(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// The cell for the field `name` (the last segment of its path): a time as a local date
/// and age ([`describe_time`]), anything else as [`cell`].
pub fn field_cell(name: &str, value: Option<&Value>) -> String {
    if is_time_field(name)
        && let Some(at) = value.and_then(parse_time)
    {
        return describe_time(at, Utc::now());
    }
    cell(value)
}

/// Whether a field holds a time, by the names the admin API uses.
fn is_time_field(name: &str) -> bool {
    name == "at"
        || name.ends_with("_at")
        || name.ends_with("_at_ms")
        || matches!(
            name,
            "created" | "last_seen" | "last_used" | "next_run" | "expires" | "updated"
        )
}

/// An RFC 3339 string, or epoch milliseconds between 2001 and 5138 (smaller numbers are not
/// times: counts, durations).
fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
        Value::Number(number) => number
            .as_i64()
            .filter(|ms| (1_000_000_000_000..100_000_000_000_000).contains(ms))
            .and_then(DateTime::from_timestamp_millis),
        _ => None,
    }
}

/// `2026-12-06 21:03 (5 min ago)` in the local time zone; `(in 5 min)` for a time to come.
pub fn describe_time(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let local = at.with_timezone(&Local).format("%Y-%m-%d %H:%M");
    let seconds = (now - at).num_seconds();
    let span = |seconds: i64| match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    };
    let age = match seconds {
        0..5 => "just now".to_owned(),
        5.. => format!("{} ago", span(seconds)),
        _ => format!("in {}", span(-seconds)),
    };
    format!("{local} ({age})")
}

/// A JSON document as indented `key: value` lines.
pub fn outline(value: &Value) -> String {
    let mut out = String::new();
    write_outline(&mut out, value, 0);
    out
}

fn write_outline(out: &mut String, value: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::Object(inner) if !inner.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_outline(out, value, indent + 1);
                    }
                    Value::Array(items) if !items.is_empty() && !items.iter().all(is_scalar) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_outline(out, value, indent + 1);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", field_cell(key, Some(value)));
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_scalar(item) {
                    let _ = writeln!(out, "{pad}- {}", cell(Some(item)));
                } else {
                    let _ = writeln!(out, "{pad}-");
                    write_outline(out, item, indent + 1);
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", cell(Some(scalar)));
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_outlines_nest() {
        let mut table = Table::new(&["ID", "NAME"]);
        assert_eq!(table.render(), "(none)\n");
        table.row(vec!["main".into(), "Main".into()]);
        table.row(vec!["helper-group".into(), "-".into()]);
        insta::assert_snapshot!(table.render(), @r"
        ID            NAME
        main          Main
        helper-group  -
        ");
        let value =
            serde_json::json!({"a": 1, "b": {"c": null, "d": ["x", "y"]}, "e": [{"f": "g"}]});
        insta::assert_snapshot!(outline(&value), @r"
        a: 1
        b:
          c: -
          d: x,y
        e:
          -
            f: g
        ");
    }

    #[test]
    fn times_are_local_dates_with_their_age() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T21:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let local = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        };
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        for (when, age) in [
            ("2026-12-06T21:00:00Z", "just now"),
            ("2026-12-06T20:59:30Z", "30 s ago"),
            ("2026-12-06T20:55:00Z", "5 min ago"),
            ("2026-12-06T18:00:00Z", "3 h ago"),
            ("2026-12-01T21:00:00Z", "5 d ago"),
            ("2026-12-06T21:10:00Z", "in 10 min"),
        ] {
            assert_eq!(
                describe_time(at(when), now),
                format!("{} ({age})", local(when))
            );
        }
        // Epoch milliseconds and RFC 3339 in time fields; other fields and small numbers
        // are left alone.
        let ms = serde_json::json!(1_765_000_000_000_i64);
        assert!(field_cell("created_at", Some(&ms)).contains(" ago)"));
        assert!(
            field_cell("at", Some(&serde_json::json!("2026-12-06T20:00:00Z"))).ends_with(" ago)")
        );
        assert_eq!(field_cell("requests", Some(&ms)), "1765000000000");
        assert_eq!(field_cell("updated_at", Some(&serde_json::json!(42))), "42");
        assert_eq!(
            field_cell("last_seen", Some(&serde_json::json!("never"))),
            "never"
        );
        assert_eq!(field_cell("next_run", None), "-");
    }
}
