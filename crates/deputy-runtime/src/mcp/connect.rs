//! Starting one MCP server: a child process over stdio, or a streamable HTTP endpoint.
//!
//! A stdio server gets only what its declaration passes, plus `PATH` and `HOME`: never
//! deputy's API keys. It runs in its own process group, killed with the connection. Its stderr
//! is kept (the last lines) so a server that dies can say why.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_agent::McpTransport;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;

/// The client side of one connection (the tool list's staleness is marked as the server's
/// notification is read: see `watch`).
#[derive(Clone)]
pub(crate) struct Notify;

impl ClientHandler for Notify {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.client_info.name = "deputy".into();
        info.client_info.version = env!("CARGO_PKG_VERSION").into();
        info
    }
}

/// A live connection and what keeps its server alive.
pub(crate) struct Connection {
    pub service: RunningService<RoleClient, Notify>,
    pub process: Option<ServerProcess>,
}

impl Connection {
    /// Why the connection is gone, if it is: the process's exit and its last words.
    pub fn gone(&mut self) -> Option<String> {
        if !self.service.is_transport_closed() && !self.service.is_closed() {
            return None;
        }
        Some(match &mut self.process {
            Some(p) => p.exit_report(),
            None => "the connection closed".to_string(),
        })
    }
}

/// A stdio server's process: its group is killed when this is dropped.
pub(crate) struct ServerProcess {
    child: tokio::process::Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The task keeping the last lines of stderr (done at the server's end of stderr).
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl ServerProcess {
    /// "exited with status 1: <last stderr lines>".
    pub fn exit_report(&mut self) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("the server exited ({s})"),
            _ => "the server stopped answering".to_string(),
        };
        let tail: Vec<String> = self
            .stderr
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        if tail.is_empty() {
            status
        } else {
            format!("{status}; its stderr ended with: {}", tail.join(" | "))
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: killpg on the group the child leads (spawned with process_group(0));
            // at worst the group is gone and this returns ESRCH.
            unsafe {
                libc::killpg(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Lines of a server's stderr kept for error messages.
const STDERR_LINES: usize = 8;

/// Expand `${VAR}`, `${VAR:-default}` and opencode's `{env:VAR}` from deputy's environment.
pub(crate) fn expand(text: &str, what: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let dollar = rest.find("${");
        let brace = rest.find("{env:");
        let (start, open_len) = match (dollar, brace) {
            (Some(d), Some(b)) if b < d => (b, 5),
            (Some(d), _) => (d, 2),
            (None, Some(b)) => (b, 5),
            (None, None) => {
                out.push_str(rest);
                return Ok(out);
            }
        };
        out.push_str(&rest[..start]);
        let after = &rest[start + open_len..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) if open_len == 2 => (n, Some(d)),
            _ => (inner, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => {
                return Err(format!(
                    "{what} uses the environment variable {name}, which is not set"
                ));
            }
        }
        rest = &after[end + 1..];
    }
}

/// Connect to a server, within `limit` for start-up and the MCP handshake.
pub(crate) async fn connect(
    name: &str,
    transport: &McpTransport,
    workspace: &Path,
    dirty: Arc<AtomicBool>,
    limit: Duration,
) -> Result<Connection, String> {
    let notify = Notify;
    match transport {
        McpTransport::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args)
                .current_dir(workspace)
                .env_clear()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            for key in ["PATH", "HOME"] {
                if let Some(v) = std::env::var_os(key) {
                    cmd.env(key, v);
                }
            }
            for (k, v) in env {
                cmd.env(k, expand(v, &format!("server `{name}`: env.{k}"))?);
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start `{command}`: {e}"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(format!("cannot talk to `{command}`: no stdio pipes"));
            };
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let mut reader = None;
            if let Some(stderr) = child.stderr.take() {
                let tail = tail.clone();
                let server = name.to_string();
                reader = Some(tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(server = %server, "mcp server stderr: {line}");
                        if let Ok(mut t) = tail.lock() {
                            if t.len() == STDERR_LINES {
                                t.pop_front();
                            }
                            t.push_back(line.chars().take(300).collect());
                        }
                    }
                }));
            }
            let mut process = ServerProcess {
                child,
                stderr: tail,
                reader,
            };
            let transport = super::watch::Watched::new(
                rmcp::transport::async_rw::AsyncRwTransport::new_client(stdout, stdin),
                dirty,
            );
            match tokio::time::timeout(limit, notify.serve(transport)).await {
                Ok(Ok(service)) => Ok(Connection {
                    service,
                    process: Some(process),
                }),
                Ok(Err(e)) => {
                    // Give a dying server a moment, so the report has its status and the last
                    // of its stderr.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), process.child.wait()).await;
                    if let Some(r) = process.reader.take() {
                        let _ = tokio::time::timeout(Duration::from_millis(500), r).await;
                    }
                    Err(format!("failed to start: {} ({e})", process.exit_report()))
                }
                Err(_) => Err(format!(
                    "did not complete the MCP handshake within {} s (raise `timeout` in its declaration if it is only slow)",
                    limit.as_secs_f64()
                )),
            }
        }
        McpTransport::Http {
            url,
            headers,
            headers_env,
            bearer_token_env,
        } => {
            let url = expand(url, &format!("server `{name}`: url"))?;
            let mut custom = HashMap::new();
            let mut add = |k: &str, v: String| -> Result<(), String> {
                let k2 = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("server `{name}`: `{k}` is not a valid header name"))?;
                let v2 = reqwest::header::HeaderValue::from_str(&v).map_err(|_| {
                    format!("server `{name}`: the value of header `{k}` is not valid")
                })?;
                custom.insert(k2, v2);
                Ok(())
            };
            for (k, v) in headers {
                add(k, expand(v, &format!("server `{name}`: headers.{k}"))?)?;
            }
            for (k, var) in headers_env {
                let v = std::env::var(var).map_err(|_| {
                    format!("server `{name}`: headers_env.{k} names {var}, which is not set")
                })?;
                add(k, v)?;
            }
            let mut config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.clone(),
                )
                .custom_headers(custom);
            if let Some(var) = bearer_token_env {
                let token = std::env::var(var).map_err(|_| {
                    format!("server `{name}`: bearer_token_env names {var}, which is not set")
                })?;
                config = config.auth_header(token);
            }
            deputy_llm::install_crypto_provider();
            let mut b = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("deputy/", env!("CARGO_PKG_VERSION")));
            if !url.starts_with("https://") {
                b = b.tls_certs_only(Vec::new());
            }
            let http = b
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
            let transport = super::watch::Watched::new(
                rmcp::transport::StreamableHttpClientTransport::with_client(http, config),
                dirty,
            );
            match tokio::time::timeout(limit, notify.serve(transport)).await {
                Ok(Ok(service)) => Ok(Connection {
                    service,
                    process: None,
                }),
                Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
                Err(_) => Err(format!(
                    "{url} did not complete the MCP handshake within {} s",
                    limit.as_secs_f64()
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_forms() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("DEPUTY_TEST_MCP_X", "v") };
        assert_eq!(expand("a${DEPUTY_TEST_MCP_X}b", "t").unwrap(), "avb");
        assert_eq!(expand("{env:DEPUTY_TEST_MCP_X}", "t").unwrap(), "v");
        assert_eq!(expand("${DEPUTY_TEST_MCP_NONE:-d}", "t").unwrap(), "d");
        assert_eq!(expand("plain $HOME {x}", "t").unwrap(), "plain $HOME {x}");
        let e = expand("${DEPUTY_TEST_MCP_NONE}", "server `s`: env.A").unwrap_err();
        assert!(
            e.contains("env.A") && e.contains("DEPUTY_TEST_MCP_NONE"),
            "{e}"
        );
    }
}
