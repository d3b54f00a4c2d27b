//! Price feed and snapshot types, and the parsing of feed requests (CONTRACT.md §2.7):
//! an HTTP body becomes a [`FeedInput`] / [`FeedPatchInput`] / [`SnapshotInput`] (raw
//! values), which the `parse` functions turn into checked values before anything else
//! sees them.

use crate::error::ValidationError;
use crate::ids::{AccountId, FeedId, SnapshotId};
use crate::page::{Keyed, PageKey};
use crate::patch::Patch;
use crate::validate;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// At most this many sources per feed.
pub const MAX_SOURCES: usize = 10;
/// A source URL's length limit (a URL longer than this is not a price API).
pub const MAX_SOURCE_URL: usize = 2048;
/// A snapshot's `source` length limit.
pub const MAX_SOURCE_NAME: usize = 128;
/// How far ahead of now a manual snapshot's `collected_at` may be (clock skew).
pub const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Interval bounds (CONTRACT.md §3.2: a duration is 1 s–366 days).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Defaults of `update_interval` and `heartbeat_interval`.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(600);

/// The latest snapshot of a feed, as the feed row keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latest {
    pub round: i64,
    pub price: f64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    pub id: FeedId,
    pub account_id: AccountId,
    pub base_asset: String,
    pub quote_asset: String,
    pub update_interval: Duration,
    pub heartbeat_interval: Duration,
    pub deviation_percent: f64,
    pub active: bool,
    pub sources: Vec<String>,
    /// The snapshot with the latest `collected_at` (ties: the higher round), and the
    /// highest round so far (the next snapshot takes `rounds + 1`).
    pub latest: Option<Latest>,
    pub rounds: i64,
    /// When the refresher polls the feed next; `None` while inactive.
    pub next_refresh_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Feed {
    /// `BASE/QUOTE`, unique per account.
    pub fn pair(&self) -> String {
        format!("{}/{}", self.base_asset, self.quote_asset)
    }

    /// No snapshot within the heartbeat before `now`.
    pub fn stale(&self, now: DateTime<Utc>) -> bool {
        match self.latest {
            None => true,
            Some(latest) => (now - latest.at)
                .to_std()
                .is_ok_and(|age| age > self.heartbeat_interval),
        }
    }
}

impl Keyed for Feed {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub feed_id: FeedId,
    pub round: i64,
    pub price: f64,
    pub source: String,
    pub collected_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Snapshots are listed newest first by `collected_at`, then id.
impl Keyed for Snapshot {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.collected_at,
            id: *self.id.as_uuid(),
        }
    }
}

/// A feed as requested (the HTTP body), before any check.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = PriceFeedInput)]
#[serde(deny_unknown_fields)]
pub struct FeedInput {
    #[schema(required = true, pattern = "^[A-Za-z0-9._-]{1,32}$")]
    pub base_asset: Option<String>,
    #[schema(required = true, pattern = "^[A-Za-z0-9._-]{1,32}$")]
    pub quote_asset: Option<String>,
    #[schema(example = "@every 1m")]
    pub update_interval: Option<String>,
    #[schema(example = "@every 10m")]
    pub heartbeat_interval: Option<String>,
    #[schema(required = true, exclusive_minimum = 0, maximum = 100)]
    pub deviation_percent: Option<f64>,
    pub active: Option<bool>,
    #[schema(max_items = 10)]
    pub sources: Option<Vec<String>>,
}

/// A feed whose every field follows the contract.
#[derive(Debug, Clone)]
pub struct NewFeed {
    pub base_asset: String,
    pub quote_asset: String,
    pub update_interval: Duration,
    pub heartbeat_interval: Duration,
    pub deviation_percent: f64,
    pub active: bool,
    pub sources: Vec<String>,
}

/// The PATCH body: omitted fields stay unchanged; none of them can be cleared, so
/// `null` is refused naming the field.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = PriceFeedPatch)]
#[serde(deny_unknown_fields)]
pub struct FeedPatchInput {
    #[schema(value_type = String)]
    #[serde(default)]
    pub update_interval: Patch<String>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub heartbeat_interval: Patch<String>,
    #[schema(value_type = f64)]
    #[serde(default)]
    pub deviation_percent: Patch<f64>,
    #[schema(value_type = bool)]
    #[serde(default)]
    pub active: Patch<bool>,
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub sources: Patch<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct FeedPatch {
    pub update_interval: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub deviation_percent: Option<f64>,
    pub active: Option<bool>,
    pub sources: Option<Vec<String>>,
}

/// A manual snapshot as requested.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = PriceSnapshotInput)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInput {
    #[schema(required = true)]
    pub price: Option<f64>,
    pub source: Option<String>,
    pub collected_at: Option<String>,
}

/// A manual snapshot whose fields follow the contract (`collected_at` resolved).
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub price: f64,
    pub source: String,
    pub collected_at: DateTime<Utc>,
}

fn asset(field: &str, raw: Option<&str>) -> Result<String, ValidationError> {
    let value = raw.unwrap_or_default().trim().to_ascii_uppercase();
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let allowed = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || "._-".contains(c);
    if value.len() > 32 || !value.chars().all(allowed) {
        return Err(ValidationError::new(
            field,
            "must be 1-32 of A-Z, 0-9, '.', '_' or '-'",
        ));
    }
    Ok(value)
}

/// `@every <duration>` or a bare duration, 1 s–366 days.
fn interval(field: &str, raw: &str) -> Result<Duration, ValidationError> {
    let text = raw.trim();
    let text = match text.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("@every") => &text[6..],
        _ => text,
    };
    let duration = crate::duration::parse(text).map_err(|e| ValidationError::new(field, e))?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&duration) {
        return Err(ValidationError::new(
            field,
            "must be between 1s and 366 days",
        ));
    }
    Ok(duration)
}

/// How an interval reads in responses: `@every 1m30s`.
pub fn format_interval(interval: Duration) -> String {
    format!("@every {}", crate::duration::format(interval))
}

fn deviation(value: f64) -> Result<f64, ValidationError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(ValidationError::new(
            "deviation_percent",
            "must be greater than 0 and at most 100",
        ))
    }
}

fn sources(raw: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if raw.len() > MAX_SOURCES {
        return Err(ValidationError::new(
            "sources",
            format!("at most {MAX_SOURCES} allowed"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    // Each source as parsed (`A.example:443` is `a.example`), to find repeats.
    let mut seen: Vec<url::Url> = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        let field = format!("sources[{i}]");
        let text = text.trim();
        if text.len() > MAX_SOURCE_URL {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_SOURCE_URL} bytes"),
            ));
        }
        let parsed = url::Url::parse(text)
            .map_err(|e| ValidationError::new(&field, format!("not an absolute URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ValidationError::new(field, "must be an http or https URL"));
        }
        // Credentials in a URL end up in logs and error reports; a source that needs a
        // key is the operator's default source (`PRICEFEED_FETCH_KEY`).
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ValidationError::new(field, "must not contain credentials"));
        }
        if seen.contains(&parsed) {
            // A repeated source would count twice in the median.
            return Err(ValidationError::new(field, "repeats an earlier source"));
        }
        seen.push(parsed);
        out.push(text.to_owned());
    }
    Ok(out)
}

fn heartbeat_not_shorter(update: Duration, heartbeat: Duration) -> Result<(), ValidationError> {
    if heartbeat < update {
        return Err(ValidationError::new(
            "heartbeat_interval",
            "must not be shorter than update_interval",
        ));
    }
    Ok(())
}

impl NewFeed {
    pub fn parse(input: FeedInput) -> Result<Self, ValidationError> {
        let base_asset = asset("base_asset", input.base_asset.as_deref())?;
        let quote_asset = asset("quote_asset", input.quote_asset.as_deref())?;
        let update_interval = match input.update_interval.as_deref() {
            Some(text) => interval("update_interval", text)?,
            None => DEFAULT_UPDATE_INTERVAL,
        };
        let heartbeat_interval = match input.heartbeat_interval.as_deref() {
            Some(text) => interval("heartbeat_interval", text)?,
            None => DEFAULT_HEARTBEAT_INTERVAL,
        };
        heartbeat_not_shorter(update_interval, heartbeat_interval)?;
        let deviation_percent = match input.deviation_percent {
            Some(value) => deviation(value)?,
            None => return Err(ValidationError::new("deviation_percent", "is required")),
        };
        Ok(Self {
            base_asset,
            quote_asset,
            update_interval,
            heartbeat_interval,
            deviation_percent,
            active: input.active.unwrap_or(true),
            sources: sources(input.sources.unwrap_or_default())?,
        })
    }

    /// The feed to store, created at `now`: an active feed is due at once.
    pub fn into_feed(self, account_id: AccountId, now: DateTime<Utc>) -> Feed {
        Feed {
            id: FeedId::generate(),
            account_id,
            base_asset: self.base_asset,
            quote_asset: self.quote_asset,
            update_interval: self.update_interval,
            heartbeat_interval: self.heartbeat_interval,
            deviation_percent: self.deviation_percent,
            active: self.active,
            sources: self.sources,
            latest: None,
            rounds: 0,
            next_refresh_at: self.active.then_some(now),
            created_at: now,
            updated_at: now,
        }
    }
}

impl FeedPatch {
    pub fn parse(input: FeedPatchInput) -> Result<Self, ValidationError> {
        Ok(Self {
            update_interval: input
                .update_interval
                .required("update_interval")?
                .map(|t| interval("update_interval", &t))
                .transpose()?,
            heartbeat_interval: input
                .heartbeat_interval
                .required("heartbeat_interval")?
                .map(|t| interval("heartbeat_interval", &t))
                .transpose()?,
            deviation_percent: input
                .deviation_percent
                .required("deviation_percent")?
                .map(deviation)
                .transpose()?,
            active: input.active.required("active")?,
            sources: input
                .sources
                .required("sources")?
                .map(sources)
                .transpose()?,
        })
    }

    /// Applies the patch to `feed` at `now`. New timing or a re-activation makes the feed
    /// due at once; deactivation takes it off the refresher's schedule. Returns whether
    /// `next_refresh_at` was set (else the stored one, which the refresher may have moved
    /// meanwhile, must stay).
    pub fn apply(&self, feed: &mut Feed, now: DateTime<Utc>) -> Result<bool, ValidationError> {
        let update = self.update_interval.unwrap_or(feed.update_interval);
        let heartbeat = self.heartbeat_interval.unwrap_or(feed.heartbeat_interval);
        heartbeat_not_shorter(update, heartbeat)?;
        let retimed = update != feed.update_interval;
        let reactivated = self.active == Some(true) && !feed.active;
        feed.update_interval = update;
        feed.heartbeat_interval = heartbeat;
        feed.deviation_percent = self.deviation_percent.unwrap_or(feed.deviation_percent);
        feed.active = self.active.unwrap_or(feed.active);
        if let Some(sources) = &self.sources {
            feed.sources = sources.clone();
        }
        let rescheduled = !feed.active || retimed || reactivated || feed.next_refresh_at.is_none();
        if rescheduled {
            feed.next_refresh_at = feed.active.then_some(now);
        }
        feed.updated_at = now;
        Ok(rescheduled)
    }
}

impl NewSnapshot {
    pub fn parse(input: SnapshotInput, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        let price = match input.price {
            Some(p) if p.is_finite() && p > 0.0 => p,
            Some(_) => return Err(ValidationError::new("price", "must be greater than 0")),
            None => return Err(ValidationError::new("price", "is required")),
        };
        let source = validate::trimmed(
            "source",
            input.source.as_deref().unwrap_or_default(),
            0,
            MAX_SOURCE_NAME,
        )?;
        let collected_at = match input.collected_at.as_deref() {
            None => now,
            Some(text) => DateTime::parse_from_rfc3339(text.trim())
                .map_err(|e| {
                    ValidationError::new("collected_at", format!("not an RFC 3339 time: {e}"))
                })?
                .with_timezone(&Utc),
        };
        if collected_at > now + MAX_AHEAD {
            return Err(ValidationError::new(
                "collected_at",
                "must not be more than 5 minutes ahead",
            ));
        }
        Ok(Self {
            price,
            source: if source.is_empty() {
                "manual".to_owned()
            } else {
                source
            },
            // Both stores keep microseconds.
            collected_at: crate::clock::truncate_micros(collected_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> FeedInput {
        FeedInput {
            base_asset: Some(" neo ".into()),
            quote_asset: Some("usd".into()),
            deviation_percent: Some(0.5),
            ..FeedInput::default()
        }
    }

    #[test]
    fn a_feed_gets_its_defaults_and_upper_cased_assets() {
        let feed = NewFeed::parse(input()).unwrap();
        assert_eq!(
            (feed.base_asset.as_str(), feed.quote_asset.as_str()),
            ("NEO", "USD")
        );
        assert_eq!(feed.update_interval, DEFAULT_UPDATE_INTERVAL);
        assert_eq!(feed.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
        assert!(feed.active && feed.sources.is_empty());
        assert_eq!(format_interval(feed.update_interval), "@every 1m");
    }

    #[test]
    fn every_rule_refuses_what_it_should() {
        let cases: Vec<(FeedInput, &str)> = vec![
            (
                FeedInput {
                    base_asset: None,
                    ..input()
                },
                "base_asset",
            ),
            (
                FeedInput {
                    base_asset: Some("NEO/X".into()),
                    ..input()
                },
                "base_asset",
            ),
            (
                FeedInput {
                    quote_asset: Some("A".repeat(33)),
                    ..input()
                },
                "quote_asset",
            ),
            (
                FeedInput {
                    deviation_percent: None,
                    ..input()
                },
                "deviation_percent",
            ),
            (
                FeedInput {
                    deviation_percent: Some(0.0),
                    ..input()
                },
                "deviation_percent",
            ),
            (
                FeedInput {
                    deviation_percent: Some(100.5),
                    ..input()
                },
                "deviation_percent",
            ),
            (
                FeedInput {
                    update_interval: Some("500ms".into()),
                    ..input()
                },
                "update_interval",
            ),
            (
                FeedInput {
                    update_interval: Some("0 * * * *".into()),
                    ..input()
                },
                "update_interval",
            ),
            (
                FeedInput {
                    update_interval: Some("@every 10m".into()),
                    heartbeat_interval: Some("5m".into()),
                    ..input()
                },
                "heartbeat_interval",
            ),
            (
                FeedInput {
                    sources: Some(vec!["ftp://x".into()]),
                    ..input()
                },
                "sources[0]",
            ),
            (
                FeedInput {
                    sources: Some(vec!["/relative".into()]),
                    ..input()
                },
                "sources[0]",
            ),
            (
                FeedInput {
                    sources: Some(vec!["http://a/p".into(), "http://a/p".into()]),
                    ..input()
                },
                "sources[1]",
            ),
            (
                FeedInput {
                    sources: Some(vec!["http://a".into(); 11]),
                    ..input()
                },
                "sources",
            ),
            (
                FeedInput {
                    sources: Some(vec!["https://user:pw@prices.example/".into()]),
                    ..input()
                },
                "sources[0]",
            ),
            (
                FeedInput {
                    sources: Some(vec![
                        "https://A.example/p".into(),
                        "https://a.example:443/p".into(),
                    ]),
                    ..input()
                },
                "sources[1]",
            ),
        ];
        for (case, field) in cases {
            let err = NewFeed::parse(case).unwrap_err();
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn bare_durations_and_every_are_both_intervals() {
        let feed = NewFeed::parse(FeedInput {
            update_interval: Some("@EVERY 30s".into()),
            heartbeat_interval: Some("1m30s".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(feed.update_interval, Duration::from_secs(30));
        assert_eq!(format_interval(feed.heartbeat_interval), "@every 1m30s");
    }

    #[test]
    fn a_patch_retimes_reactivates_and_checks_the_heartbeat_against_the_result() {
        let now = Utc::now();
        let mut feed = NewFeed::parse(input())
            .unwrap()
            .into_feed(AccountId::generate(), now);
        let later = now + chrono::TimeDelta::seconds(5);
        feed.next_refresh_at = Some(now + chrono::TimeDelta::seconds(60));
        // Longer update interval than the current heartbeat: refused, nothing changed.
        let patch = FeedPatch::parse(FeedPatchInput {
            update_interval: Patch::Value("20m".into()),
            ..Default::default()
        })
        .unwrap();
        let before = feed.clone();
        assert!(patch.apply(&mut feed, later).is_err());
        assert_eq!(feed, before);
        // Deactivated: off the schedule; re-activated: due at once.
        let off = FeedPatch {
            active: Some(false),
            ..Default::default()
        };
        off.apply(&mut feed, later).unwrap();
        assert_eq!(feed.next_refresh_at, None);
        let on = FeedPatch {
            active: Some(true),
            ..Default::default()
        };
        on.apply(&mut feed, later).unwrap();
        assert_eq!(feed.next_refresh_at, Some(later));
    }

    #[test]
    fn a_snapshot_defaults_its_source_and_time_and_refuses_the_far_future() {
        let now = crate::clock::truncate_micros(Utc::now());
        let s = NewSnapshot::parse(
            SnapshotInput {
                price: Some(1.5),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!((s.source.as_str(), s.collected_at), ("manual", now));
        for bad in [Some(0.0), Some(-1.0), None] {
            let input = SnapshotInput {
                price: bad,
                ..Default::default()
            };
            assert!(NewSnapshot::parse(input, now).is_err());
        }
        let ahead = (now + chrono::TimeDelta::minutes(6)).to_rfc3339();
        let input = SnapshotInput {
            price: Some(1.0),
            collected_at: Some(ahead),
            ..Default::default()
        };
        assert!(NewSnapshot::parse(input, now).is_err());
    }
}
