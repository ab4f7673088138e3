//! Secret hygiene: values that must never appear in logs, events, the journal, error messages,
//! or what the model reads.
//!
//! The secrets are the values of environment variables named like `*_KEY`, `*_TOKEN`,
//! `*_SECRET`, `*PASSWORD*` (and `AUTHORIZATION`, `*_CREDENTIALS`), plus every provider API key
//! deputy resolves. They are kept out of tool processes by the sandbox (a cleared environment);
//! this module scrubs them from everything deputy writes, as a second line: a command may still
//! print one it found in a file.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

use serde_json::Value;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Shorter values are not treated as secrets (too likely to occur by chance).
const MIN_LEN: usize = 8;

/// A set of secret values.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// The secrets of the process environment.
    pub fn from_env() -> Self {
        let mut r = Redactor::default();
        for (k, v) in std::env::vars() {
            if deputy_tools::sandbox::is_secret_name(&k) {
                r.add(&v);
            }
        }
        r
    }

    pub fn add(&mut self, secret: &str) {
        let s = secret.trim();
        if s.len() >= MIN_LEN && !self.secrets.iter().any(|x| x == s) {
            self.secrets.push(s.to_string());
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Mask secrets in every string of a JSON value, in place; true if anything changed.
    pub fn redact_value(&self, v: &mut Value) -> bool {
        match v {
            Value::String(s) => match self.redact(s) {
                Cow::Owned(o) => {
                    *s = o;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            // Every element must be visited, so no short-circuiting `any`.
            Value::Array(items) => {
                let mut changed = false;
                for i in items.iter_mut() {
                    changed |= self.redact_value(i);
                }
                changed
            }
            Value::Object(map) => {
                let mut changed = false;
                for i in map.values_mut() {
                    changed |= self.redact_value(i);
                }
                changed
            }
            _ => false,
        }
    }
}

fn global() -> &'static RwLock<Redactor> {
    static G: OnceLock<RwLock<Redactor>> = OnceLock::new();
    G.get_or_init(|| RwLock::new(Redactor::from_env()))
}

/// Add a secret to the process-wide set (a provider key read from an unusually named variable).
pub fn add_secret(secret: &str) {
    if let Ok(mut g) = global().write() {
        g.add(secret);
    }
}

/// Mask the process-wide secrets in `text`.
pub fn redact(text: &str) -> String {
    match global().read() {
        Ok(g) => g.redact(text).into_owned(),
        Err(_) => text.to_string(),
    }
}

/// Mask the process-wide secrets in a JSON value.
pub fn redact_value(v: &mut Value) -> bool {
    global().read().map(|g| g.redact_value(v)).unwrap_or(false)
}

/// Whether any process-wide secret is known (callers skip work when none is).
pub fn any() -> bool {
    global().read().map(|g| !g.is_empty()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_skips_short_values() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("sk-12345678");
        r.add("sk-12345678-extended");
        assert_eq!(
            r.redact("a sk-12345678-extended b sk-12345678 abc"),
            "a [REDACTED] b [REDACTED] abc"
        );
        let mut v = serde_json::json!({"x": ["sk-12345678"], "y": 1});
        assert!(r.redact_value(&mut v));
        assert_eq!(v["x"][0], MASK);
    }
}
