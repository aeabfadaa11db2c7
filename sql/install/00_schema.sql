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

-- At most one active rollout per agent.
CREATE UNIQUE INDEX deployments_one_active_per_agent
	ON canary.deployments (agent_id)
	WHERE status IN ('pending', 'running', 'paused');

CREATE INDEX deployments_agent_created ON canary.deployments (agent_id, created_at);

SELECT pg_catalog.pg_extension_config_dump('canary.agents', '');
SELECT pg_catalog.pg_extension_config_dump('canary.deployments', '');
