//! Schedules (CONTRACT.md §3.2): `@every <duration>`, the `@hourly`…`@yearly` macros, and
//! five-field cron `minute hour day-of-month month day-of-week` with lists, ranges, steps
//! (`*/n`, `a-b/n`, `a/n`), month and weekday names (case-insensitive), `?` in the day
//! fields and weekday 7 = Sunday. All times are UTC.
//!
//! Day matching follows cron: when both day fields are restricted, either may match;
//! otherwise both must (an unrestricted field matches every day). A field counts as
//! restricted unless it starts with `*` or is `?`.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Timelike, Utc};
use std::fmt;
use std::time::Duration;

/// How far `next_after` looks before deciding a cron schedule never fires.
const HORIZON_YEARS: i32 = 5;
const MIN_EVERY: Duration = Duration::from_secs(1);
const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    Cron(Cron),
}

/// A parsed cron expression as bit sets.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
    text: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(d) => write!(f, "@every {}", crate::duration::format(*d)),
            Self::Cron(c) => f.write_str(&c.text),
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name stands for this value (JAN = 1, SUN = 0).
    names_from: u32,
    question_mark: bool,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
        question_mark: false,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
        question_mark: false,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_from: 0,
        question_mark: true,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
        question_mark: false,
    },
    // 7 is accepted and folded onto 0 (Sunday).
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        names_from: 0,
        question_mark: true,
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            return Ok(self.names_from + i as u32);
        }
        let v: u32 = text.parse().map_err(|_| {
            format!(
                "{} {text:?} is not a number{}",
                self.name,
                if self.names.is_empty() {
                    ""
                } else {
                    " or a name"
                }
            )
        })?;
        if v < self.min || v > self.max {
            return Err(format!(
                "{} {v} out of range {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(v)
    }

    /// Parses one field into a bit set over `min..=max`.
    fn parse(&self, text: &str) -> Result<u64, String> {
        if text == "?" {
            return if self.question_mark {
                Ok(self.all())
            } else {
                Err(format!(
                    "{}: '?' is only allowed in the day fields",
                    self.name
                ))
            };
        }
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(format!("{}: empty list item in {text:?}", self.name));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .map_err(|_| format!("{}: step {s:?} is not a number", self.name))?;
                    if step == 0 {
                        return Err(format!("{}: step must be at least 1", self.name));
                    }
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (from, to) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("{}: range {a}-{b} is backwards", self.name));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `a/n` means from a to the end in steps of n.
                (a, if step.is_some() { self.max } else { a })
            };
            let mut v = from;
            while v <= to {
                bits |= 1 << v;
                // A huge step (`5/4294967295`) ends the walk instead of wrapping around.
                match v.checked_add(step.unwrap_or(1)) {
                    Some(next) => v = next,
                    None => break,
                }
            }
        }
        Ok(bits)
    }

    fn all(&self) -> u64 {
        (self.min..=self.max).fold(0, |bits, v| bits | 1 << v)
    }
}

impl Schedule {
    /// The occurrence to dispatch next after dispatching `scheduled_for` (or "now" when
    /// unset) at `now` (CONTRACT.md §3.4): past `max(scheduled_for, now)`, so after
    /// downtime a schedule fires once, not once per missed occurrence, and `@every` keeps
    /// its phase (the previous occurrence + d, skipping steps already past). Shared by
    /// jobs and cron triggers.
    pub fn next_dispatch(
        &self,
        scheduled_for: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let scheduled_for = scheduled_for.unwrap_or(now);
        match self {
            Self::Every(d) => {
                let step = chrono::Duration::from_std(*d).ok()?;
                let phased = || {
                    let next = scheduled_for.checked_add_signed(step)?;
                    if next > now {
                        return Some(next);
                    }
                    // Whole steps to skip, in i64 microseconds: a `next_run` set centuries
                    // back is still a finite number of steps.
                    let step_us = step.num_microseconds()?.max(1);
                    let behind = (now - next).num_microseconds()? / step_us;
                    let skip = step_us.checked_mul(behind.checked_add(1)?)?;
                    next.checked_add_signed(chrono::Duration::microseconds(skip))
                };
                // Beyond what the arithmetic can reach, the phase is dropped rather than
                // the schedule: the next occurrence is one step from now.
                phased().or_else(|| now.checked_add_signed(step))
            }
            Self::Cron(_) => self.next_after(scheduled_for.max(now)),
        }
    }

    /// Parses schedule text; the error reads well after `schedule: `.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("@every") {
            let d = crate::duration::parse(rest).map_err(|e| format!("@every: {e}"))?;
            if d < MIN_EVERY || d > MAX_EVERY {
                return Err("@every: the interval must be between 1s and 366 days".to_owned());
            }
            return Ok(Self::Every(d));
        }
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!("unknown schedule macro {text:?}"))
            }
            _ => text,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "expected 5 cron fields (minute hour day-of-month month day-of-week), got {}",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        for (i, (field, part)) in FIELDS.iter().zip(&parts).enumerate() {
            sets[i] = field.parse(part)?;
        }
        // Weekday 7 is Sunday.
        let weekdays = (sets[4] | (sets[4] >> 7)) & 0x7f;
        let restricted = |p: &str| !(p.starts_with('*') || p == "?");
        let cron = Cron {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: weekdays as u8,
            days_restricted: restricted(parts[2]),
            weekdays_restricted: restricted(parts[4]),
            text: text.to_owned(),
        };
        if cron.next_after(Utc::now()).is_none() {
            return Err("schedule never fires".to_owned());
        }
        Ok(Self::Cron(cron))
    }

    /// The next occurrence strictly after `t`: for cron the first matching whole minute,
    /// for `@every d` simply `t + d` (the scheduler anchors `t` to the previous run).
    /// `None` when a cron schedule does not fire within five years.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => ChronoDuration::from_std(*d)
                .ok()
                .and_then(|d| t.checked_add_signed(d)),
            Self::Cron(c) => c.next_after(t),
        }
    }

    /// Whether `t` (a whole minute) is an occurrence of a cron schedule.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        match self {
            Self::Every(_) => false,
            Self::Cron(c) => t.second() == 0 && t.nanosecond() == 0 && c.matches(t),
        }
    }
}

impl Cron {
    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        if self.days_restricted && self.weekdays_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn matches(&self, t: DateTime<Utc>) -> bool {
        self.months & (1 << t.month()) != 0
            && self.day_matches(t)
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
    }

    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t.with_second(0)?.with_nanosecond(0)? + ChronoDuration::minutes(1);
        let horizon = t
            .with_year(t.year() + HORIZON_YEARS)
            .unwrap_or(t + ChronoDuration::days(366 * 5));
        let mut c = start;
        while c <= horizon {
            if self.months & (1 << c.month()) == 0 {
                // First minute of the next month.
                let (y, m) = if c.month() == 12 {
                    (c.year() + 1, 1)
                } else {
                    (c.year(), c.month() + 1)
                };
                c = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(c) {
                c = (c + ChronoDuration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if self.hours & (1 << c.hour()) == 0 {
                c = (c + ChronoDuration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minutes & (1 << c.minute()) == 0 {
                c += ChronoDuration::minutes(1);
                continue;
            }
            return Some(c);
        }
        None
    }
}

#[cfg(test)]
mod tests;
