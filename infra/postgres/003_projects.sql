-- Projects (issue 10): each app's project, and every project's rules.

ALTER TABLE applications ADD COLUMN project text NOT NULL DEFAULT 'default';

CREATE TABLE projects (
    name text PRIMARY KEY,
    spec jsonb NOT NULL,
    removed boolean NOT NULL,
    last_seq bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
