//! Response conventions shared by every route: timestamps as RFC 3339 UTC with exactly
//! six fractional digits and a `Z`.

pub use actors::clock::timestamp;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn six_fraction_digits_and_z() {
        let t = chrono::Utc.with_ymd_and_hms(2025, 1, 31, 9, 30, 0).unwrap();
        assert_eq!(super::timestamp(&t), "2025-01-31T09:30:00.000000Z");
    }
}
