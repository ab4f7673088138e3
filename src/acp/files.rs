//! The editor's files: when the client offers `fs/read_text_file` and `fs/write_text_file`,
//! the file tools read what its buffers hold (unsaved changes included) and write through it.
//! Which files go to it, and when, is decided in deputy-tools (`deputy_tools::Editor`): only
//! after the usual checks, while no sandboxed command can change them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deputy_tools::sandbox::quiet::Hold;
use serde_json::{Value, json};

use super::rpc::Out;

/// How long a tool waits for the editor's answer before using the disk instead.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What the client said it offers (`clientCapabilities.fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered {
    pub read: bool,
    pub write: bool,
}

impl Offered {
    pub fn from_initialize(params: &Value) -> Offered {
        let fs = params.pointer("/clientCapabilities/fs");
        let flag = |k: &str| {
            fs.and_then(|f| f.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Offered {
            read: flag("readTextFile"),
            write: flag("writeTextFile"),
        }
    }

    pub fn any(self) -> bool {
        self.read || self.write
    }
}

/// One session's way to the editor's files.
pub struct EditorFiles {
    pub out: Out,
    /// The ACP session's id (known once its deputy session is open).
    pub acp_id: Arc<OnceLock<String>>,
    pub offered: Offered,
    pub rt: tokio::runtime::Handle,
}

impl EditorFiles {
    /// Ask the editor; `hold` is released only when it has answered (or the connection ended),
    /// even when the tool stops waiting first.
    fn ask(&self, method: &'static str, mut params: Value, hold: Hold) -> Result<Value, String> {
        params["sessionId"] = json!(self.acp_id.get().cloned().unwrap_or_default());
        let (tx, rx) = std::sync::mpsc::channel();
        let out = self.out.clone();
        self.rt.spawn(async move {
            let answer = out.request(method, params).await;
            drop(hold);
            let _ = tx.send(answer);
        });
        match rx.recv_timeout(ANSWER_WAIT) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Value::Null)) => Err("the editor went away".into()),
            Ok(Err(e)) => Err(format!(
                "the editor answered {method} with an error: {}",
                e.get("message").and_then(Value::as_str).unwrap_or("?")
            )),
            Err(_) => Err(format!(
                "the editor did not answer {method} within {} s",
                ANSWER_WAIT.as_secs()
            )),
        }
    }
}

impl deputy_tools::Editor for EditorFiles {
    fn read(&self, path: &str, hold: Hold) -> Result<String, String> {
        if !self.offered.read {
            return Err("the editor does not offer fs/read_text_file".into());
        }
        let v = self.ask("fs/read_text_file", json!({"path": path}), hold)?;
        v.get("content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| "the editor's answer has no `content`".into())
    }

    fn write(&self, path: &str, text: &str, hold: Hold) -> Result<(), String> {
        if !self.offered.write {
            return Err("the editor does not offer fs/write_text_file".into());
        }
        self.ask(
            "fs/write_text_file",
            json!({"path": path, "content": text}),
            hold,
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_offers_is_read_from_initialize() {
        let o = Offered::from_initialize(
            &json!({"clientCapabilities": {"fs": {"readTextFile": true, "writeTextFile": false}}}),
        );
        assert!(o.read && !o.write && o.any());
        assert!(!Offered::from_initialize(&json!({})).any());
    }
}
