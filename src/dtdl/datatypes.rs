//! Lexical forms of DTDL's temporal primitive schemas: `date`, `time` and
//! `dateTime` (RFC 3339) and `duration` (ISO 8601), as DTDL defines them.
//!
//! Used by the engine for duration-valued extension properties, and by
//! later layers to validate twin values against a schema.

/// `YYYY-MM-DD` with a real calendar date.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return false;
    };
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// `hh:mm:ss(.fff)?(Z|±hh:mm)`.
pub fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(sec)) = (digits(&b[0..2]), digits(&b[3..5]), digits(&b[6..8]))
    else {
        return false;
    };
    if h > 23 || m > 59 || sec > 60 {
        return false;
    }
    let mut rest = &b[8..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" | b"z" => true,
        [b'+' | b'-', oh1, oh2, b':', om1, om2] => {
            matches!((digits(&[*oh1, *oh2]), digits(&[*om1, *om2])), (Some(oh), Some(om)) if oh <= 23 && om <= 59)
        }
        _ => false,
    }
}

/// `date` `T` `time`.
pub fn is_date_time(s: &str) -> bool {
    match s.split_once(['T', 't']) {
        Some((d, t)) => is_date(d) && is_time(t),
        None => false,
    }
}

/// ISO 8601 duration: `P[nY][nM][nD][T[nH][nM][nS]]` or `PnW`; at least one
/// component, `T` followed by at least one, only the last one fractional.
pub fn is_duration(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return false;
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut fractional = false;
    let date_units: &[u8] = if date.contains('W') { b"WD" } else { b"YMD" };
    let Some(in_date) = components(date, date_units, &mut fractional) else {
        return false;
    };
    match time {
        Some(t) => matches!(components(t, b"HMS", &mut fractional), Some(n) if n > 0),
        None => in_date > 0,
    }
}

/// Counts `<number><unit>` components of `part`, units in the given order;
/// `None` if malformed or if anything follows a fractional component.
fn components(part: &str, units: &[u8], fractional: &mut bool) -> Option<usize> {
    let mut count = 0;
    let mut next_unit = 0;
    let mut s = part.as_bytes();
    while !s.is_empty() {
        if *fractional {
            return None;
        }
        let int = s.iter().take_while(|c| c.is_ascii_digit()).count();
        if int == 0 {
            return None;
        }
        let mut n = int;
        if s.get(n) == Some(&b'.') {
            let frac = s[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if frac == 0 {
                return None;
            }
            n += 1 + frac;
            *fractional = true;
        }
        let unit = *s.get(n)?;
        let pos = units[next_unit..].iter().position(|u| *u == unit)?;
        next_unit += pos + 1;
        count += 1;
        s = &s[n + 1..];
    }
    Some(count)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real_calendar_dates() {
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("2024-13-01"));
        assert!(!is_date("24-01-01"));
    }

    #[test]
    fn times_and_date_times_need_an_offset() {
        assert!(is_time("12:30:00Z"));
        assert!(is_time("23:59:60.123+02:00"));
        assert!(!is_time("12:30:00"));
        assert!(!is_time("24:00:00Z"));
        assert!(is_date_time("2024-05-01T08:00:00.5-07:00"));
        assert!(!is_date_time("2024-05-01 08:00:00Z"));
    }

    #[test]
    fn durations_follow_iso_8601() {
        for ok in [
            "P1D",
            "PT1H",
            "PT0.5S",
            "P1Y2M3DT4H5M6.7S",
            "P2W",
            "PT1.5H",
            "P1DT12H",
        ] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in [
            "P",
            "PT",
            "1D",
            "P1H",
            "PT1D",
            "P1.5DT1H",
            "P1M1Y",
            "PT1.5H30M",
            "P-1D",
            "",
        ] {
            assert!(!is_duration(bad), "{bad}");
        }
    }
}
