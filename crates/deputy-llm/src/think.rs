//! Separating inline `<think>…</think>` reasoning from answer text, across chunk boundaries.
//!
//! Some servers (DeepSeek-R1 distills, Qwen3 on Groq) put reasoning inside the content between
//! `<think>` tags instead of in a separate field. A tag may be split over two chunks
//! (`<thi` + `nk>`), so a possible tag prefix at the end of a piece is held back until the next
//! piece shows whether it is one.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// A piece of content, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Reasoning(String),
}

#[derive(Debug, Default)]
pub struct ThinkSplitter {
    in_think: bool,
    pending: String,
    text_started: bool,
}

impl ThinkSplitter {
    /// Feed the next piece of content; returns what can be classified so far.
    pub fn feed(&mut self, chunk: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut self.pending);
        buf.push_str(chunk);
        loop {
            let tag = if self.in_think { CLOSE } else { OPEN };
            if let Some(pos) = buf.find(tag) {
                self.emit(&buf[..pos], &mut out);
                buf.drain(..pos + tag.len());
                self.in_think = !self.in_think;
                continue;
            }
            let keep = partial_suffix(&buf, tag);
            let split = buf.len() - keep;
            self.emit(&buf[..split], &mut out);
            self.pending = buf[split..].to_string();
            break;
        }
        out
    }

    /// The stream ended: whatever is held back is classified as it stands.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest, &mut out);
        out
    }

    fn emit(&mut self, s: &str, out: &mut Vec<Piece>) {
        if s.is_empty() {
            return;
        }
        if self.in_think {
            out.push(Piece::Reasoning(s.to_string()));
        } else {
            // The answer usually follows `</think>` after a blank line; drop that lead-in.
            let s = if self.text_started { s } else { s.trim_start() };
            if s.is_empty() {
                return;
            }
            self.text_started = true;
            out.push(Piece::Text(s.to_string()));
        }
    }
}

/// Length of the longest suffix of `buf` that is a proper prefix of `tag`.
fn partial_suffix(buf: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            buf.len() >= n
                && buf.is_char_boundary(buf.len() - n)
                && tag.starts_with(&buf[buf.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let mut pieces = Vec::new();
        for c in chunks {
            pieces.extend(s.feed(c));
        }
        pieces.extend(s.finish());
        let mut text = String::new();
        let mut reasoning = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => text.push_str(&t),
                Piece::Reasoning(r) => reasoning.push_str(&r),
            }
        }
        (text, reasoning)
    }

    #[test]
    fn whole_and_split_tags() {
        assert_eq!(
            run(&["<think>hmm</think>\n\nAnswer"]),
            ("Answer".into(), "hmm".into())
        );
        assert_eq!(
            run(&["<th", "ink>a", "b</th", "ink>", "\nX <b>y</b>"]),
            ("X <b>y</b>".into(), "ab".into())
        );
        assert_eq!(
            run(&["plain < text"]),
            ("plain < text".into(), String::new())
        );
        assert_eq!(run(&["ends with <"]), ("ends with <".into(), String::new()));
        assert_eq!(
            run(&["<think>unfinished"]),
            (String::new(), "unfinished".into())
        );
        assert_eq!(run(&["é<", "think>ü</think>ö"]), ("éö".into(), "ü".into()));
    }
}
