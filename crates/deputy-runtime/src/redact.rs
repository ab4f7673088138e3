//! Secret hygiene: values that must never appear in logs, events, the journal, error messages,
//! or what the model reads.
//!
//! The secrets are the values of environment variables named like `*_KEY`, `*_TOKEN`,
//! `*_SECRET`, `*PASSWORD*` (and `AUTHORIZATION`, `*_CREDENTIALS`), plus every provider API key
//! deputy resolves. They are kept out of tool processes by the sandbox (a cleared environment);
//! this module scrubs them from everything deputy writes, as a last line: a command may still
//! print one it found in a file. Simple disguises are masked too — base64 (standard and
//! URL-safe, at any alignment), hex, reversed, `-` and `_` swapped — but a command that wants
//! to smuggle a secret out can always transform it some other way: the first line is that
//! secrets never enter the sandbox.

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
        Self::from_vars(std::env::vars())
    }

    /// The secrets among these variables: the values of secret names (`*_TOKEN(S)`,
    /// `*_KEY(S)`, `*_SECRET(S)`, `*PASSWORD*`, …), each item of a comma-separated list too
    /// (`DEPUTY_SERVE_TOKENS=a,b`), and the password inside any URL (`postgres://u:pw@db`).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut r = Redactor::default();
        for (k, v) in vars {
            if deputy_tools::sandbox::is_secret_name(&k) {
                r.add(&v);
                for item in v.split(',') {
                    r.add(item);
                }
            }
            for p in url_passwords(&v) {
                r.add(&p);
            }
        }
        r
    }

    /// Add a secret, and the forms a command could easily turn it into.
    pub fn add(&mut self, secret: &str) {
        let s = secret.trim();
        if s.len() < MIN_LEN {
            return;
        }
        let mut forms = vec![s.to_string()];
        forms.push(s.chars().rev().collect());
        forms.push(s.replace('-', "_"));
        forms.push(s.replace('_', "-"));
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        forms.push(hex.to_ascii_uppercase());
        forms.push(hex);
        forms.extend(base64_cores(s.as_bytes()));
        for f in forms {
            if f.len() >= MIN_LEN && !self.secrets.contains(&f) {
                self.secrets.push(f);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        self.secrets.sort_by_key(|x| std::cmp::Reverse(x.len()));
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

/// The passwords in the URLs of `text` (`scheme://user:password@host`), as written and
/// percent-decoded.
fn url_passwords(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ',')
            .unwrap_or(after.len());
        let authority = &after[..end];
        if let Some((userinfo, _host)) = authority.rsplit_once('@')
            && let Some((_user, password)) = userinfo.split_once(':')
            && !password.is_empty()
        {
            out.push(password.to_string());
            let decoded = percent_decode(password);
            if decoded != password {
                out.push(decoded);
            }
        }
        rest = &after[end..];
    }
    out
}

/// `%XX` sequences decoded (lossy where the bytes are not UTF-8).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of `secret`'s base64 encoding that are the same wherever it stands in a longer
/// text (one per alignment to the 3-byte groups), in the standard and URL-safe alphabets.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let encode = |bytes: &[u8]| -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(STD[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let mut out = Vec::new();
    for lead in 0..3usize {
        // Bytes before the secret fill the first group: skip it; the last group may mix with
        // what follows: skip it too.
        let mut buf = vec![0u8; lead];
        buf.extend_from_slice(secret);
        let enc = encode(&buf);
        let start = if lead == 0 { 0 } else { 4 };
        let whole = (buf.len() / 3) * 4;
        if whole > start + MIN_LEN {
            let core = &enc[start..whole];
            out.push(core.to_string());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out
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
    fn token_lists_and_url_passwords_are_secrets() {
        let r = Redactor::from_vars([
            (
                "DEPUTY_SERVE_TOKENS".to_string(),
                "tok-alpha-1111,tok-beta-22222".to_string(),
            ),
            ("SERVICE_KEYS".to_string(), "key-gamma-3333".to_string()),
            (
                "DATABASE_URL".to_string(),
                "postgres://app:p%40ss-word-9@db/x".to_string(),
            ),
            ("HOME".to_string(), "/home/someone-long".to_string()),
        ]);
        let text = "a tok-beta-22222 b tok-alpha-1111 c key-gamma-3333 d p%40ss-word-9 e p@ss-word-9 f /home/someone-long";
        let out = r.redact(text);
        for s in ["tok-alpha", "tok-beta", "key-gamma", "ss-word"] {
            assert!(!out.contains(s), "{s}: {out}");
        }
        assert!(out.contains("/home/someone-long"));
    }

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

    #[test]
    fn simple_disguises_are_masked_too() {
        let secret = "sk-live-0123456789abcdef";
        let mut r = Redactor::default();
        r.add(secret);
        let run = |cmd: &str| {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(cmd)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        for cmd in [
            format!("printf %s '{secret}' | base64"),
            format!("printf 'KEY=%s\\n' '{secret}' | base64 -w0"),
            format!("printf 'AB%s' '{secret}' | base64 -w0 | tr '+/' '-_'"),
            format!("printf %s '{secret}' | rev"),
            format!("printf %s '{secret}' | xxd -p | tr -d '\\n'"),
            format!("printf %s '{secret}' | od -An -tx1 | tr -d ' \\n'"),
            format!("echo '{secret}' | sed 's/-/_/g'"),
        ] {
            let shown = run(&cmd);
            assert!(!shown.trim().is_empty(), "{cmd}");
            let masked = r.redact(&shown);
            assert!(masked.contains(MASK), "{cmd}: {shown:?} -> {masked:?}");
        }
    }
}
