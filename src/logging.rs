//! Logs: `tracing` to stderr, never stdout. Filter from `--log-level` / `DEPUTY_LOG`
//! (env-filter syntax), default `warn`; text or JSON.

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

pub fn init(global: &GlobalArgs) {
    let filter = match global.log_level.as_deref() {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("warning: ignoring log filter `{f}` (--log-level / DEPUTY_LOG): {e}");
            EnvFilter::new("warn")
        }),
        None => EnvFilter::new("warn"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match global.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests embedding the CLI) is harmless.
    let _ = result;
}
