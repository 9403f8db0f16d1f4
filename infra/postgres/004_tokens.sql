-- The console's API tokens (issue 13): who may use the REST API and web UI, as what
-- role, over which apps. Only the SHA-256 of a token is kept; the API finds a
-- presented token by it.

CREATE TABLE tokens (
    name text PRIMARY KEY,
    role text NOT NULL,
    apps text NOT NULL,
    digest text NOT NULL,
    revoked boolean NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    last_seq bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX tokens_by_digest ON tokens (digest);
-- The app list's pending approvals, counted per app without reading every plan.
CREATE INDEX plans_awaiting_approval ON plans (app) WHERE status = 'awaiting-approval';
