//! GAS amounts (CONTRACT.md §2.9): exact decimals of at most 8 fractional digits, held as
//! integer base units (1 GAS = 10^8), read from their decimal text and written as the
//! shortest decimal string. Never through floating point: `0.1 + 0.2` of GAS is `0.3`.
//!
//! Written by hand: the rules are the contract's (no sign, no exponent, at most 8
//! fractional digits, the `i64` range of base units), and a general decimal crate would
//! accept more than that and still need these checks around it.

use std::fmt;

/// Fractional digits of a GAS amount.
pub const DECIMALS: usize = 8;
/// Base units in one GAS.
pub const UNIT: i64 = 100_000_000;

/// A non-negative amount of GAS, in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

/// Why a text is not an amount; reads well after the field name (`amount: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is required")]
    Empty,
    #[error("must be a decimal number of GAS such as \"6.5\" (digits, at most one '.', no sign, exponent or spaces)")]
    Malformed,
    #[error("at most 8 fractional digits")]
    TooPrecise,
    #[error("must be greater than 0")]
    Zero,
    #[error("must be at most 92233720368.54775807")]
    TooLarge,
}

impl Amount {
    pub const ZERO: Self = Self(0);
    /// The largest amount: `i64::MAX` base units.
    pub const MAX: Self = Self(i64::MAX);

    /// `None` for a negative count.
    pub fn from_base_units(units: i64) -> Option<Self> {
        (units >= 0).then_some(Self(units))
    }

    pub fn base_units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `None` if `other` is larger (amounts are never negative).
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).and_then(Self::from_base_units)
    }

    /// An amount to move: the decimal text of a JSON string or number, greater than 0.
    pub fn parse_positive(text: &str) -> Result<Self, AmountError> {
        match Self::parse(text)? {
            Self(0) => Err(AmountError::Zero),
            amount => Ok(amount),
        }
    }

    /// Any amount, 0 included: `digits[.digits]`, the integer part without leading zeros
    /// (as a JSON number has it), 1–8 fractional digits after a `.`.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = whole.len() > 1 && whole.starts_with('0');
        if !digits(whole) || leading_zero || fraction.is_some_and(|f| !digits(f)) {
            return Err(AmountError::Malformed);
        }
        let fraction = fraction.unwrap_or_default();
        if fraction.len() > DECIMALS {
            return Err(AmountError::TooPrecise);
        }
        // At most 19 integer digits fit the check below without overflowing u128.
        if whole.len() > 19 {
            return Err(AmountError::TooLarge);
        }
        let whole: u128 = whole.parse().map_err(|_| AmountError::Malformed)?;
        let scale = 10u128.pow((DECIMALS - fraction.len()) as u32);
        let fraction: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| AmountError::Malformed)?
        };
        let units = whole * UNIT as u128 + fraction * scale;
        i64::try_from(units)
            .map(Self)
            .map_err(|_| AmountError::TooLarge)
    }
}

/// The shortest decimal text: `6.5`, `2`, `0`, `0.00000001`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / UNIT, self.0 % UNIT);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:08}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_contract_examples() {
        let text = |units| Amount(units).to_string();
        assert_eq!(text(650_000_000), "6.5");
        assert_eq!(text(200_000_000), "2");
        assert_eq!(text(0), "0");
        assert_eq!(text(1), "0.00000001");
        assert_eq!(text(i64::MAX), "92233720368.54775807");
        assert_eq!(Amount::parse("92233720368.54775807"), Ok(Amount::MAX));
        assert_eq!(
            Amount::parse("0.1")
                .unwrap()
                .checked_add(Amount::parse("0.2").unwrap()),
            Amount::parse("0.3").ok()
        );
        assert_eq!(Amount::parse("6.50000000"), Ok(Amount(650_000_000)));
    }

    #[test]
    fn every_rejection_rule() {
        use AmountError::*;
        for (text, why) in [
            ("", Empty),
            ("-1", Malformed),
            ("+1", Malformed),
            ("1e3", Malformed),
            ("1E3", Malformed),
            (" 1", Malformed),
            ("1 ", Malformed),
            ("1.", Malformed),
            (".5", Malformed),
            ("1.2.3", Malformed),
            ("01", Malformed),
            ("00.5", Malformed),
            ("0x10", Malformed),
            ("1,5", Malformed),
            ("١", Malformed),
            ("NaN", Malformed),
            ("1.123456789", TooPrecise),
            ("92233720368.54775808", TooLarge),
            ("92233720369", TooLarge),
            ("99999999999999999999999", TooLarge),
        ] {
            assert_eq!(Amount::parse(text), Err(why.clone()), "{text:?}");
        }
        assert_eq!(Amount::parse_positive("0"), Err(Zero));
        assert_eq!(Amount::parse_positive("0.00000000"), Err(Zero));
        assert_eq!(Amount::parse_positive("0.00000001"), Ok(Amount(1)));
        assert_eq!(Amount(5).checked_sub(Amount(6)), None, "never negative");
        assert_eq!(Amount::from_base_units(-1), None);
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
    }

    proptest! {
        /// Every amount written out reads back as itself, in its shortest form.
        #[test]
        fn format_then_parse_is_the_identity(units in 0..=i64::MAX) {
            let text = Amount(units).to_string();
            prop_assert_eq!(Amount::parse(&text), Ok(Amount(units)));
            prop_assert!(!text.ends_with('.'));
            if text.contains('.') {
                prop_assert!(!text.ends_with('0'), "{} is not minimal", text);
            }
        }

        /// Any decimal within the rules parses to exactly its value (computed apart, on
        /// the digits), and trailing fractional zeros change nothing.
        #[test]
        fn decimals_parse_exactly(whole in 0u64..=92_233_720_367, fraction in "[0-9]{1,8}", zeros in 0usize..3) {
            let text = format!("{whole}.{fraction}");
            let scaled = format!("{fraction:0<8}").parse::<i64>().unwrap();
            let expected = whole as i64 * UNIT + scaled;
            prop_assert_eq!(Amount::parse(&text), Ok(Amount(expected)));
            let padded = format!("{text}{}", "0".repeat(zeros));
            let expect_padded = if fraction.len() + zeros > DECIMALS { Err(AmountError::TooPrecise) } else { Ok(Amount(expected)) };
            prop_assert_eq!(Amount::parse(&padded), expect_padded);
        }

        /// Text with anything but digits and one inner '.' is refused, never misread.
        #[test]
        fn other_text_is_refused(text in "[0-9.eE+\\- ]{1,12}") {
            let valid = {
                let (w, f) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                digits(w) && !(w.len() > 1 && w.starts_with('0')) && f.is_none_or(|f| digits(f) && f.len() <= DECIMALS)
            };
            // Valid text is read, or refused only as too large; anything else refused.
            match Amount::parse(&text) {
                Ok(_) | Err(AmountError::TooLarge) => prop_assert!(valid, "{:?} was read", text),
                Err(_) => prop_assert!(!valid, "{:?} was refused", text),
            }
        }
    }
}
