//! Writing to stdout. stdout carries only the user's output (results, JSON, JSONL); everything
//! else goes to stderr. A closed pipe (`deputy agents list | head -1`) ends the process quietly,
//! as it does for any well-behaved Unix tool.

use std::io::Write;

/// Write `text` to stdout and flush. On a broken pipe, exit 0 at once.
pub fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

/// [`out`] with a trailing newline.
pub fn outln(text: &str) -> std::io::Result<()> {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    out(&s)
}

/// Pretty JSON to stdout.
pub fn out_json<T: serde::Serialize>(value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    outln(&text)
}
