//! Wall-clock times as the model reads and writes them, without a date library: unix
//! milliseconds to RFC 3339 UTC text ([`format_rfc3339`], [`format_minutes`]) and RFC 3339
//! text with an explicit offset back to unix milliseconds ([`parse_rfc3339`]).
//!
//! The runner has no timezone database: the model is shown UTC and gives times with an
//! offset (`2025-06-01T09:00:00+02:00`); named timezones are only passed on to the host for
//! cron schedules.

/// Why a time text was refused. Reported to the model; never retryable as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error(
        "{0:?} is not a time like 2025-06-01T09:00:00Z or 2025-06-01T09:00:00+02:00 (RFC 3339, with `Z` or an offset)"
    )]
    NotRfc3339(String),
    #[error("{0:?} has no UTC offset: add `Z` for UTC or an offset such as +02:00")]
    NoOffset(String),
    #[error("{0:?} names a date or time that does not exist")]
    OutOfRange(String),
}

const MS_PER_DAY: i64 = 86_400_000;

/// `2025-06-01T09:00:00Z` (seconds precision, UTC).
pub fn format_rfc3339(unix_ms: i64) -> String {
    let (days, ms_of_day) = (
        unix_ms.div_euclid(MS_PER_DAY),
        unix_ms.rem_euclid(MS_PER_DAY),
    );
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `2025-06-01 09:00 UTC` (minutes precision), for message headers.
pub fn format_minutes(unix_ms: i64) -> String {
    let (days, ms_of_day) = (
        unix_ms.div_euclid(MS_PER_DAY),
        unix_ms.rem_euclid(MS_PER_DAY),
    );
    let (year, month, day) = civil_from_days(days);
    let minutes = ms_of_day / 60_000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or `±HH:MM` (a space may stand
/// for the `T`) into unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, ClockError> {
    let trimmed = text.trim();
    let not = || ClockError::NotRfc3339(trimmed.to_owned());
    let bytes = trimmed.as_bytes();
    if bytes.len() < 16 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return Err(not());
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(not());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, ClockError> {
        let part = trimmed.get(range).ok_or_else(not)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| not())
        } else {
            Err(not())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute) = (number(11..13)?, number(14..16)?);
    let mut rest = &trimmed[16..];
    let mut second = 0;
    let mut millis = 0;
    if let Some(after_colon) = rest.strip_prefix(':') {
        let digits = after_colon.get(..2).ok_or_else(not)?;
        second = digits.parse::<i64>().map_err(|_| not())?;
        rest = &after_colon[2..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let n_digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if n_digits == 0 {
                return Err(not());
            }
            let padded = format!("{:0<3}", &fraction[..n_digits.min(3)]);
            millis = padded.parse::<i64>().map_err(|_| not())?;
            rest = &fraction[n_digits..];
        }
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        "" => return Err(ClockError::NoOffset(trimmed.to_owned())),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(not()),
            };
            let offset = rest[1..].replace(':', "");
            if offset.len() != 4 || !offset.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not());
            }
            let hours: i64 = offset[..2].parse().map_err(|_| not())?;
            let minutes: i64 = offset[2..].parse().map_err(|_| not())?;
            if hours > 23 || minutes > 59 {
                return Err(ClockError::OutOfRange(trimmed.to_owned()));
            }
            sign * (hours * 60 + minutes)
        }
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(ClockError::OutOfRange(trimmed.to_owned()));
    }
    let days = days_from_civil(year, month, day);
    let local_ms = days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second.min(59)) * 1000 + millis;
    Ok(local_ms - offset_minutes * 60_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_748_768_405_123), "2025-06-01T09:00:05Z");
        assert_eq!(format_minutes(1_748_768_405_123), "2025-06-01 09:00 UTC");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_table() {
        let check = |text: &str, expected: Result<i64, &str>| match (parse_rfc3339(text), expected)
        {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(fragment)) => {
                assert!(got.to_string().contains(fragment), "{text}: {got}")
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        };
        check("2025-06-01T09:00:05Z", Ok(1_748_768_405_000));
        check("2025-06-01T09:00:05.123Z", Ok(1_748_768_405_123));
        check("2025-06-01T11:00:05+02:00", Ok(1_748_768_405_000));
        check("2025-06-01 04:30:05-0430", Ok(1_748_768_405_000));
        check("2025-06-01T09:00Z", Ok(1_748_768_400_000));
        check("2025-06-01T09:00:05", Err("no UTC offset"));
        check("2025-02-29T09:00:00Z", Err("does not exist"));
        check("2024-02-29T09:00:00Z", Ok(1_709_197_200_000));
        check("2025-06-01T24:00:00Z", Err("does not exist"));
        check("tomorrow at nine", Err("is not a time like"));
        check("2025-06-01T09:00:05+2", Err("is not a time like"));
        check("2025-06-01T09:00:05.Z", Err("is not a time like"));
    }

    #[test]
    fn round_trips_over_centuries() {
        for ms in [0, 86_399_999, 4_102_444_800_000, -2_208_988_800_000] {
            let text = format_rfc3339(ms);
            assert_eq!(parse_rfc3339(&text), Ok(ms - ms.rem_euclid(1000)), "{text}");
        }
    }
}
