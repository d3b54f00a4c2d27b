//! `/accounts/{id}/automation/jobs` routes: jobs CRUD and their runs. Bodies are the
//! domain's request shapes ([`JobInput`], [`JobPatchInput`]), parsed by the domain.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::{ListBody, ListQuery};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::automation::{
    CreateJob, DeleteJob, GetJob, Job, JobInput, JobPatch, JobPatchInput, ListJobs, ListRuns,
    NewJob, Run, UpdateJob,
};
use actors::ids::JobId;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobBody {
    id: String,
    account_id: String,
    function_id: String,
    name: String,
    description: String,
    schedule: String,
    enabled: bool,
    #[schema(value_type = String)]
    overlap_policy: &'static str,
    max_attempts: i32,
    #[schema(required = true)]
    last_run: Option<String>,
    #[schema(required = true)]
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
            schedule: j.schedule.to_string(),
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

#[derive(Serialize, ToSchema)]
#[schema(as = JobRun)]
pub struct RunBody {
    id: String,
    job_id: String,
    scheduled_for: String,
    #[schema(required = true)]
    started_at: Option<String>,
    #[schema(required = true)]
    completed_at: Option<String>,
    #[schema(value_type = String)]
    status: &'static str,
    attempt: i32,
    #[schema(required = true)]
    execution_id: Option<String>,
    #[schema(required = true)]
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

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).ok_or_else(|| ApiError::not_found("job"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/automation/jobs",
    tag = "automation",
    summary = "Schedule a function (cron)",
    request_body = actors::automation::JobInput,
    responses((status = 201, description = "The job", body = JobBody)),
)]
pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<JobInput>,
) -> Result<HttpResponse, ApiError> {
    let job = NewJob::parse(input, state.default_max_attempts)?;
    let job = state.automation.ask(CreateJob { account, job }).await?;
    Ok(HttpResponse::Created().json(JobBody::from(job)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/automation/jobs",
    tag = "automation",
    summary = "List the account's jobs",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of jobs", body = super::pagination::ListBody<JobBody>)),
)]
pub async fn list(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        account,
        &params,
        "automation/jobs",
        |page| state.automation.ask(ListJobs { account, page }),
        JobBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/automation/jobs/{job_id}",
    tag = "automation",
    summary = "Get a job",
    responses((status = 200, description = "The job", body = JobBody)),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    let job = state.automation.ask(GetJob { account, id }).await?;
    Ok(HttpResponse::Ok().json(JobBody::from(job)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}/automation/jobs/{job_id}",
    tag = "automation",
    summary = "Change a job",
    request_body = actors::automation::JobPatchInput,
    responses((status = 200, description = "The job", body = JobBody)),
)]
pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<JobPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    let patch = JobPatch::parse(input)?;
    let job = state
        .automation
        .ask(UpdateJob { account, id, patch })
        .await?;
    Ok(HttpResponse::Ok().json(JobBody::from(job)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/automation/jobs/{job_id}",
    tag = "automation",
    summary = "Delete a job and its runs",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path.1)?;
    state.automation.ask(DeleteJob { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/automation/jobs/{job_id}/runs",
    tag = "automation",
    summary = "List a job's runs, newest first",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of runs", body = super::pagination::ListBody<RunBody>)),
)]
pub async fn runs(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let job = job_id(&path.1)?;
    let scope = format!("accounts/{account}/automation/jobs/{job}/runs");
    let page = params.page(&scope)?;
    let runs = state
        .automation
        .ask(ListRuns { account, job, page })
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(runs, &scope, RunBody::from)))
}
