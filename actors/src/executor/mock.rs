//! `TEE_MODE=mock|disabled|off`: no JavaScript. The output echoes the params with the
//! function name and a fixed message; no logs, no actions.

use super::engine::{Engine, EngineRuntime, RunOutput, RunRequest};

#[derive(Debug, Default)]
pub struct MockEngine;

impl Engine for MockEngine {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn new_runtime(&self) -> Result<Box<dyn EngineRuntime>, String> {
        Ok(Box::new(MockRuntime))
    }
}

struct MockRuntime;

impl EngineRuntime for MockRuntime {
    fn run(&mut self, request: &RunRequest) -> RunOutput {
        let mut output =
            serde_json::from_str::<serde_json::Map<_, _>>(request.params.get()).unwrap_or_default();
        output.insert(
            "function_name".to_owned(),
            request.context.function_name.clone().into(),
        );
        output.insert("message".to_owned(), "mock execution (TEE disabled)".into());
        RunOutput {
            result: Ok(serde_json::Value::Object(output)),
            logs: Vec::new(),
            actions: Vec::new(),
            disposed: None,
        }
    }
}
