//! Task schedules: [`Schedule`] (once at a time, or on a cron [`Recurrence`] in a timezone),
//! how a recurrence is stored in `messages_in.recurrence` ([`Recurrence::to_column`]), the
//! `task` rows that hold a task's next run ([`NewInboundRow::task`], read back as a
//! [`ScheduledTask`]), and the checks both sides apply to task ids, cron expressions and
//! timezone names ([`is_valid_task_id`], [`validate_cron`], [`validate_timezone`]).
//!
//! The `system` actions that create and change tasks are in [`crate::actions`].

use crate::ids::is_safe_folder_name;
use crate::rows::{InboundKind, InboundRow, InboundStatus, NewInboundRow};

/// Longest task id, in bytes.
pub const MAX_TASK_ID_BYTES: usize = 64;
/// Longest cron expression, in bytes.
pub const MAX_CRON_BYTES: usize = 128;
/// Longest timezone name, in bytes.
pub const MAX_TIMEZONE_BYTES: usize = 64;
/// The prefix [`Recurrence::to_column`] puts before a cron expression with a timezone.
pub const CRON_TZ_PREFIX: &str = "CRON_TZ=";

/// When a task runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Once, at this instant (unix ms). A time in the past runs as soon as possible.
    At(i64),
    /// Repeatedly, on a five-field cron schedule ([`validate_cron`]) evaluated in
    /// `timezone` (an IANA name such as `Europe/Paris`; `None` = UTC).
    Cron(Recurrence),
}

/// A cron schedule and the timezone it is evaluated in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recurrence {
    pub cron: String,
    pub timezone: Option<String>,
}

impl Recurrence {
    /// The `messages_in.recurrence` text: the cron expression, preceded by
    /// `CRON_TZ=<timezone> ` when there is a timezone (the convention of cronie and others).
    pub fn to_column(&self) -> String {
        match &self.timezone {
            Some(timezone) => format!("{CRON_TZ_PREFIX}{timezone} {}", self.cron),
            None => self.cron.clone(),
        }
    }

    /// Reads a `messages_in.recurrence` text written by [`Recurrence::to_column`].
    pub fn from_column(text: &str) -> Self {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix(CRON_TZ_PREFIX)
            && let Some((timezone, cron)) = rest.split_once(char::is_whitespace)
        {
            return Self {
                cron: cron.trim().to_owned(),
                timezone: Some(timezone.to_owned()),
            };
        }
        Self {
            cron: text.to_owned(),
            timezone: None,
        }
    }
}

/// A scheduled task as the agent sees it: the next pending (or paused) row of a series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledTask {
    pub task_id: String,
    pub prompt: String,
    /// When it runs next (unix ms); `None` = as soon as possible.
    pub next_run_at: Option<i64>,
    /// `None` for a one-off task.
    pub recurrence: Option<Recurrence>,
    /// `true` when paused.
    pub paused: bool,
}

impl ScheduledTask {
    /// The task a `messages_in` row stands for: a `task` row with a `series_id` that is
    /// pending or paused. `None` for any other row.
    pub fn from_row(row: &InboundRow) -> Option<Self> {
        if row.kind != InboundKind::Task {
            return None;
        }
        let paused = match row.status {
            InboundStatus::Pending => false,
            InboundStatus::Paused => true,
            InboundStatus::Completed | InboundStatus::Failed | InboundStatus::Cancelled => {
                return None;
            }
        };
        let task_id = row.series_id.clone()?;
        let prompt = serde_json::from_str::<crate::InboundContent>(&row.content)
            .map(|content| content.text)
            .unwrap_or_else(|_| row.content.clone());
        Some(Self {
            task_id,
            prompt,
            next_run_at: row.process_after,
            recurrence: row
                .recurrence
                .as_deref()
                .filter(|text| !text.trim().is_empty())
                .map(Recurrence::from_column),
            paused,
        })
    }
}

impl NewInboundRow {
    /// Host: the row of a task's next run: kind `task`, `series_id` = the task id,
    /// `process_after` = when, `recurrence` from the schedule, the prompt as content text.
    pub fn task(task_id: &str, prompt: &str, run_at: i64, recurrence: Option<&Recurrence>) -> Self {
        let mut row = NewInboundRow::chat(&crate::InboundContent {
            text: prompt.to_owned(),
            ..crate::InboundContent::default()
        });
        row.kind = InboundKind::Task;
        row.process_after = Some(run_at);
        row.recurrence = recurrence.map(Recurrence::to_column);
        row.series_id = Some(task_id.to_owned());
        row
    }
}

/// True for a task id: a safe folder name of at most [`MAX_TASK_ID_BYTES`] bytes.
pub fn is_valid_task_id(task_id: &str) -> bool {
    task_id.len() <= MAX_TASK_ID_BYTES && is_safe_folder_name(task_id)
}

/// Checks a five-field cron expression (`minute hour day-of-month month day-of-week`):
/// each field `*` or a comma list of `n`, `a-b`, `*/s`, `a-b/s`, `n/s`, with numbers in the
/// field's range (minute 0-59, hour 0-23, day 1-31, month 1-12 or `jan`-`dec`, weekday 0-7
/// or `sun`-`sat`, 0 and 7 both Sunday). The macros `@hourly`, `@daily`, `@weekly`,
/// `@monthly` and `@yearly` are accepted too. The error says what is wrong.
pub fn validate_cron(cron: &str) -> Result<(), String> {
    let cron = cron.trim();
    if cron.len() > MAX_CRON_BYTES {
        return Err(format!("is over {MAX_CRON_BYTES} bytes"));
    }
    if cron.starts_with('@') {
        return match cron {
            "@hourly" | "@daily" | "@weekly" | "@monthly" | "@yearly" | "@annually" => Ok(()),
            _ => Err(format!(
                "{cron:?} is not a known macro (@hourly, @daily, @weekly, @monthly, @yearly)"
            )),
        };
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{cron:?} has {} fields; a cron schedule has five: minute hour day-of-month month day-of-week",
            fields.len()
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, MONTHS, 1),
        ("day-of-week", 0, 7, DAYS, 0),
    ];
    for (field, (name, min, max, names, first)) in fields.iter().zip(specs) {
        let value = |text: &str| -> Result<u32, String> {
            let lower = text.to_ascii_lowercase();
            let number = match names.iter().position(|n| *n == lower) {
                Some(index) => u32::try_from(index)
                    .unwrap_or(u32::MAX)
                    .saturating_add(first),
                None => text
                    .parse::<u32>()
                    .map_err(|_| format!("{name} {text:?} is not a number"))?,
            };
            if number < min || number > max {
                return Err(format!("{name} {number} is outside {min}-{max}"));
            }
            Ok(number)
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(step) if step >= 1 && step <= max.max(1) => {}
                    _ => return Err(format!("{name} step {step:?} is not a number in 1-{max}")),
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (value(low)?, value(high)?);
                    if low > high {
                        return Err(format!("{name} range {range:?} runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

/// Checks the shape of a timezone name: `UTC`, or an IANA name such as `Europe/Paris` or
/// `America/Argentina/Buenos_Aires` (letters, digits, `_`, `+`, `-`, separated by `/`).
/// Whether the zone exists is for the host to say.
pub fn validate_timezone(timezone: &str) -> Result<(), String> {
    let ok = !timezone.is_empty()
        && timezone.len() <= MAX_TIMEZONE_BYTES
        && timezone.split('/').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a timezone name like `Europe/Paris` or `UTC`",
            truncate(timezone, 80)
        ))
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_table() {
        for (cron, ok) in [
            ("* * * * *", Ok(())),
            ("*/15 9-17 * * 1-5", Ok(())),
            ("0 0 1 jan,jul SUN", Ok(())),
            ("0,30 8 1-31/2 * 7", Ok(())),
            ("@weekly", Ok(())),
            ("@often", Err("not a known macro")),
            ("* * * *", Err("has 4 fields")),
            ("0 24 * * *", Err("hour 24 is outside 0-23")),
            ("0 0 0 * *", Err("day-of-month 0 is outside 1-31")),
            ("0 0 * 13 *", Err("month 13 is outside 1-12")),
            ("*/0 * * * *", Err("step \"0\"")),
            ("5-1 * * * *", Err("runs backwards")),
            ("x * * * *", Err("minute \"x\" is not a number")),
        ] {
            match (validate_cron(cron), ok) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(fragment)) => {
                    assert!(got.contains(fragment), "{cron}: {got} lacks {fragment}")
                }
                (got, want) => panic!("{cron}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn timezones() {
        for (timezone, ok) in [
            ("UTC", true),
            ("Europe/Paris", true),
            ("America/Argentina/Buenos_Aires", true),
            ("Etc/GMT+5", true),
            ("", false),
            ("/etc/passwd", false),
            ("Europe/../x", false),
            ("Europe Paris", false),
        ] {
            assert_eq!(validate_timezone(timezone).is_ok(), ok, "{timezone:?}");
        }
    }

    #[test]
    fn recurrence_column() {
        let with_zone = Recurrence {
            cron: "0 9 * * *".into(),
            timezone: Some("Europe/Paris".into()),
        };
        assert_eq!(with_zone.to_column(), "CRON_TZ=Europe/Paris 0 9 * * *");
        assert_eq!(Recurrence::from_column(&with_zone.to_column()), with_zone);
        let utc = Recurrence {
            cron: "@daily".into(),
            timezone: None,
        };
        assert_eq!(Recurrence::from_column(&utc.to_column()), utc);
    }

    #[test]
    fn task_rows_list_as_scheduled_tasks() {
        let recurrence = Recurrence {
            cron: "0 9 * * *".into(),
            timezone: Some("UTC".into()),
        };
        let new = NewInboundRow::task("t-1", "water the plants", 42, Some(&recurrence));
        assert_eq!(new.kind, InboundKind::Task);
        assert!(new.trigger);
        let mut row = InboundRow {
            id: new.id.clone(),
            seq: crate::Seq(2),
            kind: new.kind,
            created_at: 0,
            status: InboundStatus::Paused,
            process_after: new.process_after,
            recurrence: new.recurrence.clone(),
            series_id: new.series_id.clone(),
            tries: 0,
            trigger: new.trigger,
            on_wake: false,
            channel_type: None,
            platform_id: None,
            thread_id: None,
            source_session_id: None,
            content: new.content.clone(),
        };
        assert_eq!(
            ScheduledTask::from_row(&row),
            Some(ScheduledTask {
                task_id: "t-1".into(),
                prompt: "water the plants".into(),
                next_run_at: Some(42),
                recurrence: Some(recurrence),
                paused: true,
            })
        );
        row.status = InboundStatus::Completed;
        assert_eq!(ScheduledTask::from_row(&row), None);
        row.status = InboundStatus::Pending;
        row.kind = InboundKind::Chat;
        assert_eq!(ScheduledTask::from_row(&row), None);
    }
}
