-- Wake's read models: tables and their primary keys.
-- Applied into one schema (search_path is set to it) by services/projector/store.py.
-- Secondary indexes are in 002, so a replay can load rows first and index after.

CREATE TABLE projection_position (
    projection text PRIMARY KEY,
    last_seq bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    app text PRIMARY KEY,
    repo_url text NOT NULL,
    path text NOT NULL,
    ref text NOT NULL,
    namespace text NOT NULL,
    auto_sync boolean NOT NULL,
    removed boolean NOT NULL,
    registered_at timestamptz,
    sync_state text NOT NULL,
    health text NOT NULL,
    desired_commit text,
    desired_bundle text,
    current_commit text,
    current_plan_id text,
    last_applied_commit text,
    last_applied_bundle text,
    last_apply_id text,
    last_applied_at timestamptz,
    rolled_back boolean NOT NULL,
    rolled_back_to text,
    last_seq bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE revisions (
    revision_id text PRIMARY KEY,
    app text NOT NULL,
    correlation_id text NOT NULL,
    commit text NOT NULL,
    parent text,
    author text NOT NULL,
    author_email text NOT NULL,
    message text NOT NULL,
    committed_at timestamptz NOT NULL,
    trigger text NOT NULL,
    detected_seq bigint NOT NULL,
    detected_at timestamptz NOT NULL,
    render_status text NOT NULL,
    bundle_digest text,
    bundle_size bigint,
    renderer text,
    resource_count integer,
    render_error text
);

CREATE TABLE plans (
    plan_id text PRIMARY KEY,
    app text NOT NULL,
    correlation_id text NOT NULL,
    commit text NOT NULL,
    bundle_digest text NOT NULL,
    reason text NOT NULL,
    rollback_of text,
    needs_approval boolean NOT NULL,
    status text NOT NULL,
    creates integer NOT NULL,
    updates integer NOT NULL,
    unchanged integer NOT NULL,
    prunes integer NOT NULL,
    changes jsonb NOT NULL,
    prune jsonb NOT NULL,
    created_seq bigint NOT NULL,
    created_at timestamptz NOT NULL,
    superseded_by text,
    decided_at timestamptz,
    apply_id text
);

CREATE TABLE approvals (
    event_id text PRIMARY KEY,
    plan_id text NOT NULL,
    app text NOT NULL,
    decision text NOT NULL,
    actor text NOT NULL,
    via text NOT NULL,
    comment text NOT NULL,
    decided_at timestamptz NOT NULL,
    seq bigint NOT NULL
);

CREATE TABLE applies (
    apply_id text PRIMARY KEY,
    app text NOT NULL,
    plan_id text NOT NULL,
    correlation_id text NOT NULL,
    commit text NOT NULL,
    bundle_digest text NOT NULL,
    rollback_of text,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    resources_applied integer NOT NULL,
    inventory jsonb,
    error text,
    failed_resource text,
    started_seq bigint NOT NULL
);

CREATE TABLE resources (
    app text NOT NULL,
    api_version text NOT NULL,
    kind text NOT NULL,
    namespace text NOT NULL,
    name text NOT NULL,
    apply_id text NOT NULL,
    commit text NOT NULL,
    PRIMARY KEY (app, api_version, kind, namespace, name)
);

CREATE TABLE events (
    seq bigint PRIMARY KEY,
    event_id text NOT NULL,
    type text NOT NULL,
    app text NOT NULL,
    occurred_at timestamptz NOT NULL,
    correlation_id text NOT NULL,
    causation_id text,
    actor text NOT NULL
);
