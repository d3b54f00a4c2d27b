//! One worker process as the server sees it: spawned from the server's own binary in
//! worker mode, spoken to over its stdin/stdout pipes, killed when it overstays.
//!
//! Lifecycle: [`Worker::spawn`] starts the process and reads its hello; each
//! [`Worker::call`] writes one request and reads one reply before a deadline. A worker
//! that misses the deadline or breaks the protocol is killed (SIGKILL) on the spot; one
//! that died is reaped so its signal can be reported. The child is also killed when its
//! `Worker` is dropped (`kill_on_drop`), and dies with the server (the parent-death
//! signal it sets on itself).

use super::protocol::{self, FrameError, Reply, Request, MAX_CONTROL_BYTES};
use super::sandbox::Confinement;
use super::worker::FLAG;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

/// How long a new worker may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker whose pipe closed may take to be reaped before it is killed.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The server's own binary (`/proc/self/exe` unless a test says otherwise).
    pub program: PathBuf,
    /// Engine name the worker runs (`quickjs`).
    pub engine: &'static str,
    /// `RLIMIT_AS` of the worker, bytes.
    pub address_space: u64,
}

/// Why a call got no reply.
#[derive(Debug)]
pub enum Failure {
    /// No reply by the deadline: the worker was killed.
    Deadline,
    /// The worker died on its own (crash, address-space limit); how it ended.
    Died(String),
    /// The worker sent something that is not a reply to the request: it was killed.
    Protocol(String),
}

pub struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    pid: u32,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts a worker and waits for its hello.
    pub async fn spawn(spec: &WorkerSpec) -> Result<(Self, Confinement), String> {
        let mut child = Command::new(&spec.program)
            .arg(FLAG)
            .arg(spec.engine)
            .arg(spec.address_space.to_string())
            .arg(std::process::id().to_string())
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Nothing a worker prints may reach the server's log, where a compromised
            // worker could forge lines; it reports through the protocol and its exit.
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for the server does not kill workers
            // mid-run; the server's shutdown and its death still do.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        let (Some(input), Some(output), Some(pid)) =
            (child.stdin.take(), child.stdout.take(), child.id())
        else {
            return Err("worker started without its pipes".to_owned());
        };
        let mut worker = Self {
            child,
            input,
            output: BufReader::with_capacity(64 << 10, output),
            pid,
        };
        let hello = tokio::time::timeout(
            HELLO_TIMEOUT,
            protocol::read_frame_async(&mut worker.output, MAX_CONTROL_BYTES),
        )
        .await;
        let frame = match hello {
            Ok(Ok(frame)) => frame,
            Ok(Err(FrameError::Closed)) => {
                return Err(format!("worker exited at start: {}", worker.reap().await))
            }
            Ok(Err(e)) => {
                worker.kill().await;
                return Err(format!("worker hello: {e}"));
            }
            Err(_) => {
                worker.kill().await;
                return Err("worker did not say hello in time".to_owned());
            }
        };
        match serde_json::from_slice(&frame) {
            Ok(Reply::Hello(confinement)) => Ok((worker, confinement)),
            _ => {
                worker.kill().await;
                Err("worker sent something other than hello".to_owned())
            }
        }
    }

    /// Sends one encoded request and reads its reply, both before `deadline`.
    pub async fn call(
        &mut self,
        frame: &[u8],
        reply_max: usize,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        let exchange = async {
            protocol::write_frame_async(&mut self.input, frame).await?;
            protocol::read_frame_async(&mut self.output, reply_max).await
        };
        let body = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(body)) => body,
            Ok(Err(FrameError::Closed | FrameError::Io(_))) => {
                return Err(Failure::Died(self.reap().await))
            }
            Ok(Err(e)) => {
                self.kill().await;
                return Err(Failure::Protocol(e.to_string()));
            }
            Err(_) => {
                self.kill().await;
                return Err(Failure::Deadline);
            }
        };
        match serde_json::from_slice(&body) {
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.kill().await;
                Err(Failure::Protocol(format!("undecodable reply: {e}")))
            }
        }
    }

    /// Asks the worker to try what its confinement must refuse.
    pub async fn probe(&mut self) -> Result<BTreeMap<String, String>, String> {
        let frame = protocol::encode(&Request::<&()>::Probe).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + HELLO_TIMEOUT;
        match self.call(&frame, MAX_CONTROL_BYTES, deadline).await {
            Ok(Reply::Probe(report)) => Ok(report),
            Ok(_) => Err("unexpected reply to a probe".to_owned()),
            Err(e) => Err(format!("probe failed: {e:?}")),
        }
    }

    pub async fn kill(&mut self) {
        // Already gone is fine: the point is that it no longer runs.
        let _ = self.child.kill().await;
    }

    /// How the worker ended ("SIGKILL", "exit status 3"), killing it if it lingers.
    async fn reap(&mut self) -> String {
        match tokio::time::timeout(REAP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("unknown ({e})"),
            Err(_) => {
                self.kill().await;
                "closed its pipe and was killed".to_owned()
            }
        }
    }
}

/// `SIGSEGV`, `exit status 3`, …
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return signal_name(signal);
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }
}

/// Names of the signals a worker can die of. Written out because the crates that know
/// them all (`nix`) would be a dependency for one lookup.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}
