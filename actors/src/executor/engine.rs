//! The narrow seam between the executor and a JavaScript engine. A backend provides
//! runtimes; a runtime runs one request at a time on the thread that created it (neither
//! a QuickJS runtime nor a V8 isolate is `Send`). Everything engine-specific (contexts,
//! host functions, value conversion) stays behind these two traits, so a V8 backend can
//! be added without touching the pool, the worker protocol, the functions service or the
//! API. The request and output types are plain data that cross the worker pipe
//! (`protocol.rs`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// One runtime, owned by one worker for its whole life (or until it reports that it must
/// be disposed).
pub trait EngineRuntime {
    /// Runs one request in a fresh context. Never panics on user code. When the output
    /// says `disposed`, the caller drops this runtime and makes a new one before the next
    /// run: nothing the run left behind may reach another run.
    fn run(&mut self, request: &RunRequest) -> RunOutput;

    /// Called between runs, while the server reads the previous reply and sends the next
    /// request: work the next run would otherwise start with can be done here (QuickJS
    /// builds the next run's fresh context). Nothing of a finished run may be kept.
    fn prepare(&mut self) {}
}

/// Who is running, for `Devpack.context` and the mock executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunContext {
    pub function_id: String,
    pub function_name: String,
    pub account_id: String,
    pub execution_id: String,
}

/// Limits of one run (already resolved from function overrides and settings).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RunLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub output_bytes: usize,
    pub log_lines: usize,
    pub log_line_bytes: usize,
    pub max_actions: usize,
}

/// Everything a run needs; plain data so it can cross into a worker process.
#[derive(Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub source: String,
    /// The params object as JSON text: serialised once by the server, parsed by the
    /// engine straight from this text.
    pub params: Box<RawValue>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    pub code: ErrorCode,
    pub message: String,
}

/// A `Devpack` call queued during the run; applied (or not) after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedAction {
    pub id: String,
    pub kind: String,
    pub params: Value,
}

/// Why a runtime was disposed after a run (the `reason` of
/// `executor_terminations_total` for runtimes replaced inside a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposal {
    /// The interrupt handler stopped the run at its deadline.
    Timeout,
    /// The heap limit was hit.
    MemoryLimit,
    /// The run left microtasks queued; they must never run during another run.
    PendingJobs,
    /// A long run: whatever it left in the heap (cyclic garbage, a grown atom table) is
    /// not charged to the next run. Routine, not counted as a termination.
    Recycled,
}

impl Disposal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::PendingJobs => "pending_jobs",
            Self::Recycled => "recycled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutput {
    /// The normalised output object, or why the run failed.
    pub result: Result<Value, RunError>,
    pub logs: Vec<String>,
    pub actions: Vec<QueuedAction>,
    /// Set when the runtime must be disposed and replaced before the next run.
    pub disposed: Option<Disposal>,
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
            disposed: None,
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
///
/// The buffer also bounds the work before it: a backend asks [`LogBuffer::admit`] before
/// formatting an entry (a full buffer only counts it) and captures at most
/// [`LogBuffer::capture_bytes`] of it, so a script logging huge values costs the server
/// no more than the limits say.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Vec<String>,
    dropped: usize,
}

impl LogBuffer {
    /// Takes the place of the next entry, or counts it as dropped when the buffer is full
    /// (the caller must then not format it). The place is taken before formatting, which
    /// may run script code that logs in turn.
    pub fn reserve(&mut self, limits: &RunLimits) -> Option<usize> {
        if self.lines.len() >= limits.log_lines {
            self.dropped += 1;
            return None;
        }
        self.lines.push(String::new());
        Some(self.lines.len() - 1)
    }

    /// How much of an entry to capture: the line limit plus the longest secret, so a
    /// secret that straddles the cut is still seen whole, and redacted, before cutting.
    pub fn capture_bytes(secrets: &BTreeMap<String, String>, limits: &RunLimits) -> usize {
        let longest = secrets.values().map(String::len).max().unwrap_or(0);
        limits.log_line_bytes.saturating_add(longest)
    }

    /// Fills a reserved entry. `cut` says the captured text stopped short of the whole
    /// entry, which is then marked truncated whatever its length after redaction.
    pub fn fill(
        &mut self,
        slot: usize,
        mut line: String,
        cut: bool,
        secrets: &BTreeMap<String, String>,
        limits: &RunLimits,
    ) {
        line = redact(line, secrets);
        if cut || line.len() > limits.log_line_bytes {
            truncate_on_char(&mut line, limits.log_line_bytes);
            line.push_str("…[truncated]");
        }
        if let Some(entry) = self.lines.get_mut(slot) {
            *entry = line;
        }
    }

    pub fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines
                .push(format!("[{} log lines dropped]", self.dropped));
        }
        self.lines
    }
}

/// Secret values of 4 or more characters become `***` (shorter ones would hide ordinary
/// words). Longest first: a secret that contains another is hidden whole, not left as
/// `***` plus its tail.
pub fn redact(mut text: String, secrets: &BTreeMap<String, String>) -> String {
    let mut values: Vec<&str> = secrets
        .values()
        .map(String::as_str)
        .filter(|v| v.chars().count() >= 4)
        .collect();
    values.sort_unstable_by_key(|v| std::cmp::Reverse(v.len()));
    for value in values {
        if text.contains(value) {
            text = text.replace(value, "***");
        }
    }
    text
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn truncate_on_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
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
    fn a_secret_containing_another_is_hidden_whole() {
        let secrets: BTreeMap<String, String> = [
            ("A".to_owned(), "abcd".to_owned()),
            ("B".to_owned(), "abcdefgh".to_owned()),
        ]
        .into();
        assert_eq!(
            redact("x abcdefgh y abcd".to_owned(), &secrets),
            "x *** y ***"
        );
    }

    #[test]
    fn logs_are_redacted_cut_and_capped() {
        let secrets = BTreeMap::from([
            ("k".to_owned(), "hunter2".to_owned()),
            ("s".to_owned(), "abc".to_owned()),
        ]);
        let mut logs = LogBuffer::default();
        for line in ["pw hunter2 abc", "0123456789abcdef", "third", "fourth"] {
            if let Some(slot) = logs.reserve(&limits()) {
                logs.fill(slot, line.to_owned(), false, &secrets, &limits());
            }
        }
        assert_eq!(
            logs.finish(),
            [
                "pw *** abc",
                "0123456789…[truncated]",
                "[2 log lines dropped]"
            ]
        );
        assert_eq!(LogBuffer::capture_bytes(&secrets, &limits()), 10 + 7);
        let mut cut = LogBuffer::default();
        let slot = cut.reserve(&limits()).unwrap();
        cut.fill(slot, "short".to_owned(), true, &secrets, &limits());
        assert_eq!(cut.finish(), ["short…[truncated]"], "a cut entry says so");
    }
}
