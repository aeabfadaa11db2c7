--
-- Agents and rollouts
--

CREATE FUNCTION canary_register_agent(agent_id text, version text,
									  organization_id text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_register_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_register_agent(text, text, text) IS
'Register an agent with its stable version, or update them';

CREATE FUNCTION canary_create(
	agent_id text,
	canary_version text,
	stages numeric[] DEFAULT '{5,25,50,75,100}',
	stage_duration interval DEFAULT '30 minutes',
	min_samples integer DEFAULT 100,
	success_rate_ratio double precision DEFAULT 0.95,
	p95_latency_ratio double precision DEFAULT 1.10,
	max_error_rate double precision DEFAULT 0.02,
	organization_id text DEFAULT NULL,
	created_by text DEFAULT NULL,
	evaluation_window interval DEFAULT '10 minutes',
	warmup interval DEFAULT '0',
	success_statuses text[] DEFAULT '{success}',
	error_statuses text[] DEFAULT '{failed,error,timeout}',
	metrics jsonb DEFAULT '[]',
	analysis text DEFAULT 'sequential',
	alpha double precision DEFAULT 0.01,
	failure_threshold integer DEFAULT 1,
	max_stage_failures integer DEFAULT 3,
	rollback_on_hard_limit boolean DEFAULT false,
	nodata_deadline interval DEFAULT '1 hour',
	nodata_action text DEFAULT 'pause',
	inconclusive_action text DEFAULT 'pause',
	approval_stages integer[] DEFAULT '{}',
	bake_time interval DEFAULT '0',
	supersede boolean DEFAULT false,
	id uuid DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'canary_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_create(text, text, numeric[], interval, integer,
	double precision, double precision, double precision, text, text,
	interval, interval, text[], text[], jsonb, text, double precision,
	integer, integer, boolean, interval, text, text, integer[], interval,
	boolean, uuid) IS
'Create a pending rollout of a canary version of an agent; returns its id';

CREATE FUNCTION canary_start(id uuid, at timestamptz DEFAULT pg_catalog.now())
RETURNS void
AS 'MODULE_PATHNAME', 'canary_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_start(uuid, timestamptz) IS
'Start a pending rollout at its first stage';

--
-- Routing
--

-- A named result type rather than OUT parameters: the executor handles a
-- declared composite in FROM with less work per call than a record.
CREATE TYPE canary.route AS (version text, is_canary boolean);
COMMENT ON TYPE canary.route IS 'Result of canary_route: the version that serves a request, and whether it is the canary';

CREATE FUNCTION canary_route(agent_id text, request_id text,
							 user_id text DEFAULT NULL)
RETURNS canary.route
AS 'MODULE_PATHNAME', 'canary_route'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_route(text, text, text) IS
'Return the version that serves a request, and whether it is the canary';

CREATE FUNCTION canary_bucket(deployment_id uuid, key text)
RETURNS integer
AS 'MODULE_PATHNAME', 'canary_bucket'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION canary_bucket(uuid, text) IS
'Routing bucket in [0, 10000) of a key under a rollout';

CREATE FUNCTION canary.routing_invalidate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'canary_routing_invalidate_trigger'
LANGUAGE C;
COMMENT ON FUNCTION canary.routing_invalidate() IS
'Trigger that makes every backend drop its cached routing after a change commits';

-- Only changes of the columns that routing reads invalidate the caches, so
-- that evaluations, which update a rollout's counters on every tick, keep
-- them warm.
CREATE TRIGGER routing_invalidate
	AFTER INSERT OR UPDATE OF agent_id, stable_version OR DELETE OR TRUNCATE
	ON canary.agents
	FOR EACH STATEMENT EXECUTE FUNCTION canary.routing_invalidate();
CREATE TRIGGER routing_invalidate
	AFTER INSERT OR UPDATE OF id, agent_id, status, baseline_version,
		canary_version, current_percentage OR DELETE OR TRUNCATE
	ON canary.deployments
	FOR EACH STATEMENT EXECUTE FUNCTION canary.routing_invalidate();

--
-- Notifications
--

CREATE FUNCTION canary.notify_rollout_change()
RETURNS trigger
AS 'MODULE_PATHNAME', 'canary_notify_rollout_trigger'
LANGUAGE C;
COMMENT ON FUNCTION canary.notify_rollout_change() IS
'Trigger that notifies channel canary of a rollout''s status, stage or percentage change';

CREATE FUNCTION canary.notify_agent_change()
RETURNS trigger
AS 'MODULE_PATHNAME', 'canary_notify_agent_trigger'
LANGUAGE C;
COMMENT ON FUNCTION canary.notify_agent_change() IS
'Trigger that notifies channel canary of an agent''s stable version change';

CREATE TRIGGER notify_rollout_change
	AFTER INSERT OR UPDATE ON canary.deployments
	FOR EACH ROW EXECUTE FUNCTION canary.notify_rollout_change();
CREATE TRIGGER notify_agent_change
	AFTER INSERT OR UPDATE ON canary.agents
	FOR EACH ROW EXECUTE FUNCTION canary.notify_agent_change();
