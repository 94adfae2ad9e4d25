-- A lease token is held exactly while an operation runs: every way out of `running` clears it.
-- Statements fenced by the token may then leave out `status = 'running'`, which kept the planner
-- choosing the index of running operations (bloated by every operation that ran since the last
-- vacuum) over the primary key.
ALTER TABLE keel_operations
    ADD CONSTRAINT keel_operations_lease_while_running CHECK ((lease_token IS NOT NULL) = (status = 'running'));

-- The table churns: every operation leaves three dead row versions behind. Vacuum it as soon as
-- autovacuum visits (every autovacuum_naptime, a minute by default), at full speed, rather than
-- once a fifth of it is dead.
ALTER TABLE keel_operations SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
