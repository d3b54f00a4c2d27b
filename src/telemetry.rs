//! Logging: `tracing` to stdout, as text or JSON lines, filtered by `LOG_LEVEL` (a level
//! or a directive list such as `info,actors=debug`). `log` records from dependencies
//! (refinery, deadpool) are bridged in.

use crate::settings::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests) keeps the first one.
pub fn init(settings: &LogSettings) {
    // The level was validated when the settings were loaded.
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
