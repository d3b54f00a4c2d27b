//! Credentials in the settings: held by `secrecy`, so `Debug` output (and therefore logs)
//! never shows them and their memory is zeroed when they are dropped. Read one with
//! [`ExposeSecret::expose_secret`] at the point of use.

pub use secrecy::{ExposeSecret, SecretSlice, SecretString};
