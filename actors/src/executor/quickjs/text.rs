//! Bounded copies out of the engine's heap. A script can build strings as large as its
//! memory limit; the server copies at most the bytes a limit allows. Measuring is cheap:
//! QuickJS hands out ASCII strings without copying and converts others inside its own
//! heap, where the run's memory limit applies.

use rquickjs::convert::Coerced;
use rquickjs::{Ctx, Value};

/// Longest error name or message kept from a thrown value; longer ones are cut and end
/// with `…[truncated]`.
pub const ERROR_BYTES: usize = 8 << 10;

/// A string that fitted, or the part of it that did.
#[derive(Debug, PartialEq)]
pub enum Bounded {
    Whole(String),
    /// The first bytes (cut on a character boundary) and the full size in UTF-8 bytes.
    Cut {
        prefix: String,
        total: usize,
    },
}

/// The string as Rust text when it has at most `max` UTF-8 bytes, else its first `max`
/// bytes and its size. The whole text is never copied into the server's memory.
pub fn bounded(string: rquickjs::String<'_>, max: usize) -> rquickjs::Result<Bounded> {
    let c = string.to_cstring()?;
    let text = c.as_str();
    if text.len() <= max {
        return Ok(Bounded::Whole(text.to_owned()));
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok(Bounded::Cut {
        prefix: text[..cut].to_owned(),
        total: text.len(),
    })
}

/// How a value reads in a console entry: strings as-is, other values as JSON, else
/// `String(v)`; still a string in the engine's heap. `None` if it cannot be printed (a
/// symbol, or a `toString` that throws).
pub fn display<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Option<rquickjs::String<'js>> {
    if let Some(s) = value.as_string() {
        return Some(s.clone());
    }
    match ctx.json_stringify(value.clone()) {
        Ok(Some(json)) => return Some(json),
        Ok(None) => {}
        // A cycle or a BigInt: forget the exception and fall back to `String(v)`.
        Err(_) => drop(ctx.catch()),
    }
    match value.get::<Coerced<rquickjs::String<'js>>>() {
        Ok(s) => Some(s.0),
        Err(_) => {
            drop(ctx.catch());
            None
        }
    }
}

/// [`display`] as at most `max` bytes of Rust text, ending `…[truncated]` when cut.
pub fn bounded_display<'js>(
    ctx: &Ctx<'js>,
    value: Value<'js>,
    max: usize,
) -> rquickjs::Result<String> {
    let Some(string) = display(ctx, value) else {
        return Ok("[unprintable]".to_owned());
    };
    Ok(match bounded(string, max)? {
        Bounded::Whole(text) => text,
        Bounded::Cut { mut prefix, .. } => {
            prefix.push_str("…[truncated]");
            prefix
        }
    })
}
