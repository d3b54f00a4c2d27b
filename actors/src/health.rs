//! What `/readyz` reports: the process phase and each supervised actor's status. Shared
//! (`Arc<Health>`) between the supervisor, which writes actor statuses, the start-up and
//! shutdown code, which move the phase, and the HTTP layer, which reads both.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;

/// Lifecycle of the process as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    ShuttingDown = 2,
}

/// A supervised actor's state, named as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorStatus {
    Running,
    /// Crashed or stopped; waiting for its back-off before the next start.
    Restarting,
    /// Restarted more than the policy allows within the window; see the supervisor.
    Failed,
    /// Not started on purpose (for example a dispatcher without its resolver URL).
    Disabled,
}

impl ActorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
}

/// How JavaScript is confined, as `/readyz` shows it (`checks.sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Worker processes run under seccomp, no new privileges and an address-space limit.
    Confined = 0,
    /// Some confinement step is unavailable on this host (start-up logged which).
    Degraded = 1,
    /// `TEE_MODE=mock`: no JavaScript runs at all.
    Mock = 2,
}

impl Sandbox {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confined => "confined",
            Self::Degraded => "degraded",
            Self::Mock => "mock",
        }
    }
}

#[derive(Debug)]
pub struct Health {
    phase: AtomicU8,
    actors: RwLock<BTreeMap<&'static str, ActorStatus>>,
    sandbox: AtomicU8,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            actors: RwLock::default(),
            // Until start-up has checked a worker, claim nothing.
            sandbox: AtomicU8::new(Sandbox::Degraded as u8),
        }
    }
}

impl Health {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::ShuttingDown,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub fn sandbox(&self) -> Sandbox {
        match self.sandbox.load(Ordering::Acquire) {
            0 => Sandbox::Confined,
            2 => Sandbox::Mock,
            _ => Sandbox::Degraded,
        }
    }

    pub fn set_sandbox(&self, sandbox: Sandbox) {
        self.sandbox.store(sandbox as u8, Ordering::Release);
    }

    pub fn set_actor(&self, name: &'static str, status: ActorStatus) {
        let mut actors = self.actors.write().unwrap_or_else(|p| p.into_inner());
        actors.insert(name, status);
    }

    pub fn actor(&self, name: &str) -> Option<ActorStatus> {
        let actors = self.actors.read().unwrap_or_else(|p| p.into_inner());
        actors.get(name).copied()
    }

    /// Every actor's status, by name.
    pub fn actors(&self) -> BTreeMap<&'static str, ActorStatus> {
        self.actors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
