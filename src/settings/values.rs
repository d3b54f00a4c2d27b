//! Parsers for setting values: booleans, sizes, integers, durations, lists, URLs. Each
//! returns a reason that the loader prefixes with the setting's names.

use std::time::Duration;

pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true, false, 1 or 0, got {other:?}")),
    }
}

/// Bytes, `<n>KiB` or `<n>MiB`.
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    if digits.is_empty() {
        return Err(format!(
            "expected a size such as 1048576, 256KiB or 1MiB, got {text:?}"
        ));
    }
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use bytes, KiB or MiB)"
            ))
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 1048576, 256KiB or 1MiB, got {text:?}"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

pub fn integer(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("expected a non-negative integer, got {:?}", text.trim()))
}

pub fn duration(text: &str) -> Result<Duration, String> {
    actors::duration::parse_with_days(text)
}

/// Comma-separated, trimmed, empties dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An absolute `http://` or `https://` URL with a host.
pub fn http_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = url::Url::parse(text)
        .map_err(|e| format!("expected an absolute http(s) URL, got {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("expected an absolute http(s) URL, got {text:?}"));
    }
    // WHATWG parsing reads `http:///x` as `http://x/`; an operator who wrote three
    // slashes forgot the host, so the text itself must name one.
    let authority = text
        .get(url.scheme().len()..)
        .and_then(|rest| rest.strip_prefix("://"))
        .unwrap_or_default();
    if url.host_str().is_none_or(str::is_empty) || authority.starts_with(['/', '\\']) {
        return Err(format!("URL {text:?} has no valid host"));
    }
    Ok(text.to_owned())
}

/// `host:port` with a numeric port.
pub fn listen_addr(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {text:?}"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "expected host:port with a port 0-65535, got {text:?}"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("256KiB"), Ok(256 << 10));
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert!(size("1MB").is_err());
        assert!(size("MiB").is_err());
        assert!(size("-1").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("1"), Ok(true));
        assert_eq!(boolean("false"), Ok(false));
        assert!(boolean("yes").is_err());
    }

    #[test]
    fn lists_and_urls_and_addrs() {
        assert_eq!(list(" a, ,b ,"), vec!["a", "b"]);
        assert!(http_url("https://example.org/price").is_ok());
        assert!(http_url("ftp://example.org").is_err());
        assert!(http_url("http:///x").is_err());
        assert!(listen_addr("0.0.0.0:8080").is_ok());
        assert!(listen_addr("[::1]:0").is_ok());
        assert!(listen_addr("8080").is_err());
        assert!(listen_addr("host:http").is_err());
    }
}
