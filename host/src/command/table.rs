//! Text for people: [`Table`] (aligned columns, one row per line) and [`outline`] (an indented
//! rendering of a JSON document, for `show` verbs).

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
                        let _ = writeln!(out, "{pad}{key}: {}", cell(Some(value)));
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
}
