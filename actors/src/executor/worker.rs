//! The worker side: `appserver --executor-worker <engine> <address-space bytes> <server
//! pid>`, started by the server (never by hand). It confines itself, says hello with how
//! well that went, then serves requests from stdin one at a time with one engine runtime,
//! replacing the runtime whenever a run says it must be disposed. It holds no key
//! material and no environment: each request carries only what one run needs.
//!
//! End of input (the server closed the pipe or died) ends the worker.

use super::engine::{Engine, EngineRuntime, ErrorCode, RunOutput};
use super::protocol::{self, FrameError, Reply, Request, MAX_REQUEST_BYTES};
use super::{sandbox, MockEngine, QuickJs};
use std::ffi::OsString;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};

/// The hidden command-line flag that selects worker mode.
pub const FLAG: &str = "--executor-worker";

/// Runs the worker; returns the process exit status.
pub fn main(args: &[OsString]) -> u8 {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let (engine, address_space, parent) = match args.as_slice() {
        [_, flag, engine, bytes, parent] if *flag == FLAG => {
            match (bytes.parse::<u64>(), parent.parse::<u32>()) {
                (Ok(bytes), Ok(parent)) => (*engine, bytes, parent),
                _ => return usage(),
            }
        }
        _ => return usage(),
    };
    let engine: Box<dyn Engine> = match engine {
        "quickjs" => Box::new(QuickJs),
        "mock" => Box::new(MockEngine),
        _ => return usage(),
    };
    // Unbuffered handles on the pipes, taken while `dup` is still allowed: a frame is
    // then written with one system call.
    let pipes = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|i| Ok((i, std::io::stdout().as_fd().try_clone_to_owned()?)));
    let Ok((input, output)) = pipes else {
        eprintln!("executor worker: cannot open its pipes");
        return 1;
    };
    let pipes = sandbox::Pipes {
        input: input.as_raw_fd(),
        output: output.as_raw_fd(),
    };
    let Ok(confinement) = sandbox::confine(address_space, parent, pipes) else {
        // The server is already gone: nobody is waiting for this worker.
        return 0;
    };
    let input = BufReader::with_capacity(64 << 10, std::fs::File::from(input));
    let output = std::fs::File::from(output);
    match serve(&*engine, confinement, input, output) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("executor worker: {e}");
            1
        }
    }
}

fn usage() -> u8 {
    eprintln!("{FLAG} is started by appserver itself, not by hand");
    2
}

/// Says hello, then answers requests until the input ends.
pub fn serve(
    engine: &dyn Engine,
    confinement: sandbox::Confinement,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<(), FrameError> {
    protocol::write_message(&mut output, &Reply::Hello(confinement))?;
    let mut runtime: Option<Box<dyn EngineRuntime>> = engine.new_runtime().ok();
    if let Some(rt) = runtime.as_mut() {
        rt.prepare();
    }
    let mut dispose = false;
    loop {
        let frame = match protocol::read_frame(&mut input, MAX_REQUEST_BYTES) {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = match serde_json::from_slice::<Request>(&frame)? {
            Request::Run(request) => {
                let output = match runtime.as_mut() {
                    Some(rt) => rt.run(&request),
                    None => RunOutput::failed(
                        ErrorCode::Internal,
                        "no JavaScript runtime available in the worker",
                    ),
                };
                dispose = output.disposed.is_some();
                Reply::Done(output)
            }
            Request::Probe => Reply::Probe(sandbox::probe()),
        };
        protocol::write_message(&mut output, &reply)?;
        // Freeing a large heap takes time: only once the server has its answer.
        if std::mem::take(&mut dispose) {
            runtime = None;
        }
        // Between runs, while the server reads the reply: a replaced runtime, and the next
        // run's context, are ready before the next request arrives.
        if runtime.is_none() {
            runtime = engine.new_runtime().ok();
        }
        if let Some(rt) = runtime.as_mut() {
            rt.prepare();
        }
    }
}
