//! Bounded copies out of the engine's heap. A script can build strings as large as its
//! memory limit; the server copies at most the bytes a limit allows. Measuring is cheap:
//! QuickJS hands out ASCII strings without copying and converts others inside its own
//! heap, where the run's memory limit applies.
//!
//! JavaScript strings may hold lone surrogates, which have no UTF-8 form: every string is
//! first made well-formed (each lone surrogate becomes U+FFFD) with the original
//! `String.prototype.toWellFormed`, captured before the script can replace it.
//!
//! The captured function is a reference held from Rust, which QuickJS's cycle collector
//! cannot see: while it is held, the whole context it belongs to stays alive. It is
//! therefore released when the run ends ([`Text::releasing`]); a context kept alive
//! would leak, and fail an assertion when its runtime is freed.

use rquickjs::convert::Coerced;
use rquickjs::function::This;
use rquickjs::{Ctx, Function, Object, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Longest error name or message kept from a thrown value; longer ones are cut and end
/// with `…[truncated]`.
pub const ERROR_BYTES: usize = 8 << 10;

/// Deepest nesting of output and action params. A reply wraps them in a few more levels,
/// and the server parses replies with serde_json's limit of 128.
pub const MAX_DEPTH: usize = 100;

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

/// The built-ins text conversion relies on, captured from a fresh context; shared by the
/// host functions of one run.
#[derive(Clone)]
pub struct Text<'js> {
    well_formed: Rc<RefCell<Option<Function<'js>>>>,
    /// The run's secrets, redacted from error messages before they are cut.
    secrets: Rc<BTreeMap<String, String>>,
}

/// Releases the captured built-ins when dropped (see the module comment).
pub struct Releasing<'js>(Text<'js>);

impl Drop for Releasing<'_> {
    fn drop(&mut self) {
        self.0.well_formed.borrow_mut().take();
    }
}

impl<'js> Text<'js> {
    /// Must run before the script does.
    pub fn capture(ctx: &Ctx<'js>, secrets: &BTreeMap<String, String>) -> rquickjs::Result<Self> {
        let prototype: Object = ctx.globals().get::<_, Object>("String")?.get("prototype")?;
        Ok(Self {
            well_formed: Rc::new(RefCell::new(Some(prototype.get("toWellFormed")?))),
            secrets: Rc::new(secrets.clone()),
        })
    }

    /// A guard that releases the captured built-ins when the run ends, whichever way.
    pub fn releasing(&self) -> Releasing<'js> {
        Releasing(self.clone())
    }

    /// The string as Rust text when it has at most `max` UTF-8 bytes, else its first `max`
    /// bytes and its size. The whole text is never copied into the server's memory.
    pub fn bounded(&self, string: rquickjs::String<'js>, max: usize) -> rquickjs::Result<Bounded> {
        // Cloned out of the cell: the call may run nothing of the script's, but the
        // borrow must not be held across a call into the engine all the same.
        let well_formed = self.well_formed.borrow().clone();
        let Some(well_formed) = well_formed else {
            return Err(rquickjs::Error::Unknown);
        };
        let string: rquickjs::String = well_formed.call((This(string),))?;
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

    /// [`display`] as at most `max` bytes of Rust text (ending `…[truncated]` when cut),
    /// with the run's secrets redacted first: the text is read up to `max` plus the
    /// longest secret, so a secret straddling the cut is seen whole and hidden, then cut
    /// to `max` (as console entries are).
    pub fn redacted_display(
        &self,
        ctx: &Ctx<'js>,
        value: Value<'js>,
        max: usize,
    ) -> rquickjs::Result<String> {
        let slack = self.secrets.values().map(String::len).max().unwrap_or(0);
        let Some(string) = display(ctx, value) else {
            return Ok("[unprintable]".to_owned());
        };
        let (text, cut) = match self.bounded(string, max.saturating_add(slack))? {
            Bounded::Whole(text) => (text, false),
            Bounded::Cut { prefix, .. } => (prefix, true),
        };
        let mut text = crate::executor::engine::redact(text, &self.secrets);
        if cut || text.len() > max {
            crate::executor::engine::truncate_on_char(&mut text, max);
            text.push_str("…[truncated]");
        }
        Ok(text)
    }
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

/// Parses JSON text produced by `JSON.stringify` into a value of at most [`MAX_DEPTH`]
/// levels. `JSON.stringify` writes a lone surrogate as an escape (`\ud800`), which JSON
/// parsers refuse, and U+0000 as `\u0000`, which PostgreSQL cannot store: both become
/// U+FFFD, as in every other text a function produces.
pub fn parse_json(json: &str) -> Result<serde_json::Value, JsonError> {
    let json = replace_unstorable_escapes(json);
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(value) if depth(&value) <= MAX_DEPTH => Ok(value),
        Ok(_) => Err(JsonError::TooDeep),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Err(JsonError::TooDeep),
        Err(e) => Err(JsonError::Invalid(e.to_string())),
    }
}

#[derive(Debug, PartialEq)]
pub enum JsonError {
    TooDeep,
    Invalid(String),
}

/// `\u0000` and `\ud800`–`\udfff` escapes → `\ufffd`. In `JSON.stringify` output a
/// surrogate escape is always a lone surrogate (pairs are written as characters).
fn replace_unstorable_escapes(json: &str) -> std::borrow::Cow<'_, str> {
    let bytes = json.as_bytes();
    let unstorable = |at: usize| {
        let hex = bytes.get(at + 2..at + 6)?;
        let unit = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        (unit == 0 || (0xD800..=0xDFFF).contains(&unit)).then_some(())
    };
    if !json.contains("\\u") {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && unstorable(i).is_some() {
                out.push_str("\\ufffd");
                i += 6;
            } else {
                // An escape pair (`\\`, `\"`, `\n`…): copied whole, so its second byte is
                // never read as the start of another escape.
                out.push_str(&json[i..(i + 2).min(json.len())]);
                i += 2;
            }
        } else {
            let next = json[i..].find('\\').map_or(json.len(), |n| i + n);
            out.push_str(&json[i..next]);
            i = next;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Plain text a function produced (a log line, an error message) without U+0000.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// How deeply a JSON value nests (a scalar is 0).
pub fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unstorable_escapes_become_replacement_characters() {
        assert_eq!(
            parse_json(r#"{"a":"x\ud800y","b":"\u0000","c":"\\ud800","d":"\u00e9"}"#).unwrap(),
            json!({"a": "x\u{FFFD}y", "b": "\u{FFFD}", "c": "\\ud800", "d": "é"})
        );
        assert_eq!(parse_json(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let deep = format!("{}1{}", "[".repeat(101), "]".repeat(101));
        assert_eq!(parse_json(&deep), Err(JsonError::TooDeep));
        let deeper = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse_json(&deeper), Err(JsonError::TooDeep));
        assert!(matches!(parse_json("{"), Err(JsonError::Invalid(_))));
        assert_eq!(without_nul("a\0b".to_owned()), "a\u{FFFD}b");
    }
}
