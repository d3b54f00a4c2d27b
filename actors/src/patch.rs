//! Tri-state field for PATCH bodies: omitted (leave unchanged), `null` (clear), or a value.

use serde::{Deserialize, Deserializer};

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
