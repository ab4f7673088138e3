//! A scripted OpenAI-compatible HTTP server for tests, demos and benchmarks.
//!
//! It serves `POST /v1/chat/completions`, Anthropic's `POST /v1/messages` (and
//! `/v1/messages/count_tokens`) and OpenAI's `POST /v1/responses` (streaming and not), and
//! `GET /v1/models`, on 127.0.0.1, and plays a [`Script`]: tool calls, text answers, reasoning, and faults (an HTTP status with
//! body and headers such as `Retry-After`, a delay, a stall or a dropped connection in the middle
//! of a stream, a malformed chunk, or a recorded body replayed byte for byte). Which step to play
//! is worked out from the conversation it receives (the number of assistant turns so far), so
//! concurrent sessions each follow the script. Every request is logged so tests can assert what
//! the client sent. Nothing sleeps unless the script asks.
//!
//! Strict by default: a request that breaks the tool-call rule (a call without its result, a
//! result for an unknown or answered call, a message between a call and its result) gets the
//! 400 body OpenAI returns for it ([`strict`]). Anthropic and Responses requests are held to
//! their own rules too ([`wire`]): Anthropic's block ordering (each `tool_use` answered in the
//! next message, results first), thinking signatures, and thinking or reasoning items sent
//! back unchanged; `function_call_output`s naming a pending call. `lenient: true` in the
//! script turns all of that off.
//!
//! It is not a model: it never looks at what the messages say, beyond route matching.

mod answer;
mod respond;
mod script;
mod server;
pub mod strict;
pub mod tokens;
pub mod wire;

pub use script::{Fault, Match, Replay, Route, Script, ScriptError, Step, ToolCallStep, UsageStep};
pub use server::{LoggedRequest, MockServer, ServeOptions};

/// Run a mock server until Ctrl-C / SIGTERM. `on_ready` gets the base URL once it listens
/// (the binaries print it as their first line so scripts can read the port).
pub async fn serve_until_signal(
    script: Script,
    opts: ServeOptions,
    on_ready: impl FnOnce(&str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let server = MockServer::start(script, opts).await?;
    on_ready(&server.url())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(server);
    Ok(())
}
