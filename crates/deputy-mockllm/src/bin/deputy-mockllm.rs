//! `deputy-mockllm --script FILE [--port N] [--log FILE]`: the mock server on its own (the same
//! as `deputy mock-server`).

use std::path::PathBuf;
use std::process::ExitCode;

use deputy_mockllm::{Script, ServeOptions, serve_until_signal};

const USAGE: &str = "usage: deputy-mockllm [--script FILE] [--host IP] [--port N] [--log FILE]\n\
  --script FILE  YAML or JSON script (default: answer every request with \"ok\")\n\
  --port N       port on 127.0.0.1 (default 0: a free port, printed on stdout)\n\
  --log FILE     append every request as a JSON line";

fn main() -> ExitCode {
    let mut script = None;
    let mut opts = ServeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed: Result<(), String> = match a.as_str() {
            "--script" => value("--script").and_then(|v| {
                Script::load(&PathBuf::from(v))
                    .map(|s| script = Some(s))
                    .map_err(|e| e.to_string())
            }),
            "--host" => value("--host").and_then(|v| {
                v.parse()
                    .map(|h| opts.host = Some(h))
                    .map_err(|_| format!("--host: `{v}` is not an IP address"))
            }),
            "--port" => value("--port").and_then(|v| {
                v.parse()
                    .map(|p| opts.port = p)
                    .map_err(|_| format!("--port: `{v}` is not a port number"))
            }),
            "--log" => value("--log").map(|v| opts.log_path = Some(PathBuf::from(v))),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument `{other}`")),
        };
        if let Err(e) = parsed {
            eprintln!("deputy-mockllm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let script = script.unwrap_or_else(|| Script::text("ok"));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deputy-mockllm: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = |url: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "deputy-mockllm listening on {url}")?;
        out.flush()
    };
    match rt.block_on(serve_until_signal(script, opts, ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deputy-mockllm: {e}");
            ExitCode::FAILURE
        }
    }
}
