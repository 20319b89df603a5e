//! Wall-clock timestamps in RFC 3339 (UTC), which Docker and the host's log use: parse them
//! into [`SystemTime`] to line up events seen by different processes on one machine, and
//! format [`SystemTime`] for the report. No time-zone database is needed: both sides are UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`; offsets other than zero are applied.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, rest) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let offset_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(offset_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms_parts = hms.split(':');
    let hour: i64 = hms_parts.next()?.parse().ok()?;
    let minute: i64 = hms_parts.next()?.parse().ok()?;
    let second: i64 = hms_parts.next()?.parse().ok()?;
    let digits: String = fraction
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    let offset_secs = match zone.chars().next()? {
        'Z' | 'z' => 0,
        sign => {
            let (h, m) = zone[1..].split_once(':')?;
            let magnitude = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if sign == '-' { -magnitude } else { magnitude }
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Signed milliseconds from `from` to `to`.
pub fn millis_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(ahead) => ahead.as_secs_f64() * 1e3,
        Err(behind) => -behind.duration().as_secs_f64() * 1e3,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_unix_nanos: u128) {
        let parsed = parse_rfc3339(text).unwrap();
        assert_eq!(
            parsed.duration_since(UNIX_EPOCH).unwrap().as_nanos(),
            expected_unix_nanos,
            "{text}"
        );
    }

    #[test]
    fn parses_docker_and_tracing_timestamps() {
        check("1970-01-01T00:00:00Z", 0);
        check("2024-02-29T12:34:56.5Z", 1_709_210_096_500_000_000);
        check("2024-02-29T12:34:56.123456789Z", 1_709_210_096_123_456_789);
        check("2024-02-29T13:34:56.123456Z", 1_709_213_696_123_456_000);
        check("2024-02-29T14:34:56+01:00", 1_709_213_696_000_000_000);
        assert!(parse_rfc3339("0001-01-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("not a time").is_none());
    }

    #[test]
    fn formats_round_trip() {
        let time = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(format_rfc3339(time), "2024-02-29T12:34:56Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(time)), Some(time));
    }
}
