//! Automation job and run types.

use crate::ids::{AccountId, ExecutionId, FunctionId, JobId, RunId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// A new occurrence while a run is in progress is recorded as `skipped`.
    Skip,
    /// Runs may overlap.
    Allow,
}

impl OverlapPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "skip" => Some(Self::Skip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub name: String,
    pub description: String,
    /// The schedule as given (validated when saved).
    pub schedule: String,
    pub enabled: bool,
    pub overlap_policy: OverlapPolicy,
    pub max_attempts: i32,
    /// `scheduled_for` of the latest started run.
    pub last_run: Option<DateTime<Utc>>,
    /// `None` while disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl crate::page::Keyed for Job {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "skipped" => Self::Skipped,
            _ => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub job_id: JobId,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub attempt: i32,
    pub execution_id: Option<ExecutionId>,
    pub error: Option<String>,
}

impl crate::page::Keyed for Run {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.scheduled_for,
            id: *self.id.as_uuid(),
        }
    }
}
