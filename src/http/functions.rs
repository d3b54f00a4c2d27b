//! `/accounts/{id}/functions` routes: CRUD, synchronous execution and execution records.
//! `execute` answers 200 with the record whether the run succeeded or failed (see
//! `X-Execution-Status`); only failures before a run starts are errors.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, JsonOrEmpty, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::{ListBody, ListQuery};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::functions::{
    ActionRecord, CreateFunction, DeleteFunction, ExecuteFunction, Execution, Function,
    FunctionDraft, FunctionLimits, GetExecution, GetFunction, ListExecutions, ListFunctions,
    ReplaceFunction,
};
use actors::ids::{ExecutionId, FunctionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = Function)]
pub struct FunctionBody {
    id: String,
    account_id: String,
    name: String,
    description: String,
    source: String,
    secrets: Vec<String>,
    limits: FunctionLimits,
    version: i64,
    created_at: String,
    updated_at: String,
}

impl From<Function> for FunctionBody {
    fn from(f: Function) -> Self {
        Self {
            id: f.id.to_string(),
            account_id: f.account_id.to_string(),
            name: f.name,
            description: f.description,
            source: f.source,
            secrets: f.secrets,
            limits: f.limits,
            version: f.version,
            created_at: timestamp(&f.created_at),
            updated_at: timestamp(&f.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Execution)]
pub struct ExecutionBody {
    id: String,
    account_id: String,
    function_id: String,
    #[schema(value_type = String)]
    status: &'static str,
    #[schema(value_type = Object)]
    input: Value,
    #[schema(value_type = Object)]
    output: Value,
    logs: Vec<String>,
    #[schema(required = true)]
    error: Option<String>,
    #[schema(required = true)]
    error_code: Option<String>,
    started_at: String,
    completed_at: String,
    duration_ms: i64,
    actions: Vec<ActionRecord>,
}

impl From<Execution> for ExecutionBody {
    fn from(e: Execution) -> Self {
        Self {
            id: e.id.to_string(),
            account_id: e.account_id.to_string(),
            function_id: e.function_id.to_string(),
            status: e.status.as_str(),
            input: e.input,
            output: e.output,
            logs: e.logs,
            error: e.error,
            error_code: e.error_code,
            started_at: timestamp(&e.started_at),
            completed_at: timestamp(&e.completed_at),
            duration_ms: e.duration_ms,
            actions: e.actions,
        }
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[schema(as = FunctionLimitsInput)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
    #[schema(minimum = 1)]
    memory_mib: Option<u64>,
    #[schema(minimum = 1)]
    output_limit_bytes: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = FunctionInput)]
#[serde(deny_unknown_fields)]
pub struct FunctionInput {
    #[schema(required = true, min_length = 1, max_length = 128)]
    name: Option<String>,
    #[schema(max_length = 1024)]
    description: Option<String>,
    #[schema(required = true)]
    source: Option<String>,
    #[schema(max_items = 64)]
    secrets: Option<Vec<String>>,
    limits: Option<LimitsBody>,
}

impl FunctionInput {
    fn draft(self, state: &AppState) -> Result<FunctionDraft, ApiError> {
        let limits = self.limits.unwrap_or_default();
        Ok(FunctionDraft::parse(
            self.name.as_deref(),
            self.description.as_deref(),
            self.source.as_deref(),
            self.secrets.unwrap_or_default(),
            FunctionLimits {
                timeout_ms: limits.timeout_ms,
                memory_mib: limits.memory_mib,
                output_limit_bytes: limits.output_limit_bytes,
            },
            &state.limit_maxima,
        )?)
    }
}

fn function_id(raw: &str) -> Result<FunctionId, ApiError> {
    FunctionId::parse(raw).ok_or_else(|| ApiError::not_found("function"))
}

fn execution_id(raw: &str) -> Result<ExecutionId, ApiError> {
    ExecutionId::parse(raw).ok_or_else(|| ApiError::not_found("execution"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/functions",
    tag = "functions",
    summary = "Create a function",
    request_body = FunctionInput,
    responses((status = 201, description = "The function", body = FunctionBody)),
)]
pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<FunctionInput>,
) -> Result<HttpResponse, ApiError> {
    let draft = body.draft(&state)?;
    let function = state
        .functions
        .ask(CreateFunction { account, draft })
        .await?;
    Ok(HttpResponse::Created().json(FunctionBody::from(function)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/functions",
    tag = "functions",
    summary = "List the account's functions",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of functions", body = super::pagination::ListBody<FunctionBody>)),
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
        "functions",
        |page| state.functions.ask(ListFunctions { account, page }),
        FunctionBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/functions/{function_id}",
    tag = "functions",
    summary = "Get a function",
    responses((status = 200, description = "The function", body = FunctionBody)),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = function_id(&path.1)?;
    let function = state.functions.ask(GetFunction { account, id }).await?;
    Ok(HttpResponse::Ok().json(FunctionBody::from(function)))
}

#[utoipa::path(
    put,
    path = "/accounts/{id}/functions/{function_id}",
    tag = "functions",
    summary = "Replace a function (omitted optional fields reset)",
    request_body = FunctionInput,
    responses((status = 200, description = "The function, version + 1", body = FunctionBody)),
)]
pub async fn replace(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<FunctionInput>,
) -> Result<HttpResponse, ApiError> {
    let id = function_id(&path.1)?;
    let draft = body.draft(&state)?;
    let function = state
        .functions
        .ask(ReplaceFunction { account, id, draft })
        .await?;
    Ok(HttpResponse::Ok().json(FunctionBody::from(function)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/functions/{function_id}",
    tag = "functions",
    summary = "Delete a function and its executions",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = function_id(&path.1)?;
    state.functions.ask(DeleteFunction { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/functions/{function_id}/execute",
    tag = "functions",
    summary = "Run a function now with the body as its params",
    request_body(content = Option<Object>, description = "Any JSON object: the params (an empty body is `{}`)", content_type = "application/json"),
    responses((status = 200, description = "The execution, succeeded or failed", body = ExecutionBody, content_type = "application/json", headers(("X-Execution-Status" = String, description = "succeeded or failed")))),
)]
pub async fn execute(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonOrEmpty(params): JsonOrEmpty<serde_json::Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let id = function_id(&path.1)?;
    let message = ExecuteFunction {
        account,
        id,
        params: Value::Object(params),
        options: actors::functions::ExecOptions::default(),
    };
    let execution = state.functions.ask(message).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Execution-Status", execution.status.as_str()))
        .json(ExecutionBody::from(execution)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/functions/{function_id}/executions",
    tag = "functions",
    summary = "List a function's executions, newest first",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of executions", body = super::pagination::ListBody<ExecutionBody>)),
)]
pub async fn list_executions(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let function = function_id(&path.1)?;
    let scope = format!("accounts/{account}/functions/{function}/executions");
    let page = params.page(&scope)?;
    let executions = state
        .functions
        .ask(ListExecutions {
            account,
            function,
            page,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(executions, &scope, ExecutionBody::from)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/functions/{function_id}/executions/{execution_id}",
    tag = "functions",
    summary = "Get an execution of a function",
    responses((status = 200, description = "The execution", body = ExecutionBody)),
)]
pub async fn get_execution(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let function = Some(function_id(&path.1)?);
    let id = execution_id(&path.2)?;
    let execution = state
        .functions
        .ask(GetExecution {
            account,
            id,
            function,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExecutionBody::from(execution)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/functions/executions/{execution_id}",
    tag = "functions",
    summary = "Get an execution of any of the account's functions",
    responses((status = 200, description = "The execution", body = ExecutionBody)),
)]
pub async fn get_any_execution(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = execution_id(&path.1)?;
    let execution = state
        .functions
        .ask(GetExecution {
            account,
            id,
            function: None,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExecutionBody::from(execution)))
}
