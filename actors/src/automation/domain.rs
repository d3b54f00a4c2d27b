//! Automation job and run types, and the parsing of job requests: an HTTP body and a
//! Devpack `automation.schedule` action both become a [`JobInput`] (raw text and
//! options), which [`NewJob::parse`] or [`JobPatch::parse`] turns into checked values
//! before anything else sees them.

use crate::error::ValidationError;
use crate::ids::{AccountId, ExecutionId, FunctionId, JobId, RunId};
use crate::patch::Patch;
use crate::schedule::Schedule;
use crate::validate;
use chrono::{DateTime, Utc};

/// Attempts of one run: 1–20 (CONTRACT.md §2.5).
pub const MAX_ATTEMPTS: std::ops::RangeInclusive<i32> = 1..=20;

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
    pub schedule: Schedule,
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

/// A job as requested, before any check: every field as given (HTTP body or Devpack
/// params), absent fields `None`. It is also the shape of the HTTP body.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = JobInput)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    #[schema(required = true)]
    pub function_id: Option<String>,
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(required = true)]
    pub schedule: Option<String>,
    pub enabled: Option<bool>,
    #[schema(example = "skip")]
    pub overlap_policy: Option<String>,
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<i64>,
}

/// A job whose every field follows the contract.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub function_id: FunctionId,
    pub name: String,
    pub description: String,
    pub schedule: Schedule,
    pub enabled: bool,
    pub overlap_policy: OverlapPolicy,
    pub max_attempts: i32,
}

fn function_ref(raw: &str) -> Result<FunctionId, ValidationError> {
    FunctionId::parse(raw.trim())
        .ok_or_else(|| ValidationError::new("function_id", "function not found in this account"))
}

fn name(raw: &str) -> Result<String, ValidationError> {
    validate::trimmed("name", raw, 1, 128)
}

fn description(raw: &str) -> Result<String, ValidationError> {
    validate::trimmed("description", raw, 0, 1024)
}

fn schedule(raw: &str) -> Result<Schedule, ValidationError> {
    match raw.trim() {
        "" => Err(ValidationError::new("schedule", "is required")),
        text => Schedule::parse(text).map_err(|e| ValidationError::new("schedule", e)),
    }
}

fn overlap(raw: &str) -> Result<OverlapPolicy, ValidationError> {
    OverlapPolicy::parse(raw)
        .ok_or_else(|| ValidationError::new("overlap_policy", "must be skip or allow"))
}

fn max_attempts(n: i64) -> Result<i32, ValidationError> {
    match i32::try_from(n) {
        Ok(n) if MAX_ATTEMPTS.contains(&n) => Ok(n),
        _ => Err(ValidationError::new("max_attempts", "must be 1-20")),
    }
}

impl NewJob {
    /// Checks a requested job; `default_attempts` (`AUTOMATION_MAX_ATTEMPTS`, already in
    /// range) applies when none is given.
    pub fn parse(input: JobInput, default_attempts: i32) -> Result<Self, ValidationError> {
        let function_id = input
            .function_id
            .as_deref()
            .ok_or_else(|| ValidationError::new("function_id", "is required"))
            .and_then(function_ref)?;
        Ok(Self {
            function_id,
            name: name(input.name.as_deref().unwrap_or_default())?,
            description: description(input.description.as_deref().unwrap_or_default())?,
            schedule: match input.schedule.as_deref() {
                None => return Err(ValidationError::new("schedule", "is required")),
                Some(text) => schedule(text)?,
            },
            enabled: input.enabled.unwrap_or(true),
            overlap_policy: input
                .overlap_policy
                .as_deref()
                .map(overlap)
                .transpose()?
                .unwrap_or(OverlapPolicy::Skip),
            max_attempts: input
                .max_attempts
                .map(max_attempts)
                .transpose()?
                .unwrap_or(default_attempts),
        })
    }

    /// The job as stored when created at `now`, its first `next_run` computed.
    pub fn into_job(self, account: AccountId, now: DateTime<Utc>) -> Job {
        Job {
            id: JobId::generate(),
            account_id: account,
            function_id: self.function_id,
            name: self.name,
            description: self.description,
            next_run: self
                .enabled
                .then(|| self.schedule.next_after(now))
                .flatten(),
            schedule: self.schedule,
            enabled: self.enabled,
            overlap_policy: self.overlap_policy,
            max_attempts: self.max_attempts,
            last_run: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A PATCH as requested: omitted fields `Missing`, `null` fields `Null`. It is also the
/// shape of the HTTP body.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = JobPatch)]
#[serde(deny_unknown_fields)]
pub struct JobPatchInput {
    #[schema(value_type = String)]
    #[serde(default)]
    pub function_id: Patch<String>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub name: Patch<String>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub description: Patch<String>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub schedule: Patch<String>,
    #[schema(value_type = bool)]
    #[serde(default)]
    pub enabled: Patch<bool>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub overlap_policy: Patch<String>,
    #[schema(value_type = i64)]
    #[serde(default)]
    pub max_attempts: Patch<i64>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub next_run: Patch<String>,
}

/// A checked PATCH; `None`/`Missing` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct JobPatch {
    pub function_id: Option<FunctionId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub schedule: Option<Schedule>,
    pub enabled: Option<bool>,
    pub overlap_policy: Option<OverlapPolicy>,
    pub max_attempts: Option<i32>,
    /// A timestamp sets the next dispatch once; `Null` recomputes from the schedule.
    pub next_run: Patch<DateTime<Utc>>,
}

impl JobPatch {
    /// The job after this PATCH at `now`: a new schedule, a re-enabled job or an explicit
    /// `next_run: null` recompute the next run from now; a timestamp sets it; a disabled
    /// job has none.
    pub fn apply(&self, current: &Job, now: DateTime<Utc>) -> Job {
        let mut job = current.clone();
        let mut recompute = matches!(self.next_run, Patch::Null);
        if let Some(function) = self.function_id {
            job.function_id = function;
        }
        if let Some(schedule) = &self.schedule {
            job.schedule = schedule.clone();
            recompute = true;
        }
        if let Some(enabled) = self.enabled {
            recompute |= enabled && !current.enabled;
            job.enabled = enabled;
        }
        if let Some(name) = &self.name {
            job.name = name.clone();
        }
        if let Some(description) = &self.description {
            job.description = description.clone();
        }
        job.overlap_policy = self.overlap_policy.unwrap_or(job.overlap_policy);
        job.max_attempts = self.max_attempts.unwrap_or(job.max_attempts);
        if let Patch::Value(at) = self.next_run {
            job.next_run = Some(at);
        } else if recompute {
            job.next_run = job.schedule.next_after(now);
        }
        if !job.enabled {
            job.next_run = None;
        }
        job.updated_at = now;
        job
    }

    pub fn parse(input: JobPatchInput) -> Result<Self, ValidationError> {
        Ok(Self {
            function_id: input
                .function_id
                .required("function_id")?
                .as_deref()
                .map(function_ref)
                .transpose()?,
            name: input
                .name
                .required("name")?
                .as_deref()
                .map(name)
                .transpose()?,
            description: match input.description {
                Patch::Missing => None,
                Patch::Null => Some(String::new()),
                Patch::Value(d) => Some(description(&d)?),
            },
            schedule: input
                .schedule
                .required("schedule")?
                .as_deref()
                // No "is required" here: an empty schedule in a PATCH is a bad schedule.
                .map(|text| Schedule::parse(text).map_err(|e| ValidationError::new("schedule", e)))
                .transpose()?,
            enabled: input.enabled.required("enabled")?,
            overlap_policy: input
                .overlap_policy
                .required("overlap_policy")?
                .as_deref()
                .map(overlap)
                .transpose()?,
            max_attempts: input
                .max_attempts
                .required("max_attempts")?
                .map(max_attempts)
                .transpose()?,
            next_run: match input.next_run {
                Patch::Missing => Patch::Missing,
                Patch::Null => Patch::Null,
                Patch::Value(text) => Patch::Value(
                    DateTime::parse_from_rfc3339(text.trim())
                        .map(|t| crate::clock::truncate_micros(t.with_timezone(&Utc)))
                        .map_err(|_| {
                            ValidationError::new(
                                "next_run",
                                format!("expected an RFC 3339 timestamp, got {text:?}"),
                            )
                        })?,
                ),
            },
        })
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
