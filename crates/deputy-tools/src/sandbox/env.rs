//! The environment a command starts with: cleared, then `PATH`, `HOME`, `LANG`, `TERM`, a
//! private `TMPDIR`, pager settings, and what `[sandbox] env_allow` names — never a variable
//! whose name marks it as a secret.

use super::{Backend, SandboxPolicy};

/// Environment names whose values are secrets; never passed to commands, even if allowed.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let base = upper.strip_suffix('S').unwrap_or(&upper);
    base.ends_with("_KEY")
        || base.ends_with("_TOKEN")
        || base.ends_with("_SECRET")
        || upper.contains("PASSWORD")
        || upper.contains("PASSWD")
        || upper == "AUTHORIZATION"
        || upper.ends_with("_API_KEY")
        || upper.ends_with("_CREDENTIALS")
}

pub(super) fn sandbox_env(policy: &SandboxPolicy, backend: Backend) -> Vec<(String, String)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut env = vec![
        (
            "PATH".to_string(),
            get("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        (
            "HOME".to_string(),
            get("HOME").unwrap_or_else(|| "/tmp".into()),
        ),
        (
            "LANG".to_string(),
            get("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        ),
        (
            "TERM".to_string(),
            get("TERM").unwrap_or_else(|| "dumb".into()),
        ),
        ("TMPDIR".to_string(), "/tmp".to_string()),
        // Commands have no terminal to page into.
        ("PAGER".to_string(), "cat".to_string()),
        ("GIT_PAGER".to_string(), "cat".to_string()),
        ("DEPUTY_SANDBOX".to_string(), backend.as_str().to_string()),
    ];
    for name in &policy.env_allow {
        if is_secret_name(name) {
            tracing::warn!("not passing `{name}` to commands: its name marks it as a secret");
            continue;
        }
        if let Some(v) = get(name)
            && !env.iter().any(|(k, _)| k == name)
        {
            env.push((name.clone(), v));
        }
    }
    env
}
