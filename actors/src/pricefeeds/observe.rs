//! What the refresher decides from what the sources said (CONTRACT.md §3.6, §4.1): the
//! reply of one source, the observation (the price, or the median of several), and
//! whether it becomes a snapshot.

use super::Feed;
use chrono::{DateTime, Utc};

/// One source's answer: `{"price": <number > 0>, "source": "<name>"}`; a missing or empty
/// name becomes the URL's host.
pub fn parse_reply(body: &[u8], host: &str) -> Result<(f64, String), String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        price: f64,
        #[serde(default)]
        source: Option<String>,
    }
    let reply: Reply =
        serde_json::from_slice(body).map_err(|e| format!("undecodable reply: {e}"))?;
    if !(reply.price.is_finite() && reply.price > 0.0) {
        return Err(format!("price {} is not greater than 0", reply.price));
    }
    let name = reply
        .source
        // A source's text may hold anything: control characters (NUL, which PostgreSQL
        // cannot store) become U+FFFD.
        .map(|s| {
            s.trim()
                .chars()
                .take(super::domain::MAX_SOURCE_NAME)
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.to_owned());
    Ok((reply.price, name))
}

/// The observation from the sources that answered: the one price with its name, or the
/// median (the mean of the middle two for an even count) named `median:<k>`. `None` when
/// none answered.
pub fn observation(mut answers: Vec<(f64, String)>) -> Option<(f64, String)> {
    match answers.len() {
        0 => None,
        1 => answers.pop(),
        k => {
            answers.sort_by(|a, b| a.0.total_cmp(&b.0));
            let price = if k % 2 == 1 {
                answers[k / 2].0
            } else {
                (answers[k / 2 - 1].0 + answers[k / 2].0) / 2.0
            };
            Some((price, format!("median:{k}")))
        }
    }
}

/// Whether an observation of `price` at `at` becomes a snapshot of `feed`: when it has
/// none, when its heartbeat has elapsed since the latest one was collected, or when the
/// price moved by at least `deviation_percent` from the latest.
pub fn worth_recording(feed: &Feed, price: f64, at: DateTime<Utc>) -> bool {
    let Some(latest) = feed.latest else {
        return true;
    };
    let heartbeat = (at - latest.at)
        .to_std()
        .is_ok_and(|age| age >= feed.heartbeat_interval);
    let moved = (price - latest.price).abs() / latest.price * 100.0 >= feed.deviation_percent;
    heartbeat || moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricefeeds::{FeedInput, Latest, NewFeed};

    fn feed(deviation: f64, heartbeat: &str) -> Feed {
        NewFeed::parse(FeedInput {
            base_asset: Some("NEO".into()),
            quote_asset: Some("USD".into()),
            deviation_percent: Some(deviation),
            update_interval: Some("1s".into()),
            heartbeat_interval: Some(heartbeat.into()),
            ..FeedInput::default()
        })
        .unwrap()
        .into_feed(crate::ids::AccountId::generate(), Utc::now())
    }

    #[test]
    fn replies_need_a_positive_price_and_name_their_source() {
        assert_eq!(
            parse_reply(br#"{"price": 1.5, "source": " x "}"#, "h"),
            Ok((1.5, "x".into()))
        );
        assert_eq!(parse_reply(br#"{"price": 2}"#, "h"), Ok((2.0, "h".into())));
        assert_eq!(
            parse_reply(br#"{"price": 2, "source": ""}"#, "h"),
            Ok((2.0, "h".into()))
        );
        assert_eq!(
            parse_reply(br#"{"price": 2, "source": "a\u0000b"}"#, "h"),
            Ok((2.0, "a\u{FFFD}b".into()))
        );
        for bad in [
            &br#"{"price": 0}"#[..],
            br#"{"price": -1}"#,
            br#"{"price": "1"}"#,
            b"{}",
            b"<html>",
        ] {
            assert!(
                parse_reply(bad, "h").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_median_of_several_the_value_of_one() {
        let a = |p: f64, n: &str| (p, n.to_owned());
        assert_eq!(observation(vec![]), None);
        assert_eq!(observation(vec![a(3.0, "x")]), Some((3.0, "x".into())));
        assert_eq!(
            observation(vec![a(30.0, "x"), a(10.0, "y"), a(20.0, "z")]),
            Some((20.0, "median:3".into()))
        );
        assert_eq!(
            observation(vec![a(30.0, "x"), a(10.0, "y")]),
            Some((20.0, "median:2".into()))
        );
    }

    #[test]
    fn snapshots_on_first_heartbeat_and_deviation_only() {
        let now = Utc::now();
        let mut f = feed(10.0, "1m");
        assert!(worth_recording(&f, 100.0, now), "the first observation");
        f.latest = Some(Latest {
            round: 1,
            price: 100.0,
            at: now,
        });
        let soon = now + chrono::TimeDelta::seconds(5);
        assert!(!worth_recording(&f, 109.9, soon), "below the deviation");
        assert!(
            !worth_recording(&f, 90.1, soon),
            "below the deviation, downwards"
        );
        assert!(worth_recording(&f, 110.0, soon), "at the deviation");
        assert!(worth_recording(&f, 89.0, soon), "beyond it, downwards");
        assert!(
            worth_recording(&f, 100.0, now + chrono::TimeDelta::seconds(60)),
            "the heartbeat"
        );
    }
}
