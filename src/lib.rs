//! service-layer: the HTTP edge of the `appserver` binary. Settings, telemetry, wiring and
//! the routes live here; domain logic, actors and stores live in the `actors` crate.

pub mod error;
pub mod http;
pub mod settings;
pub mod startup;
pub mod subsystems;
pub mod telemetry;
pub mod tls;
