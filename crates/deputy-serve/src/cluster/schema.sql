-- deputy serve --store postgres://…: the tables every worker shares. Created at start-up if
-- missing (under an advisory lock, so workers starting together do not race).

-- One row per session: what was asked, where it is, and the job queue itself (a row that is
-- queued, or running with an expired lease, is work for any worker).
CREATE TABLE IF NOT EXISTS deputy_sessions (
    id               text PRIMARY KEY,
    -- A hash of the bearer token that made it (NULL without tokens).
    owner            text,
    agent            text NOT NULL,
    -- The request (agent, workspace or repo, model, limits, output schema).
    request          json NOT NULL,
    -- The prompt of the next run; NULL once a run has finished.
    prompt           text,
    phase            text NOT NULL DEFAULT 'queued' CHECK (phase IN ('queued', 'running', 'finished')),
    worker           text,
    -- Raised by every claim: a worker writes only while the epoch it claimed is current.
    epoch            bigint NOT NULL DEFAULT 0,
    lease_until      timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- How the last run ended (the session view's fields).
    outcome          json,
    -- A repo session's change: after each run, and checkpointed while it runs.
    patch            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX IF NOT EXISTS deputy_sessions_work ON deputy_sessions (created_at) WHERE phase <> 'finished';
CREATE INDEX IF NOT EXISTS deputy_sessions_owner ON deputy_sessions (owner) WHERE phase <> 'finished';

-- Every event of a session and its subagents but streamed deltas, in order; `id` is the SSE id.
-- A session's own events are its journal: another worker resumes it from them.
CREATE TABLE IF NOT EXISTS deputy_events (
    id         bigserial PRIMARY KEY,
    session_id text NOT NULL REFERENCES deputy_sessions (id) ON DELETE CASCADE,
    event      json NOT NULL
);
CREATE INDEX IF NOT EXISTS deputy_events_session ON deputy_events (session_id, id);

-- Calls an `ask` rule holds until a client answers.
CREATE TABLE IF NOT EXISTS deputy_approvals (
    session_id text NOT NULL REFERENCES deputy_sessions (id) ON DELETE CASCADE,
    call_id    text NOT NULL,
    request    json NOT NULL,
    answer     json,
    PRIMARY KEY (session_id, call_id)
);

-- Which token (its hash) a workspace belongs to: the first that used it.
CREATE TABLE IF NOT EXISTS deputy_workspace_owners (
    path  text PRIMARY KEY,
    owner text NOT NULL
);

-- Idempotency-Key of POST /v1/sessions (scope `session`) and of a session's messages (scope
-- `message:ID`), per token (its hash; '' without tokens), kept a day.
CREATE TABLE IF NOT EXISTS deputy_idempotency (
    owner       text NOT NULL,
    scope       text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    session_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, scope, key)
);

-- GET /v1/sessions: a token's sessions, newest first.
CREATE INDEX IF NOT EXISTS deputy_sessions_list ON deputy_sessions (owner, created_at DESC, id DESC);
