//! Embedding deputy in a Rust program: build a session, watch its events as a stream, get the
//! outcome. Runs offline: it starts deputy-mockllm in-process as the model.
//!
//!     cargo run --example embed
//!
//! To use a real model, replace the mock's URL and model with your provider's (see
//! `deputy_llm::LlmConfig` for resolving them from config and environment).

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use deputy_agent::AgentSpec;
use deputy_llm::{OpenAiClient, ProviderSettings, Target};
use deputy_mockllm::{MockServer, Script, ServeOptions};
use deputy_runtime::{EventKind, Session};
use deputy_tools::{SandboxMode, SandboxPolicy};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A scripted model: list the workspace, then answer.
    let script = Script::parse(
        "steps:\n  - tool_calls: [{name: list, arguments: {}}]\n  - text: \"The workspace holds one file, notes.txt.\"\n",
        false,
    )?;
    let mock = MockServer::start(script, ServeOptions::default()).await?;
    let client = OpenAiClient::single(Target {
        provider: ProviderSettings::new("mock", mock.url()),
        model: "mock".into(),
    })?;

    // A workspace of its own.
    let dir = std::env::temp_dir().join(format!("deputy-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("notes.txt"), "hello\n")?;

    // An agent defined in code (or load one: deputy_agent::load_file).
    let agent = AgentSpec::new("surveyor", "You describe workspaces briefly.");

    let session = Session::builder(agent, Arc::new(client), &dir)
        .max_steps(10)
        // This example only lists files; a real agent keeps the default sandbox.
        .sandbox(SandboxPolicy {
            mode: SandboxMode::Off,
            ..SandboxPolicy::default()
        })
        .build()?;
    let mut running = session.start("What is in this workspace?");
    while let Some(event) = running.events.next().await {
        match &event.kind {
            EventKind::ToolCompleted { tool, output, .. } => {
                println!("[{tool}] {}", output.lines().next().unwrap_or(""))
            }
            EventKind::SessionFinished { status, .. } => {
                println!("[finished: {}]", status.as_str())
            }
            other => println!("[{}]", other.type_name()),
        }
    }
    let (outcome, _session) = running.finish().await?;
    println!("answer: {}", outcome.result);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
