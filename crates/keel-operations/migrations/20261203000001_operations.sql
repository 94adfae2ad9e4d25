-- Operations shared by every replica (src/operations/store/postgres/). Unqualified names: the
-- tables live in the connection's current schema, so one database can hold several services.

-- Lease tokens: a new one for every claim, so a stale worker's writes are refused (fencing).
CREATE SEQUENCE keel_lease_tokens AS bigint;

CREATE TABLE keel_operations (
    -- Creation order: listing's keyset and the queue's order.
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               text PRIMARY KEY,
    kind             text NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- `json`, not `jsonb`: clients get their input back exactly as they sent it.
    input            json NOT NULL,
    progress_percent smallint NOT NULL DEFAULT 0,
    progress_message text,
    result           json,
    error            json,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    deadline_at      timestamptz NOT NULL,
    lease_token      bigint,
    lease_expires_at timestamptz,
    -- Which replica holds the lease, for people reading the table.
    worker           text,
    -- Attempts started (claims), and how many the kind's retry policy allows.
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    -- A queued operation starts no earlier: the submission's schedule, or a retry's backoff.
    not_before       timestamptz,
    -- Bumped by every change clients can see, so that watchers never go back to an older state.
    version          bigint NOT NULL DEFAULT 1
);

CREATE INDEX keel_operations_queued ON keel_operations (seq) WHERE status = 'queued';
CREATE INDEX keel_operations_leases ON keel_operations (lease_expires_at) WHERE status = 'running';
CREATE INDEX keel_operations_finished ON keel_operations (finished_at) WHERE finished_at IS NOT NULL;

-- Idempotency keys outlive their operation until they expire.
CREATE TABLE keel_idempotency_keys (
    key          text PRIMARY KEY,
    fingerprint  text NOT NULL,
    operation_id text NOT NULL,
    expires_at   timestamptz NOT NULL
);

CREATE INDEX keel_idempotency_keys_expiry ON keel_idempotency_keys (expires_at);
