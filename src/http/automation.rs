//! `/accounts/{id}/automation/jobs` routes: jobs CRUD and their runs.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::functions::function_ref;
use super::json::timestamp;
use super::pagination::{ListBody, ListQuery};
use super::state::AppState;
use super::{ask, list_under_account};
use actix_web::{web, HttpResponse};
use actors::automation::{
    CreateJob, DeleteJob, GetJob, Job, JobChanges, ListJobs, ListRuns, NewJob, OverlapPolicy, Run,
    UpdateJob,
};
use actors::ids::JobId;
use actors::patch::Patch;
use actors::schedule::Schedule;
use actors::{validate, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct JobBody {
    id: String,
    account_id: String,
    function_id: String,
    name: String,
    description: String,
    schedule: String,
    enabled: bool,
    overlap_policy: &'static str,
    max_attempts: i32,
    last_run: Option<String>,
    next_run: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Job> for JobBody {
    fn from(j: Job) -> Self {
        Self {
            id: j.id.to_string(),
            account_id: j.account_id.to_string(),
            function_id: j.function_id.to_string(),
            name: j.name,
            description: j.description,
            schedule: j.schedule,
            enabled: j.enabled,
            overlap_policy: j.overlap_policy.as_str(),
            max_attempts: j.max_attempts,
            last_run: j.last_run.as_ref().map(timestamp),
            next_run: j.next_run.as_ref().map(timestamp),
            created_at: timestamp(&j.created_at),
            updated_at: timestamp(&j.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct RunBody {
    id: String,
    job_id: String,
    scheduled_for: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    status: &'static str,
    attempt: i32,
    execution_id: Option<String>,
    error: Option<String>,
}

impl From<Run> for RunBody {
    fn from(r: Run) -> Self {
        Self {
            id: r.id.to_string(),
            job_id: r.job_id.to_string(),
            scheduled_for: timestamp(&r.scheduled_for),
            started_at: r.started_at.as_ref().map(timestamp),
            completed_at: r.completed_at.as_ref().map(timestamp),
            status: r.status.as_str(),
            attempt: r.attempt,
            execution_id: r.execution_id.map(|e| e.to_string()),
            error: r.error,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    function_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    schedule: Option<String>,
    enabled: Option<bool>,
    overlap_policy: Option<String>,
    max_attempts: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    function_id: Patch<String>,
    #[serde(default)]
    name: Patch<String>,
    #[serde(default)]
    description: Patch<String>,
    #[serde(default)]
    schedule: Patch<String>,
    #[serde(default)]
    enabled: Patch<bool>,
    #[serde(default)]
    overlap_policy: Patch<String>,
    #[serde(default)]
    max_attempts: Patch<i64>,
    #[serde(default)]
    next_run: Patch<String>,
}

fn schedule(raw: &str) -> Result<Schedule, ValidationError> {
    Schedule::parse(raw).map_err(|e| ValidationError::new("schedule", e))
}

fn overlap(raw: &str) -> Result<OverlapPolicy, ValidationError> {
    OverlapPolicy::parse(raw)
        .ok_or_else(|| ValidationError::new("overlap_policy", "must be skip or allow"))
}

fn max_attempts(n: i64) -> Result<i32, ValidationError> {
    match i32::try_from(n) {
        Ok(n) if (1..=20).contains(&n) => Ok(n),
        _ => Err(ValidationError::new("max_attempts", "must be 1-20")),
    }
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).ok_or_else(|| ApiError::not_found("job"))
}

pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let function_id = body
        .function_id
        .as_deref()
        .ok_or_else(|| ValidationError::new("function_id", "is required"))
        .and_then(function_ref)?;
    let job = NewJob {
        function_id,
        name: validate::trimmed("name", body.name.as_deref().unwrap_or_default(), 1, 128)?,
        description: validate::trimmed(
            "description",
            body.description.as_deref().unwrap_or_default(),
            0,
            1024,
        )?,
        schedule: match body.schedule.as_deref().map(str::trim) {
            None | Some("") => return Err(ValidationError::new("schedule", "is required").into()),
            Some(text) => schedule(text)?,
        },
        enabled: body.enabled.unwrap_or(true),
        overlap_policy: body
            .overlap_policy
            .as_deref()
            .map(overlap)
            .transpose()?
            .unwrap_or(OverlapPolicy::Skip),
        max_attempts: body
            .max_attempts
            .map(max_attempts)
            .transpose()?
            .unwrap_or(state.default_max_attempts),
    };
    let job = ask(&state.automation, CreateJob { account, job }, "account").await??;
    Ok(HttpResponse::Created().json(JobBody::from(job)))
}

pub async fn list(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        &state.automation,
        account,
        &params,
        "automation/jobs",
        |page| ListJobs { account, page },
        JobBody::from,
    )
    .await
}

pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    let job = ask(&state.automation, GetJob { account, id }, "job").await?;
    Ok(HttpResponse::Ok().json(JobBody::from(job)))
}

pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    let changes = JobChanges {
        function_id: body
            .function_id
            .required("function_id")?
            .as_deref()
            .map(function_ref)
            .transpose()?,
        name: body
            .name
            .required("name")?
            .map(|n| validate::trimmed("name", &n, 1, 128))
            .transpose()?,
        description: match body.description {
            Patch::Missing => None,
            Patch::Null => Some(String::new()),
            Patch::Value(d) => Some(validate::trimmed("description", &d, 0, 1024)?),
        },
        schedule: body
            .schedule
            .required("schedule")?
            .as_deref()
            .map(schedule)
            .transpose()?,
        enabled: body.enabled.required("enabled")?,
        overlap_policy: body
            .overlap_policy
            .required("overlap_policy")?
            .as_deref()
            .map(overlap)
            .transpose()?,
        max_attempts: body
            .max_attempts
            .required("max_attempts")?
            .map(max_attempts)
            .transpose()?,
        next_run: match body.next_run {
            Patch::Missing => Patch::Missing,
            Patch::Null => Patch::Null,
            Patch::Value(text) => Patch::Value(
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ValidationError::new(
                            "next_run",
                            format!("expected an RFC 3339 timestamp, got {text:?}"),
                        )
                    })?,
            ),
        },
    };
    let job = ask(
        &state.automation,
        UpdateJob {
            account,
            id,
            changes,
        },
        "job",
    )
    .await??;
    Ok(HttpResponse::Ok().json(JobBody::from(job)))
}

pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    ask(&state.automation, DeleteJob { account, id }, "job").await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn runs(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let job = job_id(&path.1)?;
    let scope = format!("accounts/{account}/automation/jobs/{job}/runs");
    let page = params.page(&scope)?;
    let runs = ask(&state.automation, ListRuns { account, job, page }, "job").await?;
    Ok(HttpResponse::Ok().json(ListBody::new(runs, &scope, RunBody::from)))
}
