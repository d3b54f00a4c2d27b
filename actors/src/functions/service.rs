//! Function business logic: validation against existing secrets, versioned replacement,
//! and execution (resolve secrets → run in the pool → apply Devpack actions all or
//! nothing → record).

use super::actions::{self, Actions, Effect, Fence, Outcome, Refused, Scope};
use super::{
    Execution, ExecutionStatus, Function, FunctionDraft, FunctionStore, FunctionsError, LimitMaxima,
};
use crate::clock::Clock;
use crate::error::{OrNotFound, StoreError, ValidationError};
use crate::events::{self, Event};
use crate::executor::{
    redact, ErrorCode, Execute, ExecutorActor, ExecutorMetrics, QueuedAction, RunContext,
    RunLimits, RunOutput, RunRequest,
};
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};
use crate::quota::{Quota, Quotas};
use crate::secrets::{SecretName, SecretResolver, SecretStore};
use crate::supervisor::ActorHandle;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Service-wide execution defaults (from the `EXEC_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct ExecDefaults {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub output_bytes: u64,
    pub log_lines: usize,
    pub log_line_bytes: usize,
    pub max_actions: usize,
    pub maxima: LimitMaxima,
}

/// How an execution is started.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The id to record the execution under (a webhook caller was already told it);
    /// a new one when `None`.
    pub execution_id: Option<ExecutionId>,
    /// Whether a failed run emits `function.execution.failed`; runs started by an event
    /// trigger do not, so a failing handler cannot feed itself.
    pub failure_event: bool,
    /// Wait for room in the executor instead of failing as busy (background work).
    pub wait_for_room: bool,
    /// The lease the run is made under (a job attempt, a firing): nothing is recorded
    /// unless it still holds when the execution is written.
    pub fence: Option<Arc<dyn Fence>>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            execution_id: None,
            failure_event: true,
            wait_for_room: false,
            fence: None,
        }
    }
}

#[derive(Clone)]
pub struct FunctionsService {
    store: Arc<dyn FunctionStore>,
    /// To check that listed secrets exist when a function is saved.
    secret_store: Arc<dyn SecretStore>,
    resolver: SecretResolver,
    executor: ActorHandle<ExecutorActor>,
    /// Turns a run's queued Devpack actions into effects (`devpack`, wired at start-up).
    actions: Arc<dyn Actions>,
    defaults: ExecDefaults,
    clock: Arc<dyn Clock>,
    metrics: ExecutorMetrics,
    /// `MAX_FUNCTIONS_PER_ACCOUNT`.
    quota: Quota,
    /// `EXECUTION_RETENTION`; `None` keeps executions.
    retention: Option<Duration>,
}

/// What the functions service works with, besides its settings.
pub struct FunctionsDeps {
    pub store: Arc<dyn FunctionStore>,
    /// To check that listed secrets exist when a function is saved.
    pub secret_store: Arc<dyn SecretStore>,
    pub resolver: SecretResolver,
    pub executor: ActorHandle<ExecutorActor>,
    /// Turns a run's queued Devpack actions into effects (`devpack`, wired at start-up).
    pub actions: Arc<dyn Actions>,
    pub clock: Arc<dyn Clock>,
}

impl FunctionsService {
    pub fn new(deps: FunctionsDeps, defaults: ExecDefaults, metrics: ExecutorMetrics) -> Self {
        let FunctionsDeps {
            store,
            secret_store,
            resolver,
            executor,
            actions,
            clock,
        } = deps;
        Self {
            store,
            secret_store,
            resolver,
            executor,
            actions,
            defaults,
            clock,
            metrics,
            quota: Quotas::default().functions,
            retention: None,
        }
    }

    /// Executions older than `retention` are deleted by [`Self::purge`].
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Retention: deletes executions older than `EXECUTION_RETENTION`; how many went.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        crate::work::purge_older(self.retention, self.clock.now(), |before, limit| {
            self.store.purge_executions(before, limit)
        })
        .await
    }

    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    pub fn maxima(&self) -> LimitMaxima {
        self.defaults.maxima
    }

    /// Every listed secret must exist in the account when the function is saved.
    async fn check_secrets(
        &self,
        account: AccountId,
        draft: &FunctionDraft,
    ) -> Result<(), FunctionsError> {
        let keys: Vec<String> = draft.secrets.iter().map(SecretName::key).collect();
        let found: std::collections::HashSet<String> = self
            .secret_store
            .current_versions(account, &keys)
            .await?
            .into_iter()
            .map(|(meta, _)| meta.name.to_ascii_lowercase())
            .collect();
        match draft
            .secrets
            .iter()
            .find(|name| !found.contains(&name.key()))
        {
            None => Ok(()),
            Some(name) => Err(ValidationError::new(
                "secrets",
                format!("secret \"{}\" not found", name.as_str()),
            )
            .into()),
        }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        draft: FunctionDraft,
    ) -> Result<Function, FunctionsError> {
        self.check_secrets(account, &draft).await?;
        let now = self.clock.now();
        let function = draft.into_function(FunctionId::generate(), account, 1, now, now);
        self.store
            .create(&function, self.quota)
            .await
            .or_not_found("account")?;
        tracing::info!(function_id = %function.id, "function created");
        Ok(function)
    }

    pub async fn get(
        &self,
        account: AccountId,
        id: FunctionId,
    ) -> Result<Function, FunctionsError> {
        Ok(self.store.get(account, id).await.or_not_found("function")?)
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, FunctionsError> {
        Ok(self.store.list(account, page).await?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, function_id = %id))]
    pub async fn replace(
        &self,
        account: AccountId,
        id: FunctionId,
        draft: FunctionDraft,
    ) -> Result<Function, FunctionsError> {
        let current = self.get(account, id).await?;
        self.check_secrets(account, &draft).await?;
        let replaced = draft.into_function(
            id,
            account,
            current.version + 1,
            current.created_at,
            self.clock.now(),
        );
        Ok(self
            .store
            .replace(&replaced)
            .await
            .or_not_found("function")?)
    }

    pub async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), FunctionsError> {
        Ok(self
            .store
            .delete(account, id)
            .await
            .or_not_found("function")?)
    }

    pub async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, FunctionsError> {
        // 404 for an unknown function rather than an empty list.
        self.get(account, function).await?;
        Ok(self.store.list_executions(account, function, page).await?)
    }

    pub async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, FunctionsError> {
        Ok(self
            .store
            .get_execution(account, id, function)
            .await
            .or_not_found("execution")?)
    }

    fn limits_for(&self, function: &Function) -> RunLimits {
        let d = &self.defaults;
        RunLimits {
            timeout: function
                .limits
                .timeout_ms
                .map_or(d.timeout, Duration::from_millis),
            memory_bytes: function
                .limits
                .memory_mib
                .map_or(d.memory_bytes, |m| m << 20) as usize,
            output_bytes: function.limits.output_limit_bytes.unwrap_or(d.output_bytes) as usize,
            log_lines: d.log_lines,
            log_line_bytes: d.log_line_bytes,
            max_actions: d.max_actions,
        }
    }

    /// Runs a function and records the execution, whether it succeeded or failed.
    #[tracing::instrument(skip_all, fields(account_id = %account, function_id = %id))]
    pub async fn execute(
        &self,
        account: AccountId,
        id: FunctionId,
        params: Value,
        options: ExecOptions,
    ) -> Result<Execution, FunctionsError> {
        let function = self.get(account, id).await?;
        let execution_id = options.execution_id.unwrap_or_else(ExecutionId::generate);
        let started_at = self.clock.now();
        let clock = Instant::now();
        let names: Vec<SecretName> = function
            .secrets
            .iter()
            .filter_map(|n| SecretName::from_path(n))
            .collect();
        let secrets = if names.is_empty() {
            Ok(BTreeMap::new())
        } else {
            self.resolver.resolve(account, names).await
        };
        // The values, kept to redact what the run reports back (errors, action errors):
        // the worker redacts its logs, but a thrown `Error(secret)` comes back verbatim.
        let mut shown: BTreeMap<String, String> = BTreeMap::new();
        let mut output = match (secrets, serde_json::value::to_raw_value(&params)) {
            (Err(e), _) => RunOutput::failed(ErrorCode::SecretUnavailable, e.to_string()),
            (_, Err(e)) => RunOutput::failed(ErrorCode::Internal, format!("params: {e}")),
            (Ok(secrets), Ok(params_json)) => {
                shown.clone_from(&secrets);
                let request = RunRequest {
                    source: function.source.clone(),
                    params: params_json,
                    secrets,
                    context: RunContext {
                        function_id: function.id.to_string(),
                        function_name: function.name.clone(),
                        account_id: account.to_string(),
                        execution_id: execution_id.to_string(),
                    },
                    limits: self.limits_for(&function),
                };
                let execute = Execute {
                    request,
                    wait: options.wait_for_room,
                };
                match self.executor.call(execute).await {
                    Err(unavailable) => return Err(unavailable.into()),
                    Ok(Err(_busy)) => return Err(FunctionsError::ExecutorBusy),
                    Ok(Ok(output)) => output,
                }
            }
        };
        // Kept apart from the output: a refusal found by the store rewrites their records.
        let queued = std::mem::take(&mut output.actions);
        let (mut execution, effects) = self.record(
            account,
            &function,
            execution_id,
            params,
            output,
            &queued,
            started_at,
            clock,
        );
        redact_reports(&mut execution, &shown);
        let event = |e: &Execution| {
            (options.failure_event && e.status == ExecutionStatus::Failed).then(|| failure_event(e))
        };
        let refused = self
            .store
            .insert_execution(
                &execution,
                event(&execution).as_ref(),
                options.fence.as_ref(),
                &effects,
            )
            .await
            .or_not_found("function")?;
        if let Some(refused) = refused {
            // An action was refused when applied: nothing was written; the execution is
            // recorded as failed, with no action applied.
            refuse(&mut execution, &queued, &refused);
            redact_reports(&mut execution, &shown);
            self.store
                .insert_execution(
                    &execution,
                    event(&execution).as_ref(),
                    options.fence.as_ref(),
                    &[],
                )
                .await
                .or_not_found("function")?;
        }
        let code = execution.error_code.as_deref().unwrap_or("none");
        self.metrics
            .executions
            .with_label_values(&[execution.status.as_str(), code])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[execution.status.as_str()])
            .observe(clock.elapsed().as_secs_f64());
        tracing::info!(execution_id = %execution.id, status = execution.status.as_str(), error_code = code, duration_ms = execution.duration_ms, "function executed");
        Ok(execution)
    }

    /// The execution record of a run, with the effects of its Devpack actions when they
    /// all validated (they are applied with the record).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        account: AccountId,
        function: &Function,
        id: ExecutionId,
        input: Value,
        output: RunOutput,
        queued: &[QueuedAction],
        started_at: chrono::DateTime<chrono::Utc>,
        clock: Instant,
    ) -> (Execution, Vec<Box<dyn Effect>>) {
        let (status, output_value, error, error_code) = match output.result {
            Ok(value) => (ExecutionStatus::Succeeded, value, None, None),
            Err(e) => (
                ExecutionStatus::Failed,
                Value::Object(Default::default()),
                Some(e.message),
                Some(e.code.as_str().to_owned()),
            ),
        };
        let mut execution = Execution {
            id,
            account_id: account,
            function_id: function.id,
            status,
            input,
            output: output_value,
            logs: output.logs,
            error,
            error_code,
            started_at,
            completed_at: self.clock.now(),
            duration_ms: clock.elapsed().as_millis() as i64,
            actions: Vec::new(),
        };
        if status == ExecutionStatus::Failed {
            execution.actions = actions::records(queued, Outcome::ScriptFailed);
            return (execution, Vec::new());
        }
        let scope = Scope {
            account,
            function: function.id,
            now: execution.completed_at,
        };
        match self.actions.prepare(queued, scope) {
            Ok(effects) => {
                execution.actions = actions::records(queued, Outcome::Applied(&effects));
                (execution, effects)
            }
            Err(refused) => {
                refuse(&mut execution, queued, &refused);
                (execution, Vec::new())
            }
        }
    }
}

/// Marks an execution failed because an action was refused; the script's output is kept.
/// Secret values out of the texts a run reports: its error (also carried by the
/// failure event) and its actions' errors. Output is what the function chose to return
/// and is kept as returned.
fn redact_reports(execution: &mut Execution, secrets: &BTreeMap<String, String>) {
    if secrets.is_empty() {
        return;
    }
    if let Some(error) = execution.error.take() {
        execution.error = Some(redact(error, secrets));
    }
    for action in &mut execution.actions {
        if let Some(error) = action.error.take() {
            action.error = Some(redact(error, secrets));
        }
    }
}

fn refuse(execution: &mut Execution, queued: &[QueuedAction], refused: &Refused) {
    execution.status = ExecutionStatus::Failed;
    execution.error = Some(actions::failure_message(queued, refused));
    execution.error_code = Some(ErrorCode::ActionFailed.as_str().to_owned());
    execution.actions = actions::records(queued, Outcome::Refused(refused));
    if execution.output.is_null() {
        execution.output = Value::Object(Default::default());
    }
}

/// `function.execution.failed` for a failed execution.
fn failure_event(execution: &Execution) -> Event {
    Event::new(
        execution.account_id,
        events::FUNCTION_EXECUTION_FAILED,
        serde_json::json!({
            "execution_id": execution.id.to_string(),
            "function_id": execution.function_id.to_string(),
            "error": execution.error,
            "error_code": execution.error_code,
        }),
        execution.completed_at,
    )
}
