//! Prometheus metrics owned by the actor side (the HTTP metrics live with the middleware).
//! Everything registers into one `Registry` created at start-up and exposed at `/metrics`.
//! Labels are bounded: actor names are a fixed set; no tenant data ever becomes a label.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone, Debug)]
pub struct ActorMetrics {
    /// `service_layer_actor_restarts_total{actor}`.
    pub restarts: IntCounterVec,
    /// `service_layer_actor_up{actor}`: 1 while the actor runs, 0 while it restarts.
    pub up: IntGaugeVec,
    /// `service_layer_actor_mailbox_depth{actor}`: messages sent through the actor's
    /// handle that wait in its mailbox (not yet taken by the actor).
    pub mailbox: IntGaugeVec,
}

impl ActorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "actor_restarts_total",
                "Times a supervised actor was restarted after it stopped or crashed",
            )
            .namespace("service_layer"),
            &["actor"],
        )?;
        let up = IntGaugeVec::new(
            Opts::new("actor_up", "1 while a supervised actor is running")
                .namespace("service_layer"),
            &["actor"],
        )?;
        let mailbox = IntGaugeVec::new(
            Opts::new(
                "actor_mailbox_depth",
                "Messages waiting in a supervised actor's mailbox",
            )
            .namespace("service_layer"),
            &["actor"],
        )?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(mailbox.clone()))?;
        Ok(Self {
            restarts,
            up,
            mailbox,
        })
    }
}
