//! Finding sessions: `GET /v1/sessions` lists a token's sessions newest first, a page at a
//! time, filtered by phase, status, agent, labels and creation time; `metadata` is the labels a
//! client gives a session when it makes it; `DELETE /v1/sessions/{id}` forgets a finished one.
//!
//! The order is (created, id) descending and the cursor is the last row's pair, so a page never
//! repeats or skips a session however many are made meanwhile (new ones are newer than any
//! cursor). Both stores answer from the same [`Filter`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;

use crate::problem::Problem;
use crate::store::{Entry, Phase};
use crate::{App, TokenId};

/// A client's labels for a session: at most [`MAX_LABELS`], each key 1 to 64 of `A-Z a-z 0-9
/// _ . - / :`, each value at most 256 characters without control characters.
pub type Metadata = BTreeMap<String, String>;

pub(crate) const MAX_LABELS: usize = 16;
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 256;
/// A page holds this many unless `limit` says otherwise, and at most [`MAX_PAGE`].
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

fn key_ok(k: &str) -> bool {
    (1..=MAX_KEY).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-/:".contains(&b))
}

fn value_ok(v: &str) -> bool {
    v.chars().count() <= MAX_VALUE && !v.chars().any(char::is_control)
}

/// A 422 naming the label that breaks the rules, and the rules.
pub(crate) fn check_metadata(m: &Metadata) -> Result<(), Problem> {
    let bad = |why: String| Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, why));
    if m.len() > MAX_LABELS {
        return bad(format!(
            "metadata has {} keys; at most {MAX_LABELS} are kept",
            m.len()
        ));
    }
    for (k, v) in m {
        if !key_ok(k) {
            return bad(format!(
                "metadata key {k:?}: 1 to {MAX_KEY} characters of A-Z a-z 0-9 _ . - / :"
            ));
        }
        if !value_ok(v) {
            return bad(format!(
                "metadata.{k}: at most {MAX_VALUE} characters, no control characters"
            ));
        }
    }
    Ok(())
}

/// Where a page starts: after the session created at `created_us` with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub created_us: i64,
    pub id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}.{}", self.created_us, self.id)
    }

    fn decode(s: &str) -> Option<Cursor> {
        let (us, id) = s.split_once('.')?;
        let ok = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| {
            us.parse().ok().map(|created_us| Cursor {
                created_us,
                id: id.to_string(),
            })
        })?
    }

    /// `(created_us, id)` comes after this cursor in the newest-first order.
    fn before(&self, created_us: i64, id: &str) -> bool {
        (created_us, id) < (self.created_us, self.id.as_str())
    }
}

/// The query of `GET /v1/sessions`, checked.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub phase: Option<Phase>,
    pub status: Option<String>,
    pub agent: Option<String>,
    /// Every one must be among the session's metadata.
    pub labels: Metadata,
    pub created_after_us: Option<i64>,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// The statuses a run can end with (the runtime's names).
const STATUSES: [&str; 7] = deputy_runtime::Status::ALL_NAMES;

impl Filter {
    /// Parse the query string; a 400 names the parameter that is wrong and what it takes.
    pub(crate) fn parse(query: Option<&str>) -> Result<Filter, Problem> {
        let bad = |why: String| Problem::new(StatusCode::BAD_REQUEST, why);
        let mut f = Filter {
            limit: DEFAULT_PAGE,
            ..Filter::default()
        };
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
        for (k, v) in pairs {
            let v = v.into_owned();
            match k.as_ref() {
                "phase" => {
                    f.phase = Some(match v.as_str() {
                        "queued" => Phase::Queued,
                        "running" => Phase::Running,
                        "finished" => Phase::Finished,
                        _ => {
                            return Err(bad(format!(
                                "phase={v}: one of queued, running, finished"
                            )));
                        }
                    });
                }
                "status" if STATUSES.contains(&v.as_str()) => f.status = Some(v),
                "status" => {
                    return Err(bad(format!("status={v}: one of {}", STATUSES.join(", "))));
                }
                "agent" => f.agent = Some(v),
                "label" => {
                    let Some((lk, lv)) = v.split_once('=').filter(|(k, _)| key_ok(k)) else {
                        return Err(bad(format!(
                            "label={v}: KEY=VALUE, a key of the session's metadata and its value"
                        )));
                    };
                    f.labels.insert(lk.to_string(), lv.to_string());
                }
                "created_after" => {
                    f.created_after_us = Some(crate::clock::parse(&v).ok_or_else(|| {
                        bad(format!(
                            "created_after={v}: an RFC 3339 date-time such as 2026-12-06T15:30:00Z"
                        ))
                    })?);
                }
                "cursor" => {
                    f.cursor = Some(Cursor::decode(&v).ok_or_else(|| {
                        bad(format!(
                            "cursor={v}: not a cursor this API gave (use next_cursor as it is)"
                        ))
                    })?);
                }
                "limit" => {
                    f.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| bad(format!("limit={v}: a number from 1 to {MAX_PAGE}")))?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter `{other}`; this endpoint takes phase, status, agent, \
                         label, created_after, cursor and limit"
                    )));
                }
            }
        }
        Ok(f)
    }

    /// Whether a session is in the list (the cursor and the limit aside).
    pub(crate) fn admits(&self, s: &Listed) -> bool {
        self.phase.is_none_or(|p| p == s.phase)
            && self
                .status
                .as_ref()
                .is_none_or(|st| s.status.as_ref() == Some(st))
            && self.agent.as_ref().is_none_or(|a| *a == s.agent)
            && self
                .labels
                .iter()
                .all(|(k, v)| s.metadata.get(k) == Some(v))
            && self.created_after_us.is_none_or(|t| s.created_us > t)
            && self
                .cursor
                .as_ref()
                .is_none_or(|c| c.before(s.created_us, &s.id))
    }
}

/// A session as a store lists it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub id: String,
    pub agent: String,
    pub phase: Phase,
    pub status: Option<String>,
    pub created_us: i64,
    pub metadata: Metadata,
}

/// A session in a list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionSummary {
    pub id: String,
    pub agent: String,
    pub phase: Phase,
    /// How the last run ended, once one has.
    pub status: Option<String>,
    /// When it was made (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    pub metadata: Metadata,
}

/// A page of sessions, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
    /// Give it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page from at most `limit + 1` sessions in order: the extra one only says there is more.
fn page(mut rows: Vec<Listed>, limit: usize) -> SessionList {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|l| Cursor {
            created_us: l.created_us,
            id: l.id.clone(),
        })
        .map(|c| c.encode());
    SessionList {
        sessions: rows
            .into_iter()
            .map(|l| SessionSummary {
                created_at: crate::clock::format(l.created_us),
                id: l.id,
                agent: l.agent,
                phase: l.phase,
                status: l.status,
                metadata: l.metadata,
            })
            .collect(),
        next_cursor,
    }
}

/// `GET /v1/sessions`.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionList>, Problem> {
    let f = Filter::parse(query.as_deref())?;
    let rows = match &app.cluster {
        Some(c) => c.list(app.owner_key(owner).as_deref(), &f).await?,
        None => {
            let mut rows: Vec<Listed> = app
                .registry
                .owned_by(owner)
                .iter()
                .map(|e| e.listed())
                .filter(|l| f.admits(l))
                .collect();
            rows.sort_by(|a, b| (b.created_us, &b.id).cmp(&(a.created_us, &a.id)));
            rows.truncate(f.limit + 1);
            rows
        }
    };
    Ok(Json(page(rows, f.limit)))
}

/// What became of a request to delete a session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    Yes,
    /// Queued or running: cancel it and wait for it to finish first.
    Busy,
    Missing,
}

/// `DELETE /v1/sessions/{id}`: a finished session, its events and its scratch clone are
/// forgotten (its `Idempotency-Key`s too: a retry makes a new session); 409 while it is
/// queued or running.
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    Extension(TokenId(owner)): Extension<TokenId>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let (done, leftover) = match &app.cluster {
        Some(c) => {
            let (done, request) = c.delete(&id, app.owner_key(owner).as_deref()).await?;
            let request =
                request.and_then(|r| serde_json::from_value::<crate::types::CreateSession>(r).ok());
            (done, request.map(|r| Leftover::Request(Box::new(r))))
        }
        None => delete_here(&app, owner, &id),
    };
    if let Some(l) = leftover {
        discard_worktree(&app, &id, l).await;
    }
    match done {
        Deleted::Yes => Ok(StatusCode::NO_CONTENT),
        Deleted::Busy => Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "session {id} is queued or running; cancel it (POST /v1/sessions/{id}/cancel) \
                 and delete it once it has finished"
            ),
        )),
        Deleted::Missing => Err(Problem::not_found(format!(
            "no session {id} on this server"
        ))),
    }
}

/// What a deleted session may have left: its worktree, held by its session, or the request
/// that says where to look for it.
enum Leftover {
    Held(Arc<deputy_runtime::worktree::Worktree>),
    Request(Box<crate::types::CreateSession>),
}

/// A deleted `isolation: worktree` session's worktree goes: what it held is committed first,
/// and its branch stays when it has a change (the client may still merge it).
async fn discard_worktree(app: &App, id: &str, l: Leftover) {
    let ws = match &l {
        Leftover::Request(r)
            if r.isolation == Some(deputy_runtime::task::IsolationIn::Worktree) =>
        {
            crate::prepare::workspace(app, r.workspace.as_deref()).ok()
        }
        _ => None,
    };
    let id = id.to_string();
    let done = tokio::task::spawn_blocking(move || match (l, ws) {
        (Leftover::Held(wt), _) => wt.discard().map(|_| ()),
        (Leftover::Request(_), Some(ws)) => {
            deputy_runtime::worktree::prune_session(&ws, &id).map(|_| ())
        }
        _ => Ok(()),
    })
    .await;
    if let Ok(Err(e)) = done {
        tracing::warn!("a deleted session's worktree was left: {e}");
    }
}

/// Delete on the embedded store: the entry, its scratch clone and its journal.
fn delete_here(app: &App, owner: Option<usize>, id: &str) -> (Deleted, Option<Leftover>) {
    let entry = app.registry.get(id);
    let request = app
        .opts
        .factory
        .state_dir
        .as_deref()
        .and_then(|s| crate::restore::load(s, id))
        .map(|r| r.request);
    let done = app.registry.remove_finished(id, owner);
    let mut leftover = None;
    if done == Deleted::Yes {
        // The session goes now (not when the last reader lets go of its entry); its worktree,
        // if it has one, is what is left of it.
        let held = entry
            .and_then(|e| e.session.try_lock().ok().and_then(|mut s| s.take()))
            .and_then(|s| s.worktree().cloned());
        leftover = match (held, request) {
            (Some(wt), _) => Some(Leftover::Held(wt)),
            (None, Some(r)) => Some(Leftover::Request(Box::new(r))),
            (None, None) => None,
        };
        app.keys.forget(owner, id);
        if let Some(state) = &app.opts.factory.state_dir {
            let dir = deputy_runtime::journal::session_dir(state, id);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove the journal {}: {e}", dir.display());
            }
        }
    }
    (done, leftover)
}

impl Entry {
    /// This session as a list shows it.
    pub(crate) fn listed(&self) -> Listed {
        let (phase, status) = self.state.lock().map_or((Phase::Finished, None), |st| {
            (
                st.phase,
                st.outcome.as_ref().map(|o| o.status.as_str().to_string()),
            )
        });
        Listed {
            id: self.id.clone(),
            agent: self.agent.clone(),
            phase,
            status,
            created_us: self.created_us,
            metadata: self.metadata.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_parsed_or_refused_by_name() {
        let f = Filter::parse(Some(
            "phase=finished&status=completed&agent=general&label=team%3Dinfra&label=ci=1&limit=5\
             &created_after=2026-01-01T00:00:00Z&cursor=1796570200123456.20261206-153000-abcdef",
        ))
        .unwrap();
        assert_eq!(f.phase, Some(Phase::Finished));
        assert_eq!(f.labels.get("team").map(String::as_str), Some("infra"));
        assert_eq!(f.labels.get("ci").map(String::as_str), Some("1"));
        assert_eq!(f.limit, 5);
        assert_eq!(
            f.cursor.as_ref().map(|c| c.created_us),
            Some(1_796_570_200_123_456)
        );
        for (q, names) in [
            ("phase=done", "phase=done"),
            ("status=ok", "status=ok"),
            ("label=nokey", "label=nokey"),
            ("label==v", "label==v"),
            ("limit=0", "limit=0"),
            ("limit=101", "limit=101"),
            ("created_after=yesterday", "created_after"),
            ("cursor=x", "cursor=x"),
            ("cursor=1.a/b", "cursor"),
            ("labels=a=b", "`labels`"),
        ] {
            let e = Filter::parse(Some(q)).unwrap_err();
            assert_eq!(e.status, 400, "{q}");
            assert!(e.detail.contains(names), "{q}: {}", e.detail);
        }
    }

    #[test]
    fn pages_follow_the_cursor_without_repeats() {
        let rows: Vec<Listed> = (0..5)
            .map(|i| Listed {
                id: format!("s{i}"),
                agent: "general".into(),
                phase: Phase::Finished,
                status: None,
                // Two share a time: the id orders them.
                created_us: [10, 20, 20, 30, 40][i],
                metadata: Metadata::new(),
            })
            .collect();
        let mut seen = Vec::new();
        let mut f = Filter {
            limit: 2,
            ..Filter::default()
        };
        loop {
            let mut mine: Vec<Listed> = rows.iter().filter(|l| f.admits(l)).cloned().collect();
            mine.sort_by(|a, b| (b.created_us, &b.id).cmp(&(a.created_us, &a.id)));
            mine.truncate(f.limit + 1);
            let p = page(mine, f.limit);
            seen.extend(p.sessions.iter().map(|s| s.id.clone()));
            match p.next_cursor {
                Some(c) => f.cursor = Cursor::decode(&c),
                None => break,
            }
        }
        assert_eq!(seen, ["s4", "s3", "s2", "s1", "s0"]);
    }

    #[test]
    fn metadata_rules_name_the_key() {
        let ok: Metadata = [("team".to_string(), "infra".to_string())].into();
        assert!(check_metadata(&ok).is_ok());
        let bad: Metadata = [("has space".to_string(), "x".to_string())].into();
        assert!(
            check_metadata(&bad)
                .unwrap_err()
                .detail
                .contains("has space")
        );
        let ctl: Metadata = [("k".to_string(), "a\nb".to_string())].into();
        assert!(
            check_metadata(&ctl)
                .unwrap_err()
                .detail
                .contains("metadata.k")
        );
        let many: Metadata = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(check_metadata(&many).is_err());
    }
}
