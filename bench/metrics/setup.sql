-- Metrics collection benchmark: extension, log tables, agents and rollouts.
--
-- Variables: attempt_start, the start of every window measured.
--
-- Two execution log tables, both made by canary_create_execution_log_table():
-- public.agent_execution_logs contains one day of rows and
-- public.agent_execution_logs_2x the same day plus the day before, so the
-- windows contain the same rows in both and only the table size differs.
--
-- 100 agents, each with two rollouts of v2 at 5%:
-- - threshold_rollout, analysis 'threshold', started a day before
--   attempt_start and then superseded by the sequential one.  Collection does
--   not move the window start of a rollout that is not running, so this
--   rollout reads exactly (at - window, at].
-- - sequential_rollout, the default analysis 'sequential', running since
--   attempt_start.  With at = attempt_start + window it reads the same
--   window, and its sequential tests judge the rows since attempt_start,
--   which are the same rows, in the same pass.  canary_collect_metrics
--   never stores evidence, so every call judges every bucket.
-- Only one rollout per agent can be active, hence the superseded one.

CREATE EXTENSION canary;
CREATE EXTENSION pg_prewarm;

SELECT canary_create_execution_log_table();
SELECT canary_create_execution_log_table('public.agent_execution_logs_2x');

CREATE SCHEMA canary_bench;

CREATE TABLE canary_bench.agents (
	agent_id text PRIMARY KEY,
	threshold_rollout uuid,
	sequential_rollout uuid
);

INSERT INTO canary_bench.agents (agent_id)
SELECT 'agent-' || lpad(i::text, 3, '0') FROM generate_series(1, 100) i;

SELECT count(canary_register_agent(agent_id, 'v1')) FROM canary_bench.agents;

UPDATE canary_bench.agents
SET threshold_rollout = canary_create(agent_id, 'v2', analysis => 'threshold');
SELECT count(canary_start(threshold_rollout, :'attempt_start'::timestamptz - interval '1 day'))
FROM canary_bench.agents;

UPDATE canary_bench.agents
SET sequential_rollout = canary_create(agent_id, 'v2', supersede => true);
SELECT count(canary_start(sequential_rollout, :'attempt_start'::timestamptz))
FROM canary_bench.agents;

-- Results of the straightforward SQL, for the agreement check.
CREATE TABLE canary_bench.expected (
	config text NOT NULL,
	window_start timestamptz NOT NULL,
	window_end timestamptz NOT NULL,
	agent_id text NOT NULL,
	version text NOT NULL,
	requests bigint NOT NULL,
	successes bigint NOT NULL,
	errors bigint NOT NULL,
	p95 double precision
);

SELECT status::text, analysis, count(*) FROM canary.deployments
GROUP BY 1, 2 ORDER BY 1, 2;
