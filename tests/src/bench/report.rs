//! The benchmark's output: a [`Report`] of [`Row`]s (what was measured, the figure with its
//! sample size, the DESIGN §9 target, and whether it is [`Met`]), the scale, the machine, and
//! closing notes; rendered as one markdown table for stdout and the README, and serialised
//! as JSON to `data/bench/latest.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::machine::Machine;
use super::stats::Distribution;

/// Whether a figure meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Met {
    #[serde(rename = "yes")]
    Yes,
    #[serde(rename = "no")]
    No,
    /// No target applies (or nothing was measured).
    #[serde(rename = "n.a.")]
    NotApplicable,
}

impl Met {
    /// `Yes` when every check passed, `No` otherwise, `NotApplicable` with no checks.
    pub fn all(checks: &[bool]) -> Met {
        match (checks.is_empty(), checks.iter().all(|ok| *ok)) {
            (true, _) => Met::NotApplicable,
            (false, true) => Met::Yes,
            (false, false) => Met::No,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::NotApplicable => "n.a.",
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// A stable key for scripts reading the JSON.
    pub key: String,
    /// What was measured.
    pub what: String,
    /// The figure as a person reads it, with the sample size.
    pub figure: String,
    /// The same figure as numbers (`p50_ms`, `p99_ms`, `n`, `value`, ...).
    pub values: BTreeMap<String, f64>,
    /// The target from DESIGN §9, or "—".
    pub target: String,
    pub met: Met,
}

impl Row {
    /// A timing distribution: "p50 X ms, p99 Y ms (n = N)", checked against optional p50 and
    /// p99 limits in milliseconds.
    pub fn timing(
        key: &str,
        what: &str,
        distribution: &Distribution,
        p50_limit_ms: Option<f64>,
        p99_limit_ms: Option<f64>,
    ) -> Row {
        let mut target = Vec::new();
        let mut checks = Vec::new();
        if let Some(limit) = p50_limit_ms {
            target.push(format!("p50 <= {}", ms(limit)));
            checks.push(distribution.p50() <= limit);
        }
        if let Some(limit) = p99_limit_ms {
            target.push(format!("p99 <= {}", ms(limit)));
            checks.push(distribution.p99() <= limit);
        }
        let met = if distribution.is_empty() {
            Met::NotApplicable
        } else {
            Met::all(&checks)
        };
        Row {
            key: key.to_owned(),
            what: what.to_owned(),
            figure: timing_figure(distribution),
            values: timing_values(distribution),
            target: or_dash(target.join(", ")),
            met,
        }
    }

    /// A single figure with a free-form rendering and an optional check.
    pub fn value(key: &str, what: &str, figure: String, value: f64) -> Row {
        Row {
            key: key.to_owned(),
            what: what.to_owned(),
            figure,
            values: BTreeMap::from([("value".to_owned(), value)]),
            target: "—".to_owned(),
            met: Met::NotApplicable,
        }
    }

    /// Sets the target text and whether it is met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.met = if met { Met::Yes } else { Met::No };
        self
    }

    /// Adds a number to the JSON values.
    pub fn with(mut self, name: &str, value: f64) -> Row {
        self.values.insert(name.to_owned(), value);
        self
    }

    /// A row for a part that could not be measured, saying why.
    pub fn failed(key: &str, what: &str, target: &str, error: &anyhow::Error) -> Row {
        Row {
            key: key.to_owned(),
            what: what.to_owned(),
            figure: format!("not measured: {error:#}"),
            values: BTreeMap::new(),
            target: or_dash(target.to_owned()),
            met: Met::NotApplicable,
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `full` or `quick`, with the run sizes.
    pub scale: String,
    pub machine: Machine,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    pub duration_secs: f64,
    /// The 1-minute load average at start and at end.
    pub load_at_start: String,
    pub load_at_end: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    /// The markdown: a heading line with the scale and machine, the table, the notes.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "crabpot bench, scale **{}**, {} ({:.0} s; load {} at start, {} at end)  ",
            self.scale, self.started_at, self.duration_secs, self.load_at_start, self.load_at_end
        );
        let _ = writeln!(
            out,
            "machine: {} cores ({}), {} MiB RAM, Linux {}, Docker {} (API {}), commit {}\n",
            machine.cores,
            machine.cpu_model,
            machine.memory_mib,
            machine.kernel,
            machine.docker_version,
            machine.docker_api_version,
            machine.commit
        );
        let _ = writeln!(out, "| what | figure | target (DESIGN §9) | met |");
        let _ = writeln!(out, "|---|---|---|---|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&row.what),
                cell(&row.figure),
                cell(&row.target),
                row.met.as_str()
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// Writes the JSON document, creating the folder.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// "p50 X ms, p99 Y ms (n = N)".
pub fn timing_figure(distribution: &Distribution) -> String {
    if distribution.is_empty() {
        return "no samples".to_owned();
    }
    format!(
        "p50 {}, p99 {} (n = {})",
        ms(distribution.p50()),
        ms(distribution.p99()),
        distribution.n()
    )
}

fn timing_values(distribution: &Distribution) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("p50_ms".to_owned(), distribution.p50()),
        ("p99_ms".to_owned(), distribution.p99()),
        ("max_ms".to_owned(), distribution.max()),
        ("mean_ms".to_owned(), distribution.mean()),
        ("n".to_owned(), distribution.n() as f64),
    ])
}

/// Milliseconds with a precision that suits the size.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

/// Decimal megabytes (10^6 bytes, as Docker prints image sizes), one decimal.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "—".to_owned()
    } else {
        text
    }
}

/// A table cell: no newlines or pipes.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_rows_check_both_limits() {
        let fast = Distribution::from_millis(vec![1.0, 2.0, 3.0]);
        let row = Row::timing("k", "w", &fast, Some(20.0), Some(100.0));
        assert_eq!(row.met, Met::Yes);
        assert_eq!(row.figure, "p50 2.00 ms, p99 3.00 ms (n = 3)");
        assert_eq!(row.target, "p50 <= 20.0 ms, p99 <= 100 ms");
        let slow = Distribution::from_millis(vec![1.0, 2.0, 300.0]);
        assert_eq!(
            Row::timing("k", "w", &slow, Some(20.0), Some(100.0)).met,
            Met::No
        );
        let untargeted = Row::timing("k", "w", &slow, None, None);
        assert_eq!(
            (untargeted.met, untargeted.target.as_str()),
            (Met::NotApplicable, "—")
        );
    }

    #[test]
    fn cells_escape_pipes() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
