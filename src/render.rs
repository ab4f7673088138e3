//! Rendering events for people: compact progress lines (tools, warnings, subagents, the end),
//! and the model's text as it streams when asked. No colour when the output is not a terminal
//! or NO_COLOR is set.

use std::collections::HashMap;
use std::io::Write;

use deputy_runtime::{Event, EventKind, Status};
use serde_json::Value;

/// Text from the model, a tool or the workspace, made safe to print to a terminal: control
/// characters other than newline and tab (ESC above all: colours, titles, OSC 52 clipboard
/// writes, cursor moves, a `\r` that overwrites what was shown) become their visible control
/// pictures (`␛`), C1 controls and bidirectional overrides (which reorder what is read) become
/// `�`. What deputy itself styles is added after this.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| match c {
            '\u{0}'..='\u{1f}' if unsafe_char(c) => {
                char::from_u32(0x2400 + c as u32).unwrap_or('�')
            }
            '\u{7f}' => '␡',
            c if unsafe_char(c) => '�',
            c => c,
        })
        .collect::<String>()
        .into()
}

/// `e` with every string in it [`clean`]ed: the one way events reach a person (progress lines,
/// chat, `sessions show`); JSON outputs carry events unchanged.
pub fn for_terminal(e: &Event) -> std::borrow::Cow<'_, Event> {
    fn walk(v: &mut Value, changed: &mut bool) {
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(c) = clean(s) {
                    *s = c;
                    *changed = true;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, changed)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, changed)),
            _ => {}
        }
    }
    let Ok(mut v) = serde_json::to_value(e) else {
        return std::borrow::Cow::Borrowed(e);
    };
    let mut changed = false;
    walk(&mut v, &mut changed);
    if !changed {
        return std::borrow::Cow::Borrowed(e);
    }
    serde_json::from_value(v).map_or(std::borrow::Cow::Borrowed(e), std::borrow::Cow::Owned)
}

/// ANSI styles, or nothing.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn detect(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: is_terminal && !no_color && std::env::var("TERM").map_or(true, |t| t != "dumb"),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn paint_underline(&self, s: &str) -> String {
        self.paint("4", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint("36", s)
    }
}

/// One line about a tool call's input: the command, the path, the pattern.
pub fn tool_subject(tool: &str, input: &Value) -> String {
    let s = |k: &str| {
        input
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let raw = match tool {
        "bash" => s("command"),
        "read" | "write" | "edit" => {
            let p = s("path");
            if p.is_empty() { s("file_path") } else { p }
        }
        "glob" | "grep" => {
            let path = s("path");
            if path.is_empty() {
                s("pattern")
            } else {
                format!("{} in {path}", s("pattern"))
            }
        }
        "list" => {
            let p = s("path");
            if p.is_empty() { ".".into() } else { p }
        }
        "task" => format!("{}: {}", s("subagent_type"), s("description")),
        _ => input.to_string(),
    };
    let first = raw.lines().next().unwrap_or("");
    let more = raw.lines().count() > 1;
    let mut out: String = first.chars().take(100).collect();
    if first.chars().count() > 100 || more {
        out.push('…');
    }
    out
}

/// What a finished call says, briefly: exit code, lines changed, match counts.
pub fn tool_result_note(
    tool: &str,
    is_error: bool,
    output: &str,
    meta: &Value,
    duration_ms: u64,
) -> String {
    if is_error {
        let first = output
            .trim_start_matches("Error: ")
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return first.chars().take(160).collect();
    }
    let n = |k: &str| meta.get(k).and_then(Value::as_u64);
    match tool {
        "bash" => {
            let mut s = match (
                meta.get("timed_out").and_then(Value::as_bool),
                meta.get("exit_code").and_then(Value::as_i64),
            ) {
                (Some(true), _) => "timed out".to_string(),
                (_, Some(c)) => format!("exit {c}"),
                _ => "killed".to_string(),
            };
            s.push_str(&format!(", {}", human_ms(duration_ms)));
            s
        }
        "write" | "edit" => format!(
            "+{} −{}",
            n("added").unwrap_or(0),
            n("removed").unwrap_or(0)
        ),
        "grep" => format!("{} matches", n("matches").unwrap_or(0)),
        "glob" => format!("{} files", n("count").unwrap_or(0)),
        "read" => format!("{} lines", n("lines_shown").unwrap_or(0)),
        _ => human_ms(duration_ms),
    }
}

pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

pub fn human_tokens(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", n as f64 / 1000.0)
    } else {
        format!("{:.2}M", n as f64 / 1_000_000.0)
    }
}

/// The lines `deputy run`'s progress and `deputy chat` both show: a finished or denied tool call,
/// a warning, a subagent starting or ending. Remembers each call's input until the call ends,
/// and which session is the top one (the first seen; the others are subagents).
#[derive(Default)]
pub struct ToolLines {
    inputs: HashMap<String, Value>,
    root: Option<String>,
}

impl ToolLines {
    /// Whether `e` comes from a subagent rather than the top session.
    pub fn nested(&mut self, e: &Event) -> bool {
        *self.root.get_or_insert_with(|| e.session_id.clone()) != e.session_id
    }

    /// The line for `e` (without indent), if it is one of the kinds above. A completed call whose
    /// request was not seen has no line.
    pub fn line(&mut self, e: &Event, st: Style) -> Option<String> {
        match &e.kind {
            EventKind::ToolRequested { call_id, input, .. } => {
                self.inputs.insert(call_id.clone(), input.clone());
                None
            }
            EventKind::ToolDecided {
                call_id,
                tool,
                allowed: false,
                reason,
                ..
            } => {
                let subject = self
                    .inputs
                    .remove(call_id)
                    .map(|i| tool_subject(tool, &i))
                    .unwrap_or_default();
                let why = reason.clone().unwrap_or_default();
                Some(format!(
                    "{} {} {subject} {}",
                    st.red("✗"),
                    st.bold(tool),
                    st.dim(&format!("— denied: {why}"))
                ))
            }
            EventKind::ToolCompleted {
                call_id,
                tool,
                is_error,
                output,
                metadata,
                duration_ms,
            } => {
                let input = self.inputs.remove(call_id)?;
                let subject = tool_subject(tool, &input);
                let note = tool_result_note(tool, *is_error, output, metadata, *duration_ms);
                let mark = if *is_error {
                    st.red("✗")
                } else {
                    st.green("●")
                };
                Some(format!(
                    "{mark} {} {subject} {}",
                    st.bold(tool),
                    st.dim(&format!("({note})"))
                ))
            }
            EventKind::Warning { message } => Some(st.yellow(&format!("⚠ {message}"))),
            // A hook that decided something is worth a line; one that just ran is not.
            EventKind::HookCompleted {
                hook_event,
                command,
                decision: Some(d),
                duration_ms,
                ..
            } => Some(st.dim(&format!(
                "↪ {hook_event} hook `{command}`: {d} ({duration_ms} ms)"
            ))),
            EventKind::TodoUpdated { todos } => Some(todo_lines(&st, todos)),
            EventKind::ContextCompacted {
                trigger,
                tokens_before,
                tokens_after,
                pruned_outputs,
                summarized_turns,
                context_window,
                ..
            } => Some(st.dim(&format!(
                "⇣ context compacted ({}): {} → {} tokens of a {} window; {pruned_outputs} outputs pruned, {summarized_turns} messages summarised",
                trigger.as_str(),
                human_tokens(*tokens_before),
                human_tokens(*tokens_after),
                human_tokens(*context_window)
            ))),
            EventKind::SubagentStarted {
                agent, description, ..
            } => Some(st.cyan(&format!("↳ {agent}: {description}"))),
            EventKind::SubagentFinished { agent, status, .. } => {
                Some(st.cyan(&format!("↲ {agent} {}", status.as_str())))
            }
            _ => None,
        }
    }
}

/// The task list: a head line with the count done, then one line per item.
fn todo_lines(st: &Style, todos: &[deputy_runtime::todo::Todo]) -> String {
    use deputy_runtime::todo::TodoStatus;
    let done = todos
        .iter()
        .filter(|t| t.status == TodoStatus::Completed)
        .count();
    let mut out = st.cyan(&format!("☰ tasks {done}/{}", todos.len()));
    for t in todos {
        let line = match t.status {
            TodoStatus::Pending => format!("  ☐ {}", t.content),
            TodoStatus::InProgress => st.bold(&format!(
                "  ▸ {}",
                t.active_form.as_deref().unwrap_or(&t.content)
            )),
            TodoStatus::Completed => st.dim(&format!("  ☑ {}", t.content)),
            TodoStatus::Cancelled => st.dim(&format!("  ☒ {}", t.content)),
        };
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// Progress on stderr for `deputy run` in text mode.
pub struct Progress {
    style: Style,
    /// Also stream the model's text.
    stream_text: bool,
    /// The cursor is after streamed text (a newline is due before the next line).
    mid_line: bool,
    /// Subagents' lines are shown indented.
    tools: ToolLines,
    /// What the session is waiting for (the spinner's label), and since when.
    activity: Option<(String, std::time::Instant)>,
    /// A spinner frame is on the current line of stderr.
    spinner_shown: bool,
    /// How full the context was at the last request: (tokens, window).
    fill: Option<(u64, u64)>,
}

impl Progress {
    pub fn new(style: Style, stream_text: bool) -> Self {
        Self {
            style,
            stream_text,
            mid_line: false,
            tools: ToolLines::default(),
            activity: None,
            spinner_shown: false,
            fill: None,
        }
    }

    /// `context 45% of 32k`, from the last request.
    fn fill_text(&self) -> Option<String> {
        let (t, w) = self.fill.filter(|(_, w)| *w > 0)?;
        Some(format!(
            "context {}% of {}",
            (t * 100 / w).min(999),
            human_tokens(w)
        ))
    }

    fn clear_spinner(&mut self, err: &mut impl Write) {
        if self.spinner_shown {
            let _ = write!(err, "\r\x1b[2K");
            self.spinner_shown = false;
        }
    }

    /// One spinner frame (`⠋ running bash: cargo test… 12.3s`), unless text is mid-line.
    fn tick(&mut self, frame: &str) {
        if self.mid_line {
            return;
        }
        let Some((label, since)) = &self.activity else {
            return;
        };
        let text = format!("{frame} {label}… {:.1}s", since.elapsed().as_secs_f64());
        let shown: String = text.chars().take(100).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", self.style.dim(&shown));
        let _ = err.flush();
        self.spinner_shown = true;
    }

    fn line(&mut self, depth: usize, s: &str) {
        let mut err = std::io::stderr().lock();
        self.clear_spinner(&mut err);
        if self.mid_line {
            let _ = writeln!(err);
            self.mid_line = false;
        }
        let _ = writeln!(err, "{}{s}", "  ".repeat(depth));
    }

    pub fn event(&mut self, e: &Event) {
        let e = &*for_terminal(e);
        let depth = usize::from(self.tools.nested(e));
        let st = self.style;
        // The spinner's label follows what the top session waits for.
        if depth == 0 {
            let now = std::time::Instant::now();
            match &e.kind {
                EventKind::TurnStarted { .. } => {
                    let label = match self.fill_text() {
                        Some(f) => format!("thinking · {f}"),
                        None => "thinking".to_string(),
                    };
                    self.activity = Some((label, now));
                }
                EventKind::TurnCompleted {
                    context_tokens: Some(t),
                    context_window: Some(w),
                    ..
                } => self.fill = Some((*t, *w)),
                EventKind::ToolRequested { tool, input, .. } => {
                    let what = tool_subject(tool, input);
                    let label = if what.is_empty() {
                        format!("running {tool}")
                    } else {
                        format!("running {tool}: {what}")
                    };
                    self.activity = Some((label, now));
                }
                EventKind::MessageDelta { .. } | EventKind::SessionFinished { .. } => {
                    self.activity = None;
                }
                _ => {}
            }
        }
        if let Some(line) = self.tools.line(e, st) {
            self.line(depth, &line);
            return;
        }
        match &e.kind {
            EventKind::SessionStarted {
                agent,
                model,
                sandbox,
                resumed,
                ..
            } if depth == 0 => {
                let what = if *resumed { "resumed" } else { "session" };
                self.line(
                    0,
                    &st.dim(&format!(
                        "▸ {agent} · {model} · sandbox {sandbox} · {what} {}",
                        e.session_id
                    )),
                );
            }
            EventKind::MessageDelta {
                text,
                reasoning: false,
                ..
            } if self.stream_text && depth == 0 => {
                let mut err = std::io::stderr().lock();
                self.clear_spinner(&mut err);
                let _ = write!(err, "{}", st.dim(text));
                let _ = err.flush();
                self.mid_line = !text.ends_with('\n');
            }
            EventKind::SessionFinished {
                status,
                usage,
                cost_usd,
                duration_ms,
                num_turns,
                ..
            } if depth == 0 => {
                let mark = match status {
                    Status::Completed => st.green("■"),
                    Status::Cancelled => st.yellow("■"),
                    _ => st.red("■"),
                };
                let cost = cost_usd.map(|c| format!(" · ${c:.4}")).unwrap_or_default();
                let est = if usage.estimated { " (estimated)" } else { "" };
                let fill = self
                    .fill_text()
                    .map(|f| format!(" · {f}"))
                    .unwrap_or_default();
                self.line(
                    0,
                    &format!(
                        "{mark} {} · {num_turns} turns · {} tokens{est}{cost}{fill} · {}",
                        status.as_str(),
                        human_tokens(usage.total()),
                        human_ms(*duration_ms)
                    ),
                );
            }
            _ => {}
        }
    }
}

/// A running spinner; `stop` clears its line.
pub struct Spinner {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Spinner {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Draw a spinner frame on stderr every 100 ms while `progress` is waiting for something.
pub fn spawn_spinner(progress: std::sync::Arc<std::sync::Mutex<Progress>>) -> Spinner {
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut i = 0usize;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
            if let Ok(mut p) = progress.lock() {
                p.tick(FRAMES[i % FRAMES.len()]);
            }
            i += 1;
        }
        if let Ok(mut p) = progress.lock() {
            let mut err = std::io::stderr().lock();
            p.clear_spinner(&mut err);
            let _ = err.flush();
        }
    });
    Spinner { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_plain_text_is_untouched() {
        assert!(matches!(
            clean("plain\ttext\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(clean("a\u{1b}]52;c;eA==\u{7}b"), "a␛]52;c;eA==␇b");
        assert_eq!(clean("x\ry\u{7f}"), "x␍y␡");
        assert_eq!(clean("\u{9b}31m \u{202e}abc"), "�31m �abc");
    }
}
