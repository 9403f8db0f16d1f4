-- Secondary indexes of the read models: what `wake history`, `wake app show`
-- and the API look things up by. Separate from 001 so a replay creates them
-- once, after loading its rows.

CREATE INDEX revisions_by_app ON revisions (app, detected_seq);
CREATE INDEX revisions_by_correlation ON revisions (correlation_id);
CREATE INDEX plans_by_app ON plans (app, created_seq);
CREATE INDEX plans_by_correlation ON plans (correlation_id);
CREATE INDEX approvals_by_plan ON approvals (plan_id);
CREATE INDEX applies_by_app ON applies (app, started_seq);
CREATE INDEX applies_by_plan ON applies (plan_id);
CREATE INDEX events_by_app ON events (app, seq);
CREATE INDEX events_by_correlation ON events (correlation_id);
-- Not unique: JetStream dedupes an event id only within its duplicate window.
CREATE INDEX events_by_event_id ON events (event_id);
