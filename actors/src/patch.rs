//! Tri-state field for PATCH bodies: omitted (leave unchanged), `null` (clear), or a value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    /// For fields that cannot be cleared: omitted → `None`, `null` → an error naming
    /// the field.
    pub fn required(self, field: &str) -> Result<Option<T>, crate::ValidationError> {
        match self {
            Patch::Missing => Ok(None),
            Patch::Null => Err(crate::ValidationError::new(field, "must not be null")),
            Patch::Value(v) => Ok(Some(v)),
        }
    }
}

/// `null` unless a value. Only the OpenAPI derive needs it (it serialises the defaults
/// of a `#[serde(default)]` body); a skipped field is written by leaving it out.
impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Value(v) => serializer.serialize_some(v),
            Patch::Missing | Patch::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    /// Only called when the key is present (use with `#[serde(default)]`), so `null` and
    /// absence can be told apart.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}
