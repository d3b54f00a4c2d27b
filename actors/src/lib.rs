//! Domain core of service-layer: domain types, actor messages, actors, and the store traits
//! with their memory and PostgreSQL implementations.
//!
//! Architecture invariant: this crate never depends on actix-web. The HTTP edge (the root
//! `service-layer` package) converts requests into the domain types defined here and sends
//! messages to the actors; nothing in here knows about status codes or JSON DTOs.

pub mod accounts;
pub mod clock;
pub mod duration;
pub mod error;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod page;
pub mod patch;
pub mod store;
pub mod supervisor;
pub mod validate;

pub use clock::{Clock, SystemClock};
pub use error::{StoreError, ValidationError};
pub use ids::AccountId;
