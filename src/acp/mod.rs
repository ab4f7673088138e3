//! `deputy acp`: deputy as the agent of an editor, over the Agent Client Protocol (JSON-RPC on
//! stdio; Zed, JetBrains IDEs, Neovim and Emacs plug-ins speak it).
//!
//! An ACP session is a deputy session: journaled under the same id, so `session/load` (and
//! `deputy resume`) continue it. A prompt is one run of the session; its events become
//! `session/update`s as they happen ([`updates`]); an `ask` rule becomes
//! `session/request_permission` ([`approve`]); `session/cancel` cancels the run. The editor
//! chooses among the agents as modes.
//!
//! Written on JSON-RPC directly rather than with the `agent-client-protocol` crate: the crate
//! drives its handlers on a single-threaded `LocalSet` (`!Send` futures), while a deputy
//! session runs on the multi-threaded runtime like every other front-end; the protocol's
//! messages are few and plain JSON, and the tests drive this side with the official
//! TypeScript SDK, whose client checks every message against the protocol's schema.

mod approve;
mod files;
mod mcp;
pub mod rpc;
pub mod updates;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deputy_agent::AgentSpec;
use deputy_runtime::{Factory, RunSettings, Session, Status, TaskRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::cli::AcpArgs;
use crate::context::Context;
use crate::exit::{CliError, CliResult, Exit};
use crate::setup;
use rpc::{Incoming, Out, RpcError};

/// The ACP protocol version deputy speaks.
const PROTOCOL_VERSION: u64 = 1;

pub fn run(ctx: &Context, args: AcpArgs) -> CliResult {
    let rt = setup::runtime()?;
    let base = ctx.elsewhere(ctx.workspace.clone())?;
    rt.block_on(serve(base, args))
        .map_err(|e| CliError::failure(anyhow::anyhow!("{e}")))?;
    Ok(Exit::Ok)
}

/// One ACP session: its deputy session, and the token of the prompt running in it.
struct Acp {
    cwd: PathBuf,
    live: tokio::sync::Mutex<Live>,
    turn: Arc<Mutex<Option<CancellationToken>>>,
}

/// What a prompt needs, held while it runs.
struct Live {
    ctx: Context,
    factory: Factory,
    settings: RunSettings,
    runner: Arc<TaskRunner>,
    session: Session,
}

struct Server {
    out: Out,
    base: Context,
    args: AcpArgs,
    sessions: Mutex<HashMap<String, Arc<Acp>>>,
    /// The file methods the client offered at `initialize`.
    files: Mutex<files::Offered>,
}

async fn serve(base: Context, args: AcpArgs) -> std::io::Result<()> {
    let (out, mut rx) = Out::new();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = rx.recv().await {
            let mut line = msg.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let server = Arc::new(Server {
        out: out.clone(),
        base,
        args,
        sessions: Mutex::default(),
        files: Mutex::default(),
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        match rpc::parse(&line) {
            Incoming::Request { id, method, params } => {
                let server = server.clone();
                tokio::spawn(async move {
                    let result = server.request(&method, params).await;
                    server.out.respond(id, result);
                });
            }
            Incoming::Notification { method, params } => server.notification(&method, &params),
            Incoming::Response { id, outcome } => out.answered(&id, outcome),
            Incoming::Invalid { id, error } => out.respond(id, Err(error)),
        }
    }
    // The editor closed stdin: stop what runs, and let the last messages out.
    for s in lock(&server.sessions).values() {
        if let Some(t) = lock(&s.turn).as_ref() {
            t.cancel();
        }
    }
    drop(server);
    drop(out);
    let _ = writer.await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params(format!("`{key}` is required (a string)")))
}

impl Server {
    async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => {
                *lock(&self.files) = files::Offered::from_initialize(&params);
                Ok(initialize(&params))
            }
            "authenticate" => Ok(json!({})),
            "session/new" => self.new_session(&params).await,
            "session/load" => self.load_session(&params).await,
            "session/prompt" => self.prompt(&params).await,
            "session/set_mode" => self.set_mode(&params).await,
            other => Err(RpcError::new(
                rpc::METHOD_NOT_FOUND,
                format!("deputy does not implement `{other}`"),
            )),
        }
    }

    fn notification(&self, method: &str, params: &Value) {
        if method == "session/cancel" {
            let id = params
                .get("sessionId")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(s) = lock(&self.sessions).get(id)
                && let Some(t) = lock(&s.turn).as_ref()
            {
                t.cancel();
            }
        }
    }

    fn session(&self, params: &Value) -> Result<Arc<Acp>, RpcError> {
        let id = str_param(params, "sessionId")?;
        lock(&self.sessions).get(id).cloned().ok_or_else(|| {
            RpcError::new(
                rpc::RESOURCE_NOT_FOUND,
                format!(
                    "no session `{id}` on this connection (session/load opens a journaled one)"
                ),
            )
        })
    }

    /// The workspace a session works in: `cwd`, absolute and a directory.
    fn workspace(params: &Value) -> Result<PathBuf, RpcError> {
        let cwd = PathBuf::from(str_param(params, "cwd")?);
        if !cwd.is_absolute() {
            return Err(RpcError::params(format!(
                "`cwd` must be an absolute path, not `{}`",
                cwd.display()
            )));
        }
        if !cwd.is_dir() {
            return Err(RpcError::params(format!(
                "`cwd` {} is not a directory",
                cwd.display()
            )));
        }
        Ok(cwd)
    }

    /// A factory for `cwd` (its config, trust and agents), whose approvals go to the editor.
    fn setup(
        &self,
        params: &Value,
        cwd: &Path,
        turn: &Arc<Mutex<Option<CancellationToken>>>,
        acp_id: Arc<std::sync::OnceLock<String>>,
    ) -> Result<(Context, Factory, RunSettings, Arc<TaskRunner>), RpcError> {
        let fail = |e: CliError| RpcError::new(rpc::INTERNAL_ERROR, format!("{:#}", e.error));
        let servers = mcp::servers(params.get("mcpServers"))?;
        let ctx = self.base.elsewhere(cwd.to_path_buf()).map_err(fail)?;
        let (settings, _task, mut factory) =
            setup::front_end(&ctx, &self.args.session).map_err(fail)?;
        factory.client_mcp_servers = servers;
        let offered = *lock(&self.files);
        if offered.any() {
            factory.editor = Some(Arc::new(files::EditorFiles {
                out: self.out.clone(),
                acp_id: acp_id.clone(),
                offered,
                rt: tokio::runtime::Handle::current(),
            }));
        }
        if !self.args.session.auto_approve {
            factory.approver = Arc::new(approve::EditorApprover {
                out: self.out.clone(),
                acp_id,
                turn: turn.clone(),
            });
        }
        let runner = setup::task_runner(&ctx, &factory, &settings).map_err(fail)?;
        Ok((ctx, factory, settings, runner))
    }

    fn agent(&self, ctx: &Context, name: Option<&str>) -> Result<AgentSpec, RpcError> {
        setup::resolve_agent(ctx, name.or(self.args.agent.as_deref()))
            .map_err(|e| RpcError::params(format!("{:#}", e.error)))
    }

    async fn new_session(&self, params: &Value) -> Result<Value, RpcError> {
        let cwd = Self::workspace(params)?;
        let turn = Arc::new(Mutex::new(None));
        let acp_id = Arc::new(std::sync::OnceLock::new());
        let (ctx, factory, settings, runner) = self.setup(params, &cwd, &turn, acp_id.clone())?;
        let agent = self.agent(&ctx, None)?;
        let (session, warnings) =
            setup::open_session(&factory, agent, &settings, runner.clone(), setup::Open::New)
                .await
                .map_err(|e| RpcError::new(rpc::INTERNAL_ERROR, format!("{:#}", e.error)))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let id = session.id().to_string();
        let _ = acp_id.set(id.clone());
        let modes = modes(&ctx, session.agent());
        let commands = available_commands(&ctx);
        self.open(
            id.clone(),
            cwd,
            turn,
            ctx,
            factory,
            settings,
            runner,
            session,
        );
        self.out.notify(
            "session/update",
            json!({"sessionId": id, "update": {"sessionUpdate": "available_commands_update", "availableCommands": commands}}),
        );
        Ok(json!({"sessionId": id, "modes": modes}))
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        id: String,
        cwd: PathBuf,
        turn: Arc<Mutex<Option<CancellationToken>>>,
        ctx: Context,
        factory: Factory,
        settings: RunSettings,
        runner: Arc<TaskRunner>,
        mut session: Session,
    ) {
        let events = sink(self.out.clone(), id.clone(), cwd.clone(), &session);
        session.set_sink(events);
        let acp = Arc::new(Acp {
            cwd,
            live: tokio::sync::Mutex::new(Live {
                ctx,
                factory,
                settings,
                runner,
                session,
            }),
            turn,
        });
        lock(&self.sessions).insert(id, acp);
    }

    async fn load_session(&self, params: &Value) -> Result<Value, RpcError> {
        let cwd = Self::workspace(params)?;
        let wanted = str_param(params, "sessionId")?;
        if lock(&self.sessions).contains_key(wanted) {
            return Err(RpcError::params(format!(
                "session `{wanted}` is already open on this connection"
            )));
        }
        let turn = Arc::new(Mutex::new(None));
        let acp_id = Arc::new(std::sync::OnceLock::new());
        let (ctx, factory, settings, runner) = self.setup(params, &cwd, &turn, acp_id.clone())?;
        let found = setup::find_journaled(&ctx, wanted)
            .map_err(|e| RpcError::new(rpc::RESOURCE_NOT_FOUND, format!("{:#}", e.error)))?;
        // A session goes on where it ran: the editor opens it from that project.
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if canon(&found.ctx.workspace) != canon(&cwd) {
            return Err(RpcError::params(format!(
                "session {} ran in {}, not in {}; load it with that `cwd`",
                found.id,
                found.ctx.workspace.display(),
                cwd.display()
            )));
        }
        let id = found.id.clone();
        let _ = acp_id.set(id.clone());
        let path = deputy_runtime::journal::session_dir(&found.state, &id).join("events.jsonl");
        let (events, _) = deputy_runtime::journal::read_events(&path)
            .map_err(|e| RpcError::new(rpc::INTERNAL_ERROR, e.to_string()))?;
        let (session, warnings) = setup::open_session(
            &factory,
            found.agent,
            &settings,
            runner.clone(),
            setup::Open::Resume(&id),
        )
        .await
        .map_err(|e| RpcError::new(rpc::INTERNAL_ERROR, format!("{:#}", e.error)))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        // The whole conversation again, as it happened, before the answer.
        for e in events.iter().filter(|e| e.session_id == id) {
            for update in updates::of_event(e, &cwd, updates::Mode::Replay) {
                self.out
                    .notify("session/update", json!({"sessionId": id, "update": update}));
            }
        }
        let modes = modes(&ctx, session.agent());
        self.open(id, cwd, turn, ctx, factory, settings, runner, session);
        Ok(json!({"modes": modes}))
    }

    async fn prompt(&self, params: &Value) -> Result<Value, RpcError> {
        let acp = self.session(params)?;
        let text = prompt_text(params.get("prompt").unwrap_or(&Value::Null))?;
        let Ok(mut live) = acp.live.try_lock() else {
            return Err(RpcError::new(
                rpc::INVALID_REQUEST,
                "a prompt is already running in this session; cancel it or wait for its answer",
            ));
        };
        let token = CancellationToken::new();
        *lock(&acp.turn) = Some(token.clone());
        live.session.set_cancel_token(token);
        // `/NAME ARGS`: one of the project's custom commands, as in `deputy chat`.
        let text = match text
            .strip_prefix('/')
            .map(|t| t.split_once(' ').unwrap_or((t, "")))
        {
            Some((name, args)) => match setup::custom_commands(&live.ctx).get(name).cloned() {
                Some(c) => {
                    let (expanded, warnings) = live.session.expand_command(&c, args.trim()).await;
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    expanded
                }
                None => text,
            },
            None => text,
        };
        let outcome = live.session.run(Some(text)).await;
        *lock(&acp.turn) = None;
        let reason = match outcome.status {
            Status::Completed => "end_turn",
            Status::Cancelled => "cancelled",
            Status::MaxSteps | Status::Timeout => "max_turn_requests",
            Status::Budget => "max_tokens",
            Status::Denied => "refusal",
            Status::Error => {
                return Err(RpcError::new(rpc::INTERNAL_ERROR, outcome.result));
            }
        };
        Ok(json!({"stopReason": reason}))
    }

    /// Another agent: the next prompt starts a new deputy session with it (as `/agent` does
    /// in `deputy chat`), under the same ACP session id.
    async fn set_mode(&self, params: &Value) -> Result<Value, RpcError> {
        let acp = self.session(params)?;
        let mode = str_param(params, "modeId")?;
        let Ok(mut live) = acp.live.try_lock() else {
            return Err(RpcError::new(
                rpc::INVALID_REQUEST,
                "a prompt is running in this session; the mode changes between prompts",
            ));
        };
        let agent = self.agent(&live.ctx, Some(mode))?;
        let (mut session, warnings) = setup::open_session(
            &live.factory,
            agent,
            &live.settings,
            live.runner.clone(),
            setup::Open::New,
        )
        .await
        .map_err(|e| RpcError::new(rpc::INTERNAL_ERROR, format!("{:#}", e.error)))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let id = str_param(params, "sessionId")?.to_string();
        let events = sink(self.out.clone(), id.clone(), acp.cwd.clone(), &session);
        session.set_sink(events);
        live.session = session;
        self.out.notify(
            "session/update",
            json!({"sessionId": id, "update": {"sessionUpdate": "current_mode_update", "currentModeId": mode}}),
        );
        Ok(json!({}))
    }
}

/// The events of `session`, as updates to the editor under the ACP session's id. A
/// subagent's own events stay out (its `task` call and result are the parent's).
fn sink(out: Out, acp_id: String, cwd: PathBuf, session: &Session) -> deputy_runtime::EventSink {
    let own = session.id().to_string();
    Arc::new(move |e: &deputy_runtime::Event| {
        if e.session_id != own {
            return;
        }
        for update in updates::of_event(e, &cwd, updates::Mode::Live) {
            out.notify(
                "session/update",
                json!({"sessionId": acp_id, "update": update}),
            );
        }
    })
}

fn initialize(params: &Value) -> Value {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_u64)
        .unwrap_or(PROTOCOL_VERSION);
    json!({
        "protocolVersion": asked.min(PROTOCOL_VERSION),
        "agentCapabilities": {
            "loadSession": true,
            "promptCapabilities": {"image": false, "audio": false, "embeddedContext": true},
            "mcpCapabilities": {"http": false, "sse": false},
        },
        "agentInfo": {"name": "deputy", "title": "deputy", "version": env!("CARGO_PKG_VERSION")},
        "authMethods": [],
    })
}

/// The prompt's content as the user message: text as it is, a resource link as a Markdown
/// link, an embedded resource as a delimited block with its URI.
fn prompt_text(prompt: &Value) -> Result<String, RpcError> {
    let blocks = prompt
        .as_array()
        .ok_or_else(|| RpcError::params("`prompt` must be an array of content blocks"))?;
    let mut parts = Vec::new();
    for b in blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
        match s("type") {
            "text" => parts.push(s("text").to_string()),
            "resource_link" => parts.push(format!("[{}]({})", s("name"), s("uri"))),
            "resource" => {
                let r = b.get("resource").cloned().unwrap_or_default();
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                match r.get("text").and_then(Value::as_str) {
                    Some(t) => parts.push(format!("<context uri=\"{uri}\">\n{t}\n</context>")),
                    None => parts.push(format!("(binary resource {uri}, not included)")),
                }
            }
            other => {
                return Err(RpcError::params(format!(
                    "deputy takes text, resource links and embedded resources in a prompt, not `{other}`"
                )));
            }
        }
    }
    let text = parts.join("\n\n");
    if text.trim().is_empty() {
        return Err(RpcError::params("the prompt is empty"));
    }
    Ok(text)
}

/// The agents an editor may switch between, as ACP modes.
fn modes(ctx: &Context, current: &AgentSpec) -> Value {
    let available: Vec<Value> = ctx
        .catalog()
        .agents
        .iter()
        .filter(|a| !a.hidden && !a.disable && a.mode != deputy_agent::Mode::Subagent)
        .map(|a| json!({"id": a.name, "name": a.name, "description": a.description}))
        .collect();
    json!({"currentModeId": current.name, "availableModes": available})
}

/// The project's custom commands, for the editor's `/` menu.
fn available_commands(ctx: &Context) -> Vec<Value> {
    setup::custom_commands(ctx)
        .commands
        .iter()
        .map(|c| {
            let c = &c.command;
            let mut v =
                json!({"name": c.name, "description": c.description.clone().unwrap_or_default()});
            if let Some(h) = &c.argument_hint {
                v["input"] = json!({"hint": h});
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_blocks_become_one_message() {
        let t = prompt_text(&json!([
            {"type": "text", "text": "Fix this:"},
            {"type": "resource_link", "uri": "file:///w/a.rs", "name": "a.rs"},
            {"type": "resource", "resource": {"uri": "file:///w/b.rs", "text": "fn b() {}"}},
        ]))
        .unwrap();
        assert_eq!(
            t,
            "Fix this:\n\n[a.rs](file:///w/a.rs)\n\n<context uri=\"file:///w/b.rs\">\nfn b() {}\n</context>"
        );
        assert!(prompt_text(&json!([{"type": "image", "data": "x"}])).is_err());
        assert!(prompt_text(&json!([])).is_err());
        assert!(prompt_text(&json!("text")).is_err());
    }

    #[test]
    fn the_version_is_negotiated_down() {
        assert_eq!(
            initialize(&json!({"protocolVersion": 7}))["protocolVersion"],
            1
        );
        assert_eq!(
            initialize(&json!({"protocolVersion": 1}))["protocolVersion"],
            1
        );
    }
}
