//! `appserver`: load settings, start telemetry, run. Everything else is in `startup.rs`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Worker mode: a confined JavaScript worker started by the server itself. Decided
    // before anything else runs (no settings, no telemetry, no threads).
    let args: Vec<_> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == actors::executor::worker::FLAG)
    {
        return ExitCode::from(actors::executor::worker::main(&args));
    }
    let invocation = match service_layer::settings::load(args, &|name| std::env::var(name).ok()) {
        Ok(invocation) => invocation,
        Err(e @ service_layer::settings::SettingsError::Info(_)) => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("appserver: {}", e.to_string().trim_end());
            return ExitCode::from(2);
        }
    };
    service_layer::telemetry::init(&invocation.settings.log);
    let code = actix_rt::System::new().block_on(service_layer::startup::run(invocation));
    ExitCode::from(code)
}
