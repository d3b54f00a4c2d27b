//! Small validation helpers shared by the domain types. Lengths are counted in Unicode
//! scalar values (characters), as users count them.

use crate::error::ValidationError;
use std::collections::BTreeMap;

/// Trims `value` and checks its length is within `min..=max` characters.
pub fn trimmed(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<String, ValidationError> {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 && min > 0 {
        return Err(ValidationError::new(field, "is required"));
    }
    if len < min || len > max {
        return Err(ValidationError::new(
            field,
            format!("must be {min}-{max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// A string→string map with bounded size, key length and value length.
pub fn string_map(
    field: &str,
    map: BTreeMap<String, String>,
    max_entries: usize,
    max_key: usize,
    max_value: usize,
) -> Result<BTreeMap<String, String>, ValidationError> {
    if map.len() > max_entries {
        return Err(ValidationError::new(
            field,
            format!("at most {max_entries} entries allowed"),
        ));
    }
    for (key, value) in &map {
        let klen = key.chars().count();
        if klen == 0 || klen > max_key {
            return Err(ValidationError::new(
                field,
                format!("keys must be 1-{max_key} characters"),
            ));
        }
        if value.chars().count() > max_value {
            return Err(ValidationError::new(
                format!("{field}.{key}"),
                format!("must be at most {max_value} characters"),
            ));
        }
    }
    Ok(map)
}
