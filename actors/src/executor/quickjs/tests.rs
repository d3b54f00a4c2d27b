use super::*;
use crate::executor::engine::{RunContext, RunLimits};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        output_bytes: 256 << 10,
        log_lines: 100,
        log_line_bytes: 8 << 10,
        max_actions: 4,
    }
}

fn request(source: &str, params: serde_json::Value) -> RunRequest {
    RunRequest {
        source: source.into(),
        params: serde_json::value::to_raw_value(&params).unwrap(),
        secrets: BTreeMap::from([("API_KEY".to_owned(), "sk-secret-value".to_owned())]),
        context: RunContext {
            function_id: "f-1".into(),
            function_name: "fn".into(),
            account_id: "a-1".into(),
            execution_id: "e-1".into(),
        },
        limits: limits(),
    }
}

fn run(source: &str) -> RunOutput {
    QuickJs
        .new_runtime()
        .unwrap()
        .run(&request(source, json!({"a": 2, "b": 3})))
}

fn error(out: &RunOutput) -> (ErrorCode, String) {
    let e = out.result.clone().unwrap_err();
    (e.code, e.message)
}

#[test]
fn params_secrets_console_and_output_shapes() {
    let out = run("(p, s) => { console.log('key', s.API_KEY, {n: 1}, [2]); console.warn(p.a); return {sum: p.a + p.b, global: params.b}; }");
    assert_eq!(out.result.unwrap(), json!({"sum": 5, "global": 3}));
    assert_eq!(
        out.logs,
        ["key *** {\"n\":1} [2]", "2"],
        "secret values are redacted in logs"
    );
    assert_eq!(run("() => 42").result.unwrap(), json!({"result": 42}));
    assert_eq!(run("() => 'hi'").result.unwrap(), json!({"result": "hi"}));
    assert_eq!(
        run("() => [1, 2]").result.unwrap(),
        json!({"result": [1, 2]})
    );
    assert_eq!(run("() => null").result.unwrap(), json!({}));
    assert_eq!(run("() => undefined").result.unwrap(), json!({}));
    assert_eq!(
        run("({direct: true})").result.unwrap(),
        json!({"direct": true}),
        "a non-function value is the result"
    );
}

#[test]
fn failures_are_script_errors_with_the_message() {
    assert_eq!(
        error(&run("() => { throw new Error('boom') }")),
        (ErrorCode::ScriptError, "Uncaught Error: boom".to_owned())
    );
    let (code, message) = error(&run("(p) => {"));
    assert_eq!(code, ErrorCode::ScriptError);
    assert!(message.starts_with("Uncaught SyntaxError: "), "{message}");
    assert_eq!(
        error(&run(
            "async () => { await null; throw new TypeError('later') }"
        )),
        (
            ErrorCode::ScriptError,
            "Uncaught TypeError: later".to_owned()
        )
    );
    assert_eq!(
        run("async (p) => { await null; return {v: p.a} }")
            .result
            .unwrap(),
        json!({"v": 2})
    );
    assert_eq!(
        error(&run("() => new Promise(() => {})")),
        (
            ErrorCode::ScriptError,
            "function returned a promise that did not settle".to_owned()
        )
    );
    assert_eq!(
        error(&run("() => ({f() {}, n: 1n})")).0,
        ErrorCode::ScriptError,
        "BigInt is not serialisable"
    );
}

#[test]
fn no_host_escape_hatches() {
    let out = run("() => [typeof require, typeof process, typeof setTimeout, typeof fetch, typeof std, typeof os]");
    assert_eq!(out.result.unwrap(), json!({"result": vec!["undefined"; 6]}));
}

#[test]
fn limits_fail_the_run_and_poison_the_runtime() {
    let mut rt = QuickJs.new_runtime().unwrap();
    let out = rt.run(&request("() => { while (true) {} }", json!({})));
    assert_eq!(
        error(&out),
        (
            ErrorCode::Timeout,
            "execution exceeded its 500 ms timeout".to_owned()
        )
    );
    assert_eq!(out.disposed, Some(Disposal::Timeout));

    // A generous deadline: on a loaded machine filling 32 MiB may take longer than the
    // default 500 ms of these tests, and this case is about the heap, not the clock.
    let mut bomb = request(
        "() => { const a = []; while (true) a.push('x'.repeat(1024) + a.length); }",
        json!({}),
    );
    bomb.limits.timeout = Duration::from_secs(30);
    let out = QuickJs.new_runtime().unwrap().run(&bomb);
    assert_eq!(error(&out).0, ErrorCode::MemoryLimit, "{:?}", error(&out));
    assert_eq!(out.disposed, Some(Disposal::MemoryLimit));

    let out = run("() => ({big: 'x'.repeat(10 * 1024 * 1024)})");
    assert_eq!(
        error(&out),
        (
            ErrorCode::OutputTooLarge,
            "output is 10485770 bytes; the limit is 262144 bytes".to_owned()
        )
    );
    assert!(
        !matches!(
            out.disposed,
            Some(Disposal::Timeout | Disposal::MemoryLimit)
        ),
        "a refused output does not poison the runtime"
    );
    assert_eq!(
        error(&run("() => { throw 'plain' }")),
        (ErrorCode::ScriptError, "Uncaught plain".to_owned())
    );

    let out = run("() => { for (let i = 0; i < 1000; i++) console.log('line', i); return 1 }");
    assert_eq!(out.logs.len(), 101);
    assert_eq!(out.logs[100], "[900 log lines dropped]");
}

#[test]
fn nothing_leaks_between_runs_on_one_runtime() {
    let mut rt = QuickJs.new_runtime().unwrap();
    rt.run(&request(
        "() => { globalThis.leak = 'x'; Object.prototype.polluted = 1; return 1 }",
        json!({}),
    ));
    let out = rt.run(&request(
        "() => [typeof leak, ({}).polluted === undefined]",
        json!({}),
    ));
    assert_eq!(out.result.unwrap(), json!({"result": ["undefined", true]}));
}

#[test]
fn devpack_queues_actions_and_helpers() {
    let out = run(
        "() => { const a = Devpack.gasBank.withdraw({wallet: 'w', amount: '1.5', to: 'x'});
                 Devpack.oracle.createRequest({dataSourceId: 'd', payload: {k: 1}});
                 return {a, ctx: Devpack.context, r: Devpack.respond.success(1, 2), v: Devpack.version} }",
    );
    let value = out.result.unwrap();
    assert_eq!(
        value["a"],
        json!({"id": "action_1", "type": "gasbank.withdraw"})
    );
    assert_eq!(
        value["ctx"],
        json!({"functionId": "f-1", "accountId": "a-1", "executionId": "e-1"})
    );
    assert_eq!(value["r"], json!({"success": true, "data": 1, "meta": 2}));
    assert_eq!(value["v"], "0.1.0");
    assert_eq!(out.actions.len(), 2);
    assert_eq!(out.actions[1].kind, "oracle.createRequest");
    assert_eq!(
        out.actions[1].params,
        json!({"dataSourceId": "d", "payload": {"k": 1}})
    );

    let out = run("() => { for (let i = 0; i < 5; i++) Devpack.automation.schedule({name: 'n' + i}); return 1 }");
    assert_eq!(
        error(&out),
        (
            ErrorCode::TooManyActions,
            "more than 4 Devpack actions".to_owned()
        )
    );
    let out = run("() => { Devpack.gasBank = null; return typeof Devpack.gasBank.withdraw }");
    assert_eq!(
        error(&out),
        (
            ErrorCode::ScriptError,
            "Uncaught TypeError: 'gasBank' is read-only".to_owned()
        ),
        "Devpack is frozen"
    );
}

#[test]
fn garbage_from_earlier_runs_never_fails_a_run() {
    let mut rt = QuickJs.new_runtime().unwrap();
    // Leaves 20k reference cycles behind (below the automatic collection threshold): only
    // the cycle collector frees them, and a big string allocation does not trigger it.
    let mut litter = request(
        "() => { for (let i = 0; i < 20000; i++) { const a = {}; const b = {a}; a.b = b; } return 1 }",
        json!({}),
    );
    litter.limits.memory_bytes = 64 << 20;
    litter.limits.timeout = Duration::from_secs(30);
    assert!(rt.run(&litter).result.is_ok());
    // Fits an 8 MiB heap on its own, but not next to the garbage left above (checked: this
    // test fails without the collect-and-retry).
    let mut small = request("() => ({n: 'x'.repeat(4 * 1024 * 1024).length})", json!({}));
    small.limits.memory_bytes = 8 << 20;
    small.limits.timeout = Duration::from_secs(30);
    let out = rt.run(&small);
    assert_eq!(out.result.unwrap(), json!({"n": 4 * 1024 * 1024}));
}

#[test]
fn a_runtime_is_freed_cleanly_after_any_run() {
    // QuickJS asserts, when a runtime is freed, that no object outlived it; a host
    // function holding a JS value from Rust would break that and abort the worker.
    for source in [
        "() => { console.log('a\\ud800', {x: 1}); Devpack.oracle.createRequest({}); return 1 }",
        "() => { for (let i = 0; i < 5; i++) Promise.resolve().then(() => console.log(i)); return 1 }",
        "() => { throw new Error('\\udc00') }",
        "async () => { await null; console.log('x'); return 2 }",
    ] {
        let mut rt = QuickJs.new_runtime().unwrap();
        rt.prepare();
        let out = rt.run(&request(source, json!({})));
        assert!(!out.logs.is_empty() || out.result.is_err() || out.disposed.is_some());
        drop(rt);
    }
}

/// A thrown secret is redacted in the worker, before the message is cut, so one that
/// straddles the cut leaves no prefix behind.
#[test]
fn thrown_secrets_are_redacted_before_the_cut() {
    let (_, message) = error(&run("(p, s) => { throw new Error(s.API_KEY) }"));
    assert_eq!(message, "Uncaught Error: ***");
    let source = format!(
        "(p, s) => {{ throw new Error('x'.repeat({}) + s.API_KEY) }}",
        text::ERROR_BYTES - 4
    );
    let (_, message) = error(&run(&source));
    assert!(
        !message.contains("sk-s"),
        "{}",
        &message[message.len() - 40..]
    );
    assert!(message.ends_with("x***"), "redacted whole, then it fits");
}
