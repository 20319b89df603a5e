//! When a task runs: the host's evaluation of [`protocol::schedule::Schedule`]s, with real
//! timezones (`chrono-tz`) and cron arithmetic (`croner`, five fields, Vixie semantics: a
//! day-of-month and a day-of-week restriction match when either does).
//!
//! [`first_run`] is when a newly scheduled (or rescheduled) task first runs. [`next_run`] is
//! the next run of a recurring task after one finished, counted from the run's *scheduled*
//! time, never from "now", so a slow turn does not make the schedule drift. The catch-up
//! policy: when the next occurrence after the scheduled time has already passed (the host was
//! down, or the turn ran past it), every missed occurrence collapses into one run as soon as
//! possible — stamped with the latest missed occurrence — and the schedule carries on from
//! there. So a task never fires more than once to catch up, and no missed occurrence older
//! than one period is run. [`follow_up`] writes that next run into the session's inbox.

mod follow_up;

pub use follow_up::follow_up;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use protocol::schedule::{Recurrence, Schedule};

/// Why a schedule cannot be evaluated. Not retryable: the schedule is wrong as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "timezone {0:?} is not a known IANA timezone (e.g. Europe/Paris, America/New_York, UTC)"
    )]
    UnknownTimezone(String),
    #[error("cron schedule {cron:?} is not valid: {reason}")]
    BadCron { cron: String, reason: String },
    #[error("cron schedule {0:?} has no next occurrence")]
    NoOccurrence(String),
}

/// A parsed recurrence, ready to evaluate.
struct Evaluator {
    cron: Cron,
    timezone: Tz,
    text: String,
}

impl Evaluator {
    fn new(recurrence: &Recurrence) -> Result<Self, ScheduleError> {
        let timezone = match &recurrence.timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::UnknownTimezone(name.clone()))?,
        };
        protocol::schedule::validate_cron(&recurrence.cron).map_err(|reason| {
            ScheduleError::BadCron {
                cron: recurrence.cron.clone(),
                reason,
            }
        })?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&recurrence.cron)
            .map_err(|e| ScheduleError::BadCron {
                cron: recurrence.cron.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            cron,
            timezone,
            text: recurrence.to_column(),
        })
    }

    fn at(&self, unix_ms: i64) -> DateTime<Tz> {
        let utc = Utc
            .timestamp_millis_opt(unix_ms)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        utc.with_timezone(&self.timezone)
    }

    /// The first occurrence strictly after `unix_ms`.
    fn after(&self, unix_ms: i64) -> Result<i64, ScheduleError> {
        self.cron
            .find_next_occurrence(&self.at(unix_ms), false)
            .map(|next| next.timestamp_millis())
            .map_err(|_| ScheduleError::NoOccurrence(self.text.clone()))
    }

    /// The last occurrence at or before `unix_ms`.
    fn at_or_before(&self, unix_ms: i64) -> Result<i64, ScheduleError> {
        self.cron
            .find_previous_occurrence(&self.at(unix_ms), true)
            .map(|previous| previous.timestamp_millis())
            .map_err(|_| ScheduleError::NoOccurrence(self.text.clone()))
    }
}

/// Checks that a recurrence can be evaluated (a known timezone, a cron croner reads).
pub fn check(recurrence: &Recurrence) -> Result<(), ScheduleError> {
    Evaluator::new(recurrence).map(|_| ())
}

/// When a task scheduled at `now` first runs: the given instant, or the first cron
/// occurrence after `now`.
pub fn first_run(schedule: &Schedule, now: i64) -> Result<i64, ScheduleError> {
    match schedule {
        Schedule::At(at) => Ok(*at),
        Schedule::Cron(recurrence) => Evaluator::new(recurrence)?.after(now),
    }
}

/// The next run of a recurring task whose run scheduled at `scheduled_at` has finished, at
/// `now`, with the catch-up policy of this module's docs.
pub fn next_run(
    recurrence: &Recurrence,
    scheduled_at: i64,
    now: i64,
) -> Result<i64, ScheduleError> {
    let evaluator = Evaluator::new(recurrence)?;
    let next = evaluator.after(scheduled_at)?;
    if next > now {
        return Ok(next);
    }
    // Missed occurrences: run once for the latest of them, now.
    let latest_missed = evaluator.at_or_before(now)?;
    Ok(latest_missed.max(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn cron(cron: &str, timezone: Option<&str>) -> Recurrence {
        Recurrence {
            cron: cron.into(),
            timezone: timezone.map(str::to_owned),
        }
    }

    #[test]
    fn first_runs() {
        let now = ms("2025-03-10T08:30:00Z");
        for (schedule, want) in [
            (Schedule::At(42), 42),
            (
                Schedule::Cron(cron("0 9 * * *", None)),
                ms("2025-03-10T09:00:00Z"),
            ),
            (
                // 09:00 in Paris is 08:00 UTC in winter: already past today.
                Schedule::Cron(cron("0 9 * * *", Some("Europe/Paris"))),
                ms("2025-03-11T08:00:00Z"),
            ),
            (
                Schedule::Cron(cron("*/15 * * * *", None)),
                ms("2025-03-10T08:45:00Z"),
            ),
            (
                Schedule::Cron(cron("@daily", Some("America/New_York"))),
                ms("2025-03-11T04:00:00Z"),
            ),
            (
                // Sunday as 7 and as a name.
                Schedule::Cron(cron("0 0 * * 7", None)),
                ms("2025-03-16T00:00:00Z"),
            ),
            (
                Schedule::Cron(cron("0 0 * * sun", None)),
                ms("2025-03-16T00:00:00Z"),
            ),
        ] {
            assert_eq!(first_run(&schedule, now), Ok(want), "{schedule:?}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let bad_zone = first_run(&Schedule::Cron(cron("0 9 * * *", Some("Mars/Olympus"))), 0);
        assert_eq!(
            bad_zone,
            Err(ScheduleError::UnknownTimezone("Mars/Olympus".into()))
        );
        assert!(matches!(
            check(&cron("61 * * * *", None)),
            Err(ScheduleError::BadCron { .. })
        ));
        assert!(check(&cron("0 9 * * mon-fri", Some("Asia/Tokyo"))).is_ok());
    }

    #[test]
    fn next_runs_count_from_the_scheduled_time_and_catch_up_once() {
        let hourly = cron("0 * * * *", None);
        let scheduled = ms("2025-03-10T08:00:00Z");
        // The turn finished a few minutes late: the next run is still on the hour.
        assert_eq!(
            next_run(&hourly, scheduled, ms("2025-03-10T08:07:00Z")),
            Ok(ms("2025-03-10T09:00:00Z"))
        );
        // The host was down for hours: one catch-up run, for the latest missed hour.
        assert_eq!(
            next_run(&hourly, scheduled, ms("2025-03-10T13:20:00Z")),
            Ok(ms("2025-03-10T13:00:00Z"))
        );
        // After the catch-up, the schedule carries on from there.
        assert_eq!(
            next_run(
                &hourly,
                ms("2025-03-10T13:00:00Z"),
                ms("2025-03-10T13:21:00Z")
            ),
            Ok(ms("2025-03-10T14:00:00Z"))
        );
        // Daylight saving: 09:00 Paris stays 09:00 local across the change.
        let paris = cron("0 9 * * *", Some("Europe/Paris"));
        assert_eq!(
            next_run(
                &paris,
                ms("2025-03-29T08:00:00Z"),
                ms("2025-03-29T08:01:00Z")
            ),
            Ok(ms("2025-03-30T07:00:00Z"))
        );
    }
}
