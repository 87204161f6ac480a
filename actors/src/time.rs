//! Wall-clock helpers: unix milliseconds and ISO 8601 (`2026-05-03T12:00:00.000Z`, the form
//! JavaScript's `toISOString()` produces and the broker sends). Pure, no actix.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch; 0 if the clock is before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats unix milliseconds as ISO 8601 UTC with millisecond precision.
pub fn iso_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff…][Z|±HH:MM]` (or a bare date) into unix milliseconds.
pub fn ms_from_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !(b[10] == b'T' || b[10] == b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    ms += (h * 3600 + mi * 60 + se) * 1000;
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.clone();
        padded.truncate(3);
        while padded.len() < 3 {
            padded.push('0');
        }
        ms += padded.parse::<i64>().ok()?;
        rest = &frac[digits.len()..];
    }
    match rest {
        "" | "Z" | "z" => Some(ms),
        // `is_ascii` first: the byte slicing below must never split a character.
        tz if tz.is_ascii()
            && tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && &tz[3..4] == ":" =>
        {
            let oh: i64 = tz[1..3].parse().ok()?;
            let om: i64 = tz[4..6].parse().ok()?;
            let off = (oh * 60 + om) * 60_000;
            Some(if tz.starts_with('+') {
                ms - off
            } else {
                ms + off
            })
        }
        _ => None,
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript_to_iso_string() {
        assert_eq!(iso_from_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_from_ms(1_714_700_000_000), "2024-05-03T01:33:20.000Z");
        assert_eq!(iso_from_ms(1_795_831_747_412), "2026-11-28T02:09:07.412Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 1_714_700_000_000, 1_795_831_747_412, 951_782_400_123] {
            assert_eq!(ms_from_iso(&iso_from_ms(ms)), Some(ms));
        }
        assert_eq!(
            ms_from_iso("2024-05-03T03:33:20+02:00"),
            Some(1_714_700_000_000)
        );
        assert_eq!(ms_from_iso("2024-05-03"), Some(1_714_694_400_000));
        assert_eq!(ms_from_iso("2024-13-03"), None);
        assert_eq!(ms_from_iso("yesterday"), None);
        // Multi-byte characters where an offset is expected are refused, never sliced.
        assert_eq!(ms_from_iso("2026-01-01T00:00:00-0\u{e9}00"), None);
        assert_eq!(ms_from_iso("2026-01-01T00:00:00.5\u{e9}"), None);
        assert_eq!(ms_from_iso("2026-01-01\u{e9}00:00:00"), None);
    }
}
