//! Confinement of an executor worker process, applied by the worker to itself before it
//! reads any input: death with the server, no core dumps (a worker's memory holds the
//! run's secrets), an address-space limit, no new privileges, and a seccomp filter that
//! allows only what the JavaScript runtime and the pipe protocol need.
//!
//! The filter is an allow-list: every other system call fails with `EPERM`, so the worker
//! cannot open files, create sockets, start processes or threads, trace or signal other
//! processes, or map executable memory. QuickJS interprets; it never needs `PROT_EXEC`.
//!
//! Nothing here needs `unsafe`: `rustix` wraps the prctl and rlimit calls, `seccompiler`
//! builds and installs the BPF program.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the worker achieved; the server reports `"sandbox": "degraded"` unless every step
/// succeeded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Confinement {
    /// One entry per step that failed, with the reason.
    pub problems: Vec<String>,
}

impl Confinement {
    pub fn confined(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The parent died before the worker could tie its life to it.
#[derive(Debug)]
pub struct ParentGone;

/// The only descriptors the worker reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct Pipes {
    pub input: i32,
    pub output: i32,
}

/// Confines the calling process. `parent` is the server's pid: if the worker has already
/// been reparented, the server is gone and the worker must exit.
pub fn confine(address_space: u64, parent: u32, pipes: Pipes) -> Result<Confinement, ParentGone> {
    use rustix::process::{self, Resource, Rlimit, Signal};
    let mut problems = Vec::new();
    let mut step = |name: &str, result: Result<(), String>| {
        if let Err(e) = result {
            problems.push(format!("{name}: {e}"));
        }
    };
    step(
        "parent-death signal",
        process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(|e| e.to_string()),
    );
    // Checked after the signal is armed: if the server died in between, we are already
    // someone else's child and would never be told.
    let parent_pid = process::getppid().map(|p| p.as_raw_pid() as u32);
    if parent_pid != Some(parent) {
        return Err(ParentGone);
    }
    let limit = |n| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    step(
        "core dumps",
        process::setrlimit(Resource::Core, limit(0)).map_err(|e| e.to_string()),
    );
    step(
        "address-space limit",
        process::setrlimit(Resource::As, limit(address_space)).map_err(|e| e.to_string()),
    );
    step(
        "no new privileges",
        rustix::thread::set_no_new_privs(true).map_err(|e| e.to_string()),
    );
    let pid = process::getpid().as_raw_pid();
    step("seccomp filter", install_filter(pipes, pid));
    Ok(Confinement { problems })
}

fn install_filter(pipes: Pipes, pid: i32) -> Result<(), String> {
    let program = filter(pipes, pid)?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

/// The allow-list. Memory is managed with `brk`/`mmap` (never executable), the two pipes
/// are read and written (no other descriptor, inherited or not: not even stdout, so
/// nothing printed by mistake can corrupt the protocol), time is read (the interrupt
/// handler, `Date`), and the process may exit, or signal itself (`abort`). `getrandom`
/// seeds hash tables; `futex` and `sched_yield` serve the allocator's locks in a single
/// thread.
pub fn filter(pipes: Pipes, pid: i32) -> Result<seccompiler::BpfProgram, String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let plain = [
        libc::SYS_close,
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        plain.into_iter().map(|n| (n, Vec::new())).collect();
    // mmap and mprotect only without PROT_EXEC (argument 2).
    let not_executable = || {
        SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| e.to_string())
    };
    rules.insert(libc::SYS_mmap, vec![not_executable()?]);
    rules.insert(libc::SYS_mprotect, vec![not_executable()?]);
    let first_argument_is = |value: i32| {
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value as u64)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| e.to_string())
    };
    for call in [libc::SYS_read, libc::SYS_readv] {
        rules.insert(call, vec![first_argument_is(pipes.input)?]);
    }
    for call in [libc::SYS_write, libc::SYS_writev] {
        rules.insert(call, vec![first_argument_is(pipes.output)?]);
    }
    // `abort` signals its own process; nothing else may be signalled.
    rules.insert(libc::SYS_tgkill, vec![first_argument_is(pid)?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| e.to_string())?;
    seccompiler::BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// Tries what the filter must refuse and says what happened to each, for the server's
/// start-up check and the tests: `refused: <error>` or `allowed`.
pub fn probe() -> BTreeMap<String, String> {
    fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
        match result {
            Ok(_) => "allowed".to_owned(),
            Err(e) => format!("refused: {e}"),
        }
    }
    BTreeMap::from([
        (
            "open".to_owned(),
            outcome(std::fs::File::open("/proc/self/status")),
        ),
        (
            "socket".to_owned(),
            outcome(std::net::UdpSocket::bind("127.0.0.1:0")),
        ),
        (
            "spawn".to_owned(),
            outcome(
                std::process::Command::new("/bin/true")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_machine() {
        let pipes = super::Pipes {
            input: 3,
            output: 4,
        };
        let program = super::filter(pipes, 42).unwrap();
        assert!(program.len() > 20, "{} instructions", program.len());
    }

    #[test]
    fn the_probe_sees_what_an_unconfined_process_may_do() {
        // This test process is not confined: the probe must say so, or its "refused"
        // in a worker would prove nothing.
        let report = super::probe();
        assert_eq!(report["open"], "allowed");
        assert_eq!(report["socket"], "allowed");
    }
}
