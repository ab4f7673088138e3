//! `Idempotency-Key` on `POST /v1/sessions` and `POST /v1/sessions/{id}/messages`: a client
//! whose answer was lost sends the request again with the same key, and gets the session the
//! first one made instead of a second run of the job. The same key with another body is a
//! 422; a key whose first request is still being handled is a 409. Keys are per token and kept
//! [`KEPT`].
//!
//! The embedded store keeps them here, in memory, and in each session's record (so they
//! outlive a restart: see `restore`); the shared store in a table
//! (`deputy_idempotency`), inside the transaction that queues the run, so every worker answers
//! alike (see `cluster::idempotency`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// How long a key is remembered.
pub(crate) const KEPT: Duration = Duration::from_secs(24 * 3600);

/// A key a client sent, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key(pub(crate) String);

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<Key>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(Key(s.to_string())))
        }
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)",
        )),
    }
}

/// What identifies a request's body: the SHA-256 of it as parsed (so spacing and key order do
/// not matter).
pub(crate) fn fingerprint(body: &impl Serialize) -> String {
    let text = serde_json::to_string(body).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 422 for a key used again with another body.
pub(crate) fn reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "this Idempotency-Key was used with another request body; use a new key for a new request",
    )
}

/// Where a key stands.
enum Slot {
    /// Its first request is being handled.
    Pending { fingerprint: String },
    Done {
        fingerprint: String,
        session: String,
        at: Instant,
    },
}

/// (token, scope, key): the scope is `session`, or `message:ID` for a session's messages.
type Index = (Option<usize>, String, Key);

/// The keys of the embedded store.
#[derive(Default)]
pub(crate) struct Keys {
    slots: Mutex<HashMap<Index, Slot>>,
}

/// What a key says about a request.
pub(crate) enum Seen<'a> {
    /// First seen: handle it, then [`Reservation::done`] (dropping it frees the key).
    New(Reservation<'a>),
    /// Handled already: this session is the answer.
    Done(String),
}

impl Keys {
    /// Look `key` up for `token` in `scope`, reserving it when it is new.
    pub(crate) fn reserve(
        &self,
        token: Option<usize>,
        scope: &str,
        key: Key,
        body: &impl Serialize,
    ) -> Result<Seen<'_>, Problem> {
        let fingerprint = crate::idempotency::fingerprint(body);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|_, s| !matches!(s, Slot::Done { at, .. } if at.elapsed() > KEPT));
        let index = (token, scope.to_string(), key);
        match slots.get(&index) {
            Some(Slot::Done {
                fingerprint: f,
                session,
                ..
            }) => {
                return if *f == fingerprint {
                    Ok(Seen::Done(session.clone()))
                } else {
                    Err(reused())
                };
            }
            Some(Slot::Pending { fingerprint: f }) => {
                return Err(if *f == fingerprint {
                    Problem::new(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is still being handled; retry shortly",
                    )
                    .retry_after(1)
                } else {
                    reused()
                });
            }
            None => {}
        }
        slots.insert(
            index.clone(),
            Slot::Pending {
                fingerprint: fingerprint.clone(),
            },
        );
        Ok(Seen::New(Reservation {
            keys: self,
            index: Some(index),
            fingerprint,
        }))
    }
}

impl Keys {
    /// Forget `token`'s keys that made or continued `session` (it was deleted).
    pub(crate) fn forget(&self, token: Option<usize>, session: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|(t, _, _), s| {
            !(*t == token && matches!(s, Slot::Done { session: x, .. } if x == session))
        });
    }
}

/// A key as a session's record keeps it across a restart (see `restore`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeptKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    /// When it was first used (milliseconds since the epoch).
    pub at_ms: u64,
}

impl Keys {
    /// Remember `k` of `token` as having made `session` (a restart restoring its records).
    pub(crate) fn restore(&self, token: Option<usize>, session: &str, k: KeptKey) {
        let now_ms = u64::try_from(crate::clock::now_us() / 1000).unwrap_or(0);
        let age = Duration::from_millis(now_ms.saturating_sub(k.at_ms));
        let Some(at) = Instant::now().checked_sub(age).filter(|_| age < KEPT) else {
            return;
        };
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(
            (token, k.scope, Key(k.key)),
            Slot::Done {
                fingerprint: k.fingerprint,
                session: session.to_string(),
                at,
            },
        );
    }
}

/// A key held while its first request is handled.
pub(crate) struct Reservation<'a> {
    keys: &'a Keys,
    index: Option<Index>,
    fingerprint: String,
}

impl Reservation<'_> {
    /// The request made `session`: later ones with the key get it. Returns the key as a
    /// record keeps it.
    pub(crate) fn done(mut self, session: &str) -> Option<KeptKey> {
        let (token, scope, key) = self.index.take()?;
        let kept = KeptKey {
            scope: scope.clone(),
            key: key.0.clone(),
            fingerprint: self.fingerprint.clone(),
            at_ms: u64::try_from(crate::clock::now_us() / 1000).unwrap_or(0),
        };
        let mut slots = self.keys.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(
            (token, scope, key),
            Slot::Done {
                fingerprint: std::mem::take(&mut self.fingerprint),
                session: session.to_string(),
                at: Instant::now(),
            },
        );
        Some(kept)
    }
}

impl Drop for Reservation<'_> {
    /// Not done (the request failed): the key is free again, so a retry can succeed.
    fn drop(&mut self) {
        if let Some(index) = self.index.take() {
            let mut slots = self.keys.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.remove(&index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gives_the_first_answer_and_refuses_another_body() {
        let keys = Keys::default();
        let k = || Key("k1".into());
        let Ok(Seen::New(r)) = keys.reserve(Some(0), "session", k(), &"a") else {
            panic!("new key not reserved");
        };
        assert!(
            keys.reserve(Some(0), "session", k(), &"a").is_err(),
            "pending"
        );
        r.done("s1");
        assert!(matches!(
            keys.reserve(Some(0), "session", k(), &"a"),
            Ok(Seen::Done(s)) if s == "s1"
        ));
        assert!(keys.reserve(Some(0), "session", k(), &"b").is_err());
        // Another token, or another scope, has keys of its own.
        assert!(matches!(
            keys.reserve(Some(1), "session", k(), &"a"),
            Ok(Seen::New(_))
        ));
        // A failed first request frees the key.
        let Ok(Seen::New(r)) = keys.reserve(Some(0), "message:s1", k(), &"m") else {
            panic!("scope not separate");
        };
        drop(r);
        assert!(matches!(
            keys.reserve(Some(0), "message:s1", k(), &"m"),
            Ok(Seen::New(_))
        ));
    }
}
