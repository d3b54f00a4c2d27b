//! The narrow seam between the isolate pool and a JavaScript engine. A backend provides
//! runtimes; a runtime runs one request at a time on the thread that created it (neither
//! a QuickJS runtime nor a V8 isolate is `Send`). Everything engine-specific (contexts,
//! host functions, value conversion) stays behind these two traits, so a V8 backend can
//! be added without touching the pool, the functions service or the API.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Creates runtimes. Shared by every worker.
pub trait Engine: Send + Sync + 'static {
    /// `quickjs`, `mock`, …: for logs.
    fn name(&self) -> &'static str;
    /// A fresh runtime for the calling thread.
    fn new_runtime(&self) -> Result<Box<dyn EngineRuntime>, String>;
}

/// One runtime, owned by one worker thread for its whole life.
pub trait EngineRuntime {
    /// Runs one request in a fresh context. Never panics on user code.
    fn run(&mut self, request: &RunRequest) -> RunOutput;
}

/// Who is running, for `Devpack.context` and the mock executor.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub function_id: String,
    pub function_name: String,
    pub account_id: String,
    pub execution_id: String,
}

/// Limits of one run (already resolved from function overrides and settings).
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub output_bytes: usize,
    pub log_lines: usize,
    pub log_line_bytes: usize,
    pub max_actions: usize,
}

/// Everything a run needs; plain data so it can cross into a worker thread.
#[derive(Clone)]
pub struct RunRequest {
    pub source: std::sync::Arc<str>,
    pub params: Value,
    /// Name → plaintext. Only ever given to the function as its second argument.
    pub secrets: BTreeMap<String, String>,
    pub context: RunContext,
    pub limits: RunLimits,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("context", &self.context)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// Execution error codes (CONTRACT.md §1.2), as stored in execution records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ScriptError,
    Timeout,
    MemoryLimit,
    OutputTooLarge,
    TooManyActions,
    ActionFailed,
    SecretUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScriptError => "script_error",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::OutputTooLarge => "output_too_large",
            Self::TooManyActions => "too_many_actions",
            Self::ActionFailed => "action_failed",
            Self::SecretUnavailable => "secret_unavailable",
            Self::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub code: ErrorCode,
    pub message: String,
}

/// A `Devpack` call queued during the run; applied (or not) after it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedAction {
    pub id: String,
    pub kind: String,
    pub params: Value,
}

#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The normalised output object, or why the run failed.
    pub result: Result<Value, RunError>,
    pub logs: Vec<String>,
    pub actions: Vec<QueuedAction>,
    /// The runtime hit a hard limit and must be disposed and replaced.
    pub poisoned: bool,
}

impl RunOutput {
    pub fn failed(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            result: Err(RunError {
                code,
                message: message.into(),
            }),
            logs: Vec::new(),
            actions: Vec::new(),
            poisoned: false,
        }
    }
}

/// The output rule shared by every backend: an object as-is; `null` → `{}`; anything else
/// → `{"result": v}`.
pub fn normalise_output(value: Value) -> Value {
    match value {
        Value::Object(_) => value,
        Value::Null => Value::Object(Default::default()),
        other => serde_json::json!({ "result": other }),
    }
}

/// Console entries: secret values of 4+ characters become `***`, long entries are cut,
/// entries past the line limit are counted and reported once at the end.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Vec<String>,
    dropped: usize,
}

impl LogBuffer {
    pub fn push(
        &mut self,
        mut line: String,
        secrets: &BTreeMap<String, String>,
        limits: &RunLimits,
    ) {
        if self.lines.len() >= limits.log_lines {
            self.dropped += 1;
            return;
        }
        for value in secrets.values().filter(|v| v.chars().count() >= 4) {
            if line.contains(value.as_str()) {
                line = line.replace(value.as_str(), "***");
            }
        }
        if line.len() > limits.log_line_bytes {
            let mut cut = limits.log_line_bytes;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("…[truncated]");
        }
        self.lines.push(line);
    }

    pub fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines
                .push(format!("[{} log lines dropped]", self.dropped));
        }
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs(1),
            memory_bytes: 1 << 20,
            output_bytes: 1 << 10,
            log_lines: 2,
            log_line_bytes: 10,
            max_actions: 2,
        }
    }

    #[test]
    fn output_normalisation() {
        assert_eq!(
            normalise_output(serde_json::json!({"a": 1})),
            serde_json::json!({"a": 1})
        );
        assert_eq!(normalise_output(Value::Null), serde_json::json!({}));
        assert_eq!(
            normalise_output(serde_json::json!(5)),
            serde_json::json!({"result": 5})
        );
        assert_eq!(
            normalise_output(serde_json::json!([1])),
            serde_json::json!({"result": [1]})
        );
    }

    #[test]
    fn logs_are_redacted_cut_and_capped() {
        let secrets = BTreeMap::from([
            ("k".to_owned(), "hunter2".to_owned()),
            ("s".to_owned(), "abc".to_owned()),
        ]);
        let mut logs = LogBuffer::default();
        logs.push("pw hunter2 abc".to_owned(), &secrets, &limits());
        logs.push("0123456789abcdef".to_owned(), &secrets, &limits());
        logs.push("third".to_owned(), &secrets, &limits());
        logs.push("fourth".to_owned(), &secrets, &limits());
        assert_eq!(
            logs.finish(),
            [
                "pw *** abc",
                "0123456789…[truncated]",
                "[2 log lines dropped]"
            ]
        );
    }
}
