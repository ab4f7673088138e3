//! Streaming markdown for the terminal: text arrives in pieces, and each complete line is styled
//! (headings, lists, quotes, code blocks, `inline code`, **bold**) as soon as it is whole.
//! Without colour the text passes through unchanged.

use crate::render::Style;

pub struct Markdown {
    style: Style,
    in_code: bool,
    buf: String,
}

impl Markdown {
    pub fn new(style: Style) -> Self {
        Self {
            style,
            in_code: false,
            buf: String::new(),
        }
    }

    /// Take a piece of text; return what can be printed now (whole lines, styled).
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        let mut out = String::new();
        while let Some(i) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=i).collect();
            out.push_str(&self.line(line.trim_end_matches('\n')));
            out.push('\n');
        }
        out
    }

    /// The end of the message: whatever is left, and a fresh state for the next one.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.buf);
        let out = if rest.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.line(&rest))
        };
        self.in_code = false;
        out
    }

    /// Whether a partial line is waiting for its end.
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    fn line(&mut self, line: &str) -> String {
        let st = self.style;
        if !st.color {
            return line.to_string();
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            self.in_code = !self.in_code;
            return st.dim(line);
        }
        if self.in_code {
            return st.cyan(line);
        }
        if let Some(h) = trimmed.strip_prefix('#') {
            let text = h.trim_start_matches('#').trim();
            return st.bold(&st.paint_underline(text));
        }
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(rest) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            return format!("{indent}• {}", self.inline(rest));
        }
        if let Some(rest) = trimmed.strip_prefix("> ") {
            return format!("{indent}{}", st.dim(&format!("│ {rest}")));
        }
        self.inline(line)
    }

    /// `code` and **bold** inside a line.
    fn inline(&self, s: &str) -> String {
        let st = self.style;
        let mut out = String::new();
        let mut rest = s;
        while !rest.is_empty() {
            let tick = rest.find('`');
            let bold = rest.find("**");
            match (tick, bold) {
                (Some(t), b) if b.is_none_or(|b| t < b) => {
                    if let Some(end) = rest[t + 1..].find('`') {
                        out.push_str(&rest[..t]);
                        out.push_str(&st.cyan(&rest[t + 1..t + 1 + end]));
                        rest = &rest[t + end + 2..];
                    } else {
                        out.push_str(rest);
                        break;
                    }
                }
                (_, Some(b)) => {
                    if let Some(end) = rest[b + 2..].find("**") {
                        out.push_str(&rest[..b]);
                        out.push_str(&st.bold(&rest[b + 2..b + 2 + end]));
                        rest = &rest[b + end + 4..];
                    } else {
                        out.push_str(rest);
                        break;
                    }
                }
                _ => {
                    out.push_str(rest);
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_passes_through_in_pieces() {
        let mut m = Markdown::new(Style { color: false });
        assert_eq!(m.push("# Ti"), "");
        assert_eq!(m.push("tle\n- a `x`\n"), "# Title\n- a `x`\n");
        assert_eq!(m.push("tail"), "");
        assert_eq!(m.finish(), "tail\n");
    }

    #[test]
    fn styled_lines() {
        let mut m = Markdown::new(Style { color: true });
        let out = m.push("## Plan\n- use `cargo` **now**\n```rust\nfn x() {}\n```\n");
        assert!(out.contains("\x1b[1m"), "{out:?}");
        assert!(out.contains("• use "), "{out:?}");
        assert!(out.contains("\x1b[36mcargo\x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[36mfn x() {}\x1b[0m"), "{out:?}");
        assert!(!out.contains("**"));
    }
}
