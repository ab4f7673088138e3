//! The runtime's prompt templates (`prompts/*.md`, compiled in) and their rendering.

/// The preamble every agent's system prompt starts with.
pub const PREAMBLE: &str = include_str!("../../../prompts/preamble.md");
/// The last request to the model when a limit stops the session.
pub const LIMIT_SUMMARY: &str = include_str!("../../../prompts/limit-summary.md");
/// The request of `deputy review`.
pub const REVIEW: &str = include_str!("../../../prompts/review.md");
/// The instructions of the request that summarises older turns to fit the context window.
pub const COMPACT: &str = include_str!("../../../prompts/compact.md");
/// The request to fix a final answer that does not match `--output-schema`.
pub const OUTPUT_SCHEMA: &str = include_str!("../../../prompts/output-schema.md");

/// Replace every `{{key}}` by its value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// Today's date, `YYYY-MM-DD` (UTC).
pub fn today() -> String {
    let days = (crate::event::now_ms() / 86_400_000) as i64;
    let (y, m, d) = crate::journal::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The operating system, for the preamble.
pub fn os_name() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    match pretty {
        Some(p) => format!("{p} ({}, {})", std::env::consts::OS, std::env::consts::ARCH),
        None => format!("{} ({})", std::env::consts::OS, std::env::consts::ARCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        assert_eq!(
            render("a {{x}} b {{y}} {{x}}", &[("x", "1"), ("y", "2")]),
            "a 1 b 2 1"
        );
        assert!(PREAMBLE.contains("{{tools}}"));
        assert!(LIMIT_SUMMARY.contains("{{limit}}"));
        assert_eq!(today().len(), 10);
    }
}
