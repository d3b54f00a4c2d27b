//! The duration text of the contract (§3.2): one or more `<integer><unit>` groups with
//! units `h`, `m`, `s`, `ms` (`30s`, `1m30s`, `1500ms`). Settings also take days (`30d`,
//! the retention defaults of §5); schedules do not. Range rules belong to the caller
//! (settings allow `0` for "none"; schedules need at least one second).

use std::time::Duration;

/// Parses duration text; the error says what is wrong in words a user can act on.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_units(text, false)
}

/// As [`parse`], with days (`d`) as well: for settings.
pub fn parse_with_days(text: &str) -> Result<Duration, String> {
    parse_units(text, true)
}

fn parse_units(text: &str, days: bool) -> Result<Duration, String> {
    let units = if days {
        "d, h, m, s or ms"
    } else {
        "h, m, s or ms"
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bytes = text.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "invalid duration {text:?}: expected a number at position {}",
                start + 1
            ));
        }
        let number: u64 = text[start..i]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let per_unit_ms: u64 = match &text[unit_start..i] {
            "d" if days => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            "" => return Err(format!("invalid duration {text:?}: missing unit ({units})")),
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use {units})"
                ))
            }
        };
        total_ms = number
            .checked_mul(per_unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the same notation, largest units first (`1m30s`, `1500ms` →
/// `1s500ms`, zero → `0s`).
pub fn format(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_examples() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn days_only_where_asked_for() {
        assert_eq!(parse_with_days("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            parse_with_days("1d12h"),
            Ok(Duration::from_secs(36 * 3_600))
        );
        assert_eq!(
            parse("1d"),
            Err("invalid duration \"1d\": unknown unit \"d\" (use h, m, s or ms)".to_owned())
        );
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "s",
            "10",
            "10x",
            "1.5s",
            "-1s",
            "1s 2s",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for ms in [1u64, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 3_723_004] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
