use super::*;
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next(schedule: &str, t: &str) -> String {
    Schedule::parse(schedule)
        .unwrap()
        .next_after(at(t))
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn macros_and_every() {
    assert_eq!(
        next("@hourly", "2025-01-31T09:30:00Z"),
        "2025-01-31T10:00:00Z"
    );
    assert_eq!(
        next("@daily", "2025-01-31T09:30:00Z"),
        "2025-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@midnight", "2025-01-31T00:00:00Z"),
        "2025-02-01T00:00:00Z",
        "strictly after"
    );
    assert_eq!(
        next("@weekly", "2025-01-31T09:30:00Z"),
        "2025-02-02T00:00:00Z",
        "next Sunday"
    );
    assert_eq!(
        next("@monthly", "2025-01-31T09:30:00Z"),
        "2025-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@yearly", "2025-01-31T09:30:00Z"),
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@annually", "2025-01-31T09:30:00Z"),
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@every 1m30s", "2025-01-31T09:30:10Z"),
        "2025-01-31T09:31:40Z"
    );
    assert_eq!(
        Schedule::parse("@every 90s").unwrap().to_string(),
        "@every 1m30s"
    );
}

#[test]
fn huge_steps_and_far_past_phases_stay_finite() {
    // A step past u32 arithmetic selects its start only (it used to wrap).
    assert_eq!(
        next("5/4294967295 * * * *", "2025-01-01T10:00:00Z"),
        "2025-01-01T10:05:00Z"
    );
    let every = Schedule::parse("@every 1s").unwrap();
    let now = at("2025-01-01T10:00:00.500000Z");
    for past in [
        at("2001-01-01T00:00:00Z"),
        at("0001-01-01T00:00:00Z"),
        DateTime::<Utc>::MIN_UTC,
    ] {
        let due = every
            .next_dispatch(Some(past), now)
            .unwrap_or_else(|| panic!("{past}: a due schedule always has a next run"));
        assert!(
            due > now && due <= now + chrono::Duration::seconds(1),
            "{past}: {due}"
        );
    }
}

#[test]
fn cron_features() {
    assert_eq!(
        next("*/15 * * * *", "2025-01-31T09:31:00Z"),
        "2025-01-31T09:45:00Z"
    );
    assert_eq!(
        next("5-10/2 * * * *", "2025-01-31T09:07:00Z"),
        "2025-01-31T09:09:00Z"
    );
    assert_eq!(
        next("30/10 * * * *", "2025-01-31T09:55:00Z"),
        "2025-01-31T10:30:00Z"
    );
    assert_eq!(
        next("0 9,17 * * *", "2025-01-31T09:00:00Z"),
        "2025-01-31T17:00:00Z"
    );
    assert_eq!(
        next("0 0 * feb *", "2025-01-31T09:00:00Z"),
        "2025-02-01T00:00:00Z"
    );
    assert_eq!(
        next("0 0 ? * mon-fri", "2025-02-01T09:00:00Z"),
        "2025-02-03T00:00:00Z",
        "Saturday → Monday"
    );
    assert_eq!(
        next("0 0 * * 7", "2025-01-31T09:00:00Z"),
        "2025-02-02T00:00:00Z",
        "7 is Sunday"
    );
    assert_eq!(
        next("0 0 29 2 *", "2025-01-01T00:00:00Z"),
        "2028-02-29T00:00:00Z",
        "leap day"
    );
    // Both day fields restricted: either matches (the 13th, or any Friday).
    assert_eq!(
        next("0 0 13 * FRI", "2025-01-01T00:00:00Z"),
        "2025-01-03T00:00:00Z"
    );
    assert_eq!(
        next("0 0 13 * FRI", "2025-01-10T00:00:00Z"),
        "2025-01-13T00:00:00Z"
    );
    // One restricted: both must (any day-of-month, Fridays only).
    assert_eq!(
        next("0 0 * * FRI", "2025-01-10T00:00:00Z"),
        "2025-01-17T00:00:00Z"
    );
}

#[test]
fn invalid_schedules_say_why() {
    let err = |s: &str| Schedule::parse(s).unwrap_err();
    assert_eq!(err("61 * * * *"), "minute 61 out of range 0-59");
    assert_eq!(err("* 24 * * *"), "hour 24 out of range 0-23");
    assert_eq!(
        err("* * * * * *"),
        "expected 5 cron fields (minute hour day-of-month month day-of-week), got 6"
    );
    assert_eq!(err("* * 0 * *"), "day-of-month 0 out of range 1-31");
    assert_eq!(err("*/0 * * * *"), "minute: step must be at least 1");
    assert_eq!(err("5-1 * * * *"), "minute: range 5-1 is backwards");
    assert_eq!(
        err("? * * * *"),
        "minute: '?' is only allowed in the day fields"
    );
    assert_eq!(
        err("0 0 * FOO *"),
        "month \"FOO\" is not a number or a name"
    );
    assert_eq!(err("0 0 30 2 *"), "schedule never fires");
    assert_eq!(
        err("@every 500ms"),
        "@every: the interval must be between 1s and 366 days"
    );
    assert_eq!(err("@every"), "@every: empty duration");
    assert_eq!(err("@often"), "unknown schedule macro \"@often\"");
}

fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1u32..=(max - min + 1)).prop_map(|s| format!("*/{s}")),
        proptest::collection::vec(min..=max, 1..4).prop_map(|v| v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")),
    ]
}

fn cron() -> impl Strategy<Value = String> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 28),
        field(1, 12),
        field(0, 7),
    )
        .prop_map(|(m, h, d, mo, w)| format!("{m} {h} {d} {mo} {w}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// next_after(t) > t, lands on a whole matching minute, and no matching minute lies
    /// between t and it (no skipped tick).
    #[test]
    fn next_after_is_the_first_later_match(expr in cron(), secs in 1_600_000_000i64..1_900_000_000i64) {
        // A valid expression may still fire too rarely ("schedule never fires" within five
        // years of now, e.g. the 25th of January when it is a Sunday): nothing to check.
        let parsed = Schedule::parse(&expr);
        prop_assume!(parsed.as_ref().err().map(String::as_str) != Some("schedule never fires"));
        let schedule = parsed.unwrap();
        let t = Utc.timestamp_opt(secs, 0).unwrap();
        let Some(n) = schedule.next_after(t) else {
            return Ok(()); // fires within five years of now, but not of this t
        };
        prop_assert!(n > t);
        prop_assert!(schedule.matches(n), "{expr}: {n} does not match");
        let mut m = t.with_second(0).unwrap() + ChronoDuration::minutes(1);
        let mut checked = 0;
        while m < n && checked < 200_000 {
            prop_assert!(!schedule.matches(m), "{expr}: skipped {m} before {n}");
            m += ChronoDuration::minutes(1);
            checked += 1;
        }
    }

    #[test]
    fn every_steps_exactly(secs in 1u64..100_000, t in 1_600_000_000i64..1_900_000_000i64) {
        let schedule = Schedule::parse(&format!("@every {secs}s")).unwrap();
        let t = Utc.timestamp_opt(t, 0).unwrap();
        prop_assert_eq!(schedule.next_after(t).unwrap() - t, ChronoDuration::seconds(secs as i64));
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,40}") {
        let _ = Schedule::parse(&text);
    }
}
