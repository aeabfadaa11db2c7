-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION canary" to load this file. \quit

-- Tables, views and types live in schema canary; functions are created in the
-- extension's schema so that applications call them without a prefix.
CREATE SCHEMA canary;
COMMENT ON SCHEMA canary IS 'canary rollouts: agents, rollouts, metrics and history';

--
-- Types
--

CREATE TYPE canary.status AS ENUM (
	'pending', 'running', 'paused', 'promoted', 'rolled_back', 'superseded'
);
COMMENT ON TYPE canary.status IS 'Lifecycle status of a rollout';

--
-- Agents
--

CREATE TABLE canary.agents (
	agent_id text PRIMARY KEY
		CHECK (agent_id <> '' AND pg_catalog.octet_length(agent_id) <= 255),
	organization_id text,
	stable_version text NOT NULL CHECK (stable_version <> ''),
	previous_stable_version text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE canary.agents IS 'Registered agents and the stable version that serves their traffic';

--
-- Rollouts
--

CREATE TABLE canary.deployments (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id text,
	agent_id text NOT NULL REFERENCES canary.agents (agent_id),
	baseline_version text NOT NULL,
	canary_version text NOT NULL,
	status canary.status NOT NULL DEFAULT 'pending',
	stages numeric(5,2)[] NOT NULL,
	current_stage integer NOT NULL DEFAULT 0,
	current_percentage numeric(5,2) NOT NULL DEFAULT 0,
	stage_duration interval NOT NULL,
	min_samples integer NOT NULL,
	success_rate_ratio double precision NOT NULL,
	p95_latency_ratio double precision NOT NULL,
	max_error_rate double precision NOT NULL,
	evaluation_window interval NOT NULL,
	warmup interval NOT NULL,
	success_statuses text[] NOT NULL,
	error_statuses text[] NOT NULL,
	metrics jsonb NOT NULL,
	analysis text NOT NULL CHECK (analysis IN ('sequential', 'threshold')),
	alpha double precision NOT NULL,
	failure_threshold integer NOT NULL,
	max_stage_failures integer NOT NULL,
	rollback_on_hard_limit boolean NOT NULL,
	nodata_deadline interval NOT NULL,
	nodata_action text NOT NULL CHECK (nodata_action IN ('pause', 'rollback')),
	inconclusive_action text NOT NULL
		CHECK (inconclusive_action IN ('pause', 'continue', 'rollback')),
	approval_stages integer[] NOT NULL,
	bake_time interval NOT NULL,
	status_reason text,
	created_by text NOT NULL DEFAULT current_user,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at timestamptz,
	stage_started_at timestamptz,
	completed_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	CHECK (canary_version <> baseline_version),
	CHECK (current_stage >= 0 AND current_stage <= pg_catalog.cardinality(stages)),
	CHECK (current_percentage >= 0 AND current_percentage <= 100)
);
COMMENT ON TABLE canary.deployments IS 'Rollouts of a canary version of an agent, one row per rollout';
COMMENT ON COLUMN canary.deployments.stages IS 'Traffic percentage of each stage, strictly increasing';
COMMENT ON COLUMN canary.deployments.current_stage IS 'Stage number counted from 1; 0 before the rollout starts';
COMMENT ON COLUMN canary.deployments.evaluation_window IS 'Span of execution log rows that one evaluation reads, ending at the evaluation time';
COMMENT ON COLUMN canary.deployments.warmup IS 'Delay after a stage starts before its rows count toward the stage''s verdict';
COMMENT ON COLUMN canary.deployments.success_statuses IS 'Execution statuses that count as success';
COMMENT ON COLUMN canary.deployments.error_statuses IS 'Execution statuses that count as errors; any other status is counted as unrecognized';
COMMENT ON COLUMN canary.deployments.metrics IS 'Extra numeric columns of the execution log to compare, with direction, tolerance and flags';
COMMENT ON COLUMN canary.deployments.analysis IS 'Judge: sequential (error-controlled over repeated looks) or threshold (fixed limits only)';
COMMENT ON COLUMN canary.deployments.alpha IS 'Largest probability of rolling back a healthy canary over the whole rollout';
COMMENT ON COLUMN canary.deployments.failure_threshold IS 'Consecutive unhealthy evaluations that roll the rollout back';
COMMENT ON COLUMN canary.deployments.max_stage_failures IS 'Unhealthy evaluations within one stage, consecutive or not, that roll the rollout back';
COMMENT ON COLUMN canary.deployments.rollback_on_hard_limit IS 'Roll back at the first breach of a fixed threshold, whatever failure_threshold says';
COMMENT ON COLUMN canary.deployments.nodata_deadline IS 'Time a stage may lack the minimum samples before nodata_action applies';
COMMENT ON COLUMN canary.deployments.approval_stages IS 'Stage numbers that wait for canary_approve() before they start';
COMMENT ON COLUMN canary.deployments.bake_time IS 'Time the canary serves all traffic under watch after the last stage, before promotion';

-- At most one active rollout per agent.
CREATE UNIQUE INDEX deployments_one_active_per_agent
	ON canary.deployments (agent_id)
	WHERE status IN ('pending', 'running', 'paused');

CREATE INDEX deployments_agent_created ON canary.deployments (agent_id, created_at);

SELECT pg_catalog.pg_extension_config_dump('canary.agents', '');
SELECT pg_catalog.pg_extension_config_dump('canary.deployments', '');
