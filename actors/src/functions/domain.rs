//! Function and execution domain types.

use crate::error::ValidationError;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::secrets::SecretName;
use crate::validate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const SOURCE_MAX_BYTES: usize = 256 * 1024;
const MAX_SECRETS: usize = 64;

/// Per-function limit overrides; `None` means the service default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = FunctionLimits)]
pub struct FunctionLimits {
    #[schema(required = true)]
    pub timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub memory_mib: Option<u64>,
    #[schema(required = true)]
    pub output_limit_bytes: Option<u64>,
}

/// The largest overrides a function may ask for (from `EXEC_MAX_*`).
#[derive(Debug, Clone, Copy)]
pub struct LimitMaxima {
    pub timeout_ms: u64,
    pub memory_mib: u64,
    pub output_limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub id: FunctionId,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub source: String,
    /// Secret names the function receives, creation spelling, no duplicates.
    pub secrets: Vec<String>,
    pub limits: FunctionLimits,
    /// 1 at creation, +1 per replacement.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl crate::page::Keyed for Function {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

/// A validated function body (create and PUT).
#[derive(Debug, Clone)]
pub struct FunctionDraft {
    pub name: String,
    pub description: String,
    pub source: String,
    pub secrets: Vec<SecretName>,
    pub limits: FunctionLimits,
}

impl FunctionDraft {
    pub fn parse(
        name: Option<&str>,
        description: Option<&str>,
        source: Option<&str>,
        secrets: Vec<String>,
        limits: FunctionLimits,
        maxima: &LimitMaxima,
    ) -> Result<Self, ValidationError> {
        let name = validate::trimmed("name", name.unwrap_or_default(), 1, 128)?;
        let description =
            validate::trimmed("description", description.unwrap_or_default(), 0, 1024)?;
        let source = source.unwrap_or_default();
        if source.trim().is_empty() {
            return Err(ValidationError::new("source", "is required"));
        }
        if source.len() > SOURCE_MAX_BYTES {
            return Err(ValidationError::new(
                "source",
                format!("must be at most {SOURCE_MAX_BYTES} bytes"),
            ));
        }
        // The cap comes first, on the list as sent (duplicates count): a body listing
        // forty thousand names is refused before any of them is looked at.
        if secrets.len() > MAX_SECRETS {
            return Err(ValidationError::new(
                "secrets",
                format!("at most {MAX_SECRETS} names allowed"),
            ));
        }
        let mut names: Vec<SecretName> = Vec::with_capacity(secrets.len());
        let mut seen = std::collections::HashSet::with_capacity(secrets.len());
        for raw in &secrets {
            let name = SecretName::parse(raw)
                .map_err(|e| ValidationError::new("secrets", format!("{raw:?}: {}", e.message)))?;
            if seen.insert(name.key()) {
                names.push(name);
            }
        }
        let check = |field: &str, value: Option<u64>, max: u64| match value {
            Some(v) if v < 1 || v > max => Err(ValidationError::new(
                format!("limits.{field}"),
                format!("must be 1-{max}"),
            )),
            _ => Ok(()),
        };
        check("timeout_ms", limits.timeout_ms, maxima.timeout_ms)?;
        check("memory_mib", limits.memory_mib, maxima.memory_mib)?;
        check(
            "output_limit_bytes",
            limits.output_limit_bytes,
            maxima.output_limit_bytes,
        )?;
        Ok(Self {
            name,
            description,
            source: source.to_owned(),
            secrets: names,
            limits,
        })
    }
}

impl FunctionDraft {
    /// The stored function this draft describes, with the given identity and history.
    pub fn into_function(
        self,
        id: FunctionId,
        account_id: AccountId,
        version: i64,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Function {
        Function {
            id,
            account_id,
            name: self.name,
            description: self.description,
            source: self.source,
            secrets: self.secrets.iter().map(|s| s.as_str().to_owned()).collect(),
            limits: self.limits,
            version,
            created_at,
            updated_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Succeeded,
    Failed,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// The fate of one queued `Devpack` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Action)]
pub struct ActionRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub params: Value,
    /// `succeeded`, `failed` or `aborted`.
    pub status: String,
    pub result: Value,
    #[schema(required = true)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: ExecutionId,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Value,
    pub logs: Vec<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub actions: Vec<ActionRecord>,
}

impl crate::page::Keyed for Execution {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.started_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAXIMA: LimitMaxima = LimitMaxima {
        timeout_ms: 60_000,
        memory_mib: 256,
        output_limit_bytes: 1 << 20,
    };

    fn parse(secrets: &[&str], limits: FunctionLimits) -> Result<FunctionDraft, String> {
        FunctionDraft::parse(
            Some(" f "),
            None,
            Some("() => 1"),
            secrets.iter().map(|s| s.to_string()).collect(),
            limits,
            &MAXIMA,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn drafts() {
        let d = parse(&["API_KEY", "api_key", "db"], FunctionLimits::default()).unwrap();
        assert_eq!(d.name, "f");
        assert_eq!(
            d.secrets.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["API_KEY", "db"]
        );
        assert_eq!(
            parse(
                &[],
                FunctionLimits {
                    timeout_ms: Some(60_001),
                    ..Default::default()
                }
            )
            .unwrap_err(),
            "limits.timeout_ms: must be 1-60000"
        );
        assert_eq!(
            parse(
                &[],
                FunctionLimits {
                    memory_mib: Some(0),
                    ..Default::default()
                }
            )
            .unwrap_err(),
            "limits.memory_mib: must be 1-256"
        );
        assert!(parse(&["bad name"], FunctionLimits::default())
            .unwrap_err()
            .starts_with("secrets: \"bad name\""));
        assert_eq!(
            FunctionDraft::parse(
                Some("f"),
                None,
                Some("  "),
                vec![],
                FunctionLimits::default(),
                &MAXIMA
            )
            .unwrap_err()
            .to_string(),
            "source: is required"
        );
    }
}
