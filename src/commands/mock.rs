//! `deputy mock-server`: deputy-mockllm, for offline demos and tests.

use deputy_mockllm::{Script, ServeOptions, serve_until_signal};

use crate::cli::MockServerArgs;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;

pub fn run(args: MockServerArgs) -> CliResult {
    let script = match &args.script {
        Some(p) => Script::load(p).map_err(CliError::usage)?,
        None => Script::text("ok"),
    };
    let opts = ServeOptions {
        port: args.port,
        host: Some(args.host),
        log_path: args.log,
        api_key: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve_until_signal(script, opts, |url| {
        outln(&format!("deputy-mockllm listening on {url}"))
    }))?;
    Ok(Exit::Ok)
}
