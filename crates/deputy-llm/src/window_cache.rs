//! What servers said about their context windows, kept between runs (`STATE/cache/windows.json`)
//! so that asking costs nothing after the first time: the answer — or that the server says
//! nothing, which is the common case (hosted APIs, a server without `/props`) — is kept for
//! [`KEEP`] per server and model. An overflow error still corrects a figure that went stale.
//!
//! A lost or damaged file is only a cache miss; writes replace the file whole (a temporary
//! file renamed over it), so a reader never sees half of one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::window::Told;

/// How long an answer is kept: a local server restarted with another context is asked again
/// within the hour.
pub const KEEP: Duration = Duration::from_secs(3600);
/// The most entries kept (the oldest go first).
const MAX_ENTRIES: usize = 256;
/// A cache file larger than this is ignored (and replaced).
const MAX_BYTES: u64 = 256 * 1024;

static FILE: OnceLock<PathBuf> = OnceLock::new();

/// Keep what servers say about their windows in `file` (call once, early; `deputy` uses its
/// state directory). Without it, a process asks once and forgets.
pub fn remember_windows_in(file: PathBuf) {
    let _ = FILE.set(file);
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    /// What the server said; `None`: it said nothing.
    told: Option<Told>,
    /// When (seconds since the epoch).
    at: u64,
}

/// The key of a server and model: a hash, so that nothing of a base URL (which may carry a
/// token) is written down.
fn key(base_url: &str, model: &str) -> String {
    // FNV-1a, 64 bits: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base_url.bytes().chain([0]).chain(model.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read() -> BTreeMap<String, Entry> {
    let Some(f) = FILE.get() else {
        return BTreeMap::new();
    };
    match std::fs::metadata(f) {
        Ok(m) if m.is_file() && m.len() <= MAX_BYTES => {}
        _ => return BTreeMap::new(),
    }
    std::fs::read(f)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What the server at `base_url` said for `model` within [`KEEP`]: `Some(None)` when it said
/// nothing; `None` when it was not asked (or too long ago).
pub(crate) fn recall(base_url: &str, model: &str) -> Option<Option<Told>> {
    let e = read().remove(&key(base_url, model))?;
    (now().saturating_sub(e.at) < KEEP.as_secs()).then_some(e.told)
}

/// Keep what the server at `base_url` said for `model`.
pub(crate) fn keep(base_url: &str, model: &str, told: Option<Told>) {
    let Some(f) = FILE.get() else { return };
    let mut all = read();
    let t = now();
    all.retain(|_, e| t.saturating_sub(e.at) < KEEP.as_secs());
    all.insert(key(base_url, model), Entry { told, at: t });
    while all.len() > MAX_ENTRIES {
        let Some(oldest) = all.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) else {
            break;
        };
        all.remove(&oldest);
    }
    let Some(dir) = f.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(json) = serde_json::to_vec(&all) else {
        return;
    };
    let tmp = dir.join(format!(".windows.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, f).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_recalled_and_keyed_without_the_url() {
        let dir = std::env::temp_dir().join(format!("deputy-windows-{}", std::process::id()));
        let file = dir.join("cache/windows.json");
        remember_windows_in(file.clone());
        let Some(f) = FILE.get() else { return };
        assert_eq!(*f, file);
        assert_eq!(recall("http://h/v1", "m"), None);
        keep("http://h/v1", "m", Some((8192, Some(1024))));
        keep("http://secret-token@h/v1", "n", None);
        assert_eq!(recall("http://h/v1", "m"), Some(Some((8192, Some(1024)))));
        assert_eq!(recall("http://secret-token@h/v1", "n"), Some(None));
        assert_eq!(recall("http://h/v1", "other"), None);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("secret-token") && !text.contains("http"),
            "{text}"
        );
        // An old answer is asked again.
        let mut all = read();
        for e in all.values_mut() {
            e.at -= KEEP.as_secs() + 1;
        }
        std::fs::write(&file, serde_json::to_vec(&all).unwrap_or_default()).unwrap_or_default();
        assert_eq!(recall("http://h/v1", "m"), None);
        // Garbage is a miss, and is replaced.
        std::fs::write(&file, "not json").unwrap_or_default();
        assert_eq!(recall("http://h/v1", "m"), None);
        keep("http://h/v1", "m", None);
        assert_eq!(recall("http://h/v1", "m"), Some(None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
