-- Routing benchmark data and the PL/pgSQL reference router.
--
-- Agents "1" to "100" each have a rollout running at 25%: stages {25,50,100}
-- with stage durations and no-data deadlines of a day, so nothing advances
-- the rollouts while the benchmark runs.  Agent ids are decimal strings
-- because pgbench variables are integers.  Agent "stable-only" has no
-- rollout and is used by the correctness check only.  The execution log
-- table stays empty; it exists so that the background worker's evaluations
-- find it.

CREATE EXTENSION canary;

SELECT canary_create_execution_log_table();

SELECT canary_register_agent(g::text, 'v1')
FROM generate_series(1, 100) g;

SELECT canary_start(canary_create(g::text, 'v2',
								  stages => '{25,50,100}',
								  stage_duration => '1 day',
								  nodata_deadline => '1 day'))
FROM generate_series(1, 100) g;

SELECT canary_register_agent('stable-only', 'v1');

CREATE SCHEMA canary_bench;

--
-- Reference router, written the straightforward way: one query for the
-- agent and its active rollout, then the bucket from the builtin sha256().
-- The bucket is the first 4 bytes of SHA-256 over the UTF-8 string
-- "<rollout id>:<key>", big-endian, modulo 10000.  The request goes to the
-- canary when bucket / 100.0 is below the rollout's percentage.  The key is
-- the user id when given and not empty, else the request id.
--
CREATE FUNCTION canary_bench.plpgsql_route(p_agent_id text, p_request_id text,
										   p_user_id text DEFAULT NULL,
										   OUT version text,
										   OUT is_canary boolean)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	route record;
	hash_key text;
	digest bytea;
	bucket bigint;
BEGIN
	SELECT a.stable_version, d.id, d.baseline_version, d.canary_version,
		   d.current_percentage
	INTO route
	FROM canary.agents a
	LEFT JOIN canary.deployments d
		ON d.agent_id = a.agent_id AND d.status IN ('running', 'paused')
	WHERE a.agent_id = p_agent_id;

	IF NOT FOUND THEN
		RAISE EXCEPTION 'agent "%" is not registered', p_agent_id
			USING ERRCODE = 'undefined_object';
	END IF;

	IF route.id IS NULL THEN
		version := route.stable_version;
		is_canary := false;
		RETURN;
	END IF;

	hash_key := coalesce(nullif(p_user_id, ''), p_request_id);
	digest := sha256(convert_to(route.id::text || ':' || hash_key, 'UTF8'));
	bucket := ((get_byte(digest, 0)::bigint << 24) |
			   (get_byte(digest, 1)::bigint << 16) |
			   (get_byte(digest, 2)::bigint << 8) |
			   get_byte(digest, 3)::bigint) % 10000;
	is_canary := bucket / 100.0 < route.current_percentage;
	version := CASE WHEN is_canary THEN route.canary_version
				   ELSE route.baseline_version END;
END;
$$;
COMMENT ON FUNCTION canary_bench.plpgsql_route(text, text, text) IS
'PL/pgSQL reference router with the same bucket formula as canary_route';

--
-- Helpers of the cache-hit measurement
--

-- Sequential and index scans of canary.agents and canary.deployments in
-- the current transaction.  A routing cache miss reads these tables and a
-- hit does not.
CREATE FUNCTION canary_bench.routing_table_scans()
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
	SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::bigint
	FROM pg_catalog.pg_stat_xact_user_tables
	WHERE schemaname = 'canary' AND relname IN ('agents', 'deployments')
$$;

-- CPU time of this backend in nanoseconds: the first field of
-- /proc/self/schedstat on Linux.  The kernel updates it at scheduler ticks
-- and context switches, so a reading may lag by one tick (1 to 10 ms).
-- NULL where the file does not exist.
CREATE FUNCTION canary_bench.backend_cpu_ns()
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
	SELECT pg_catalog.split_part(
		pg_catalog.pg_read_file('/proc/self/schedstat', 0, 200, true),
		' ', 1)::bigint
$$;

-- Time a loop of "calls" canary_route calls for agent "1" (running rollout,
-- so every call hashes) and the same loop over the builtin textlen() on the
-- same key argument, "runs" times, alternating.  Returns per run the wall
-- clock and backend CPU time of each loop in milliseconds, and the table
-- scans made during the canary_route loop.
CREATE FUNCTION canary_bench.measure_cache_hit(runs integer, calls integer)
RETURNS TABLE (run integer,
			   baseline_ms double precision, route_ms double precision,
			   baseline_cpu_ms double precision, route_cpu_ms double precision,
			   table_scans bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	started timestamptz;
	cpu_started bigint;
	scans_before bigint;
	row_count bigint;
BEGIN
	-- Fill the cache for agent "1" before timing.
	PERFORM canary_route('1', 'warm-up');

	FOR i IN 1..runs LOOP
		run := i;

		started := clock_timestamp();
		cpu_started := canary_bench.backend_cpu_ns();
		EXECUTE 'SELECT count(pg_catalog.textlen(g::text)) '
				'FROM pg_catalog.generate_series(1, $1) g'
			INTO row_count USING calls;
		baseline_cpu_ms := (canary_bench.backend_cpu_ns() - cpu_started) / 1e6;
		baseline_ms := 1000 * extract(epoch FROM clock_timestamp() - started);

		scans_before := canary_bench.routing_table_scans();
		started := clock_timestamp();
		cpu_started := canary_bench.backend_cpu_ns();
		EXECUTE 'SELECT count(canary_route(''1'', ''r'', g::text)) '
				'FROM pg_catalog.generate_series(1, $1) g'
			INTO row_count USING calls;
		route_cpu_ms := (canary_bench.backend_cpu_ns() - cpu_started) / 1e6;
		route_ms := 1000 * extract(epoch FROM clock_timestamp() - started);
		table_scans := canary_bench.routing_table_scans() - scans_before;

		RETURN NEXT;
	END LOOP;
END;
$$;

--
-- Helpers of the call-form breakdown
--

-- The same C function as canary_route, declared to return a named composite
-- type instead of OUT parameters, to show what the declaration costs in a
-- FROM clause.
CREATE TYPE canary_bench.route_result AS (version text, is_canary boolean);
CREATE FUNCTION canary_bench.canary_route_named_type(agent_id text,
													 request_id text,
													 user_id text DEFAULT NULL)
RETURNS canary_bench.route_result
AS '$libdir/canary', 'canary_route'
LANGUAGE C STABLE PARALLEL SAFE;

-- Run each statement form "calls" times in a PL/pgSQL loop, whose static
-- statements use cached plans as pgbench -M prepared does, and return the
-- backend CPU time per execution in microseconds.  The forms run in turn,
-- "runs" times.  Each loop also pays PL/pgSQL's per-statement overhead, so
-- only differences between forms mean something.
CREATE FUNCTION canary_bench.measure_call_forms(runs integer, calls integer)
RETURNS TABLE (run integer, form text, cpu_us double precision)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	cpu_started bigint;
	agent text;
	request text;
	user_key text;
	version_out text;
	is_canary_out boolean;
	result_row record;
BEGIN
	FOR i IN 1..runs LOOP
		run := i;

		form := 'params_floor';
		cpu_started := canary_bench.backend_cpu_ns();
		FOR k IN 1..calls LOOP
			SELECT (k % 100 + 1)::text, k::text, (k * 7)::text
			INTO agent, request, user_key;
		END LOOP;
		cpu_us := (canary_bench.backend_cpu_ns() - cpu_started) / 1e3 / calls;
		RETURN NEXT;

		form := 'builtin_from';
		cpu_started := canary_bench.backend_cpu_ns();
		FOR k IN 1..calls LOOP
			SELECT * INTO version_out
			FROM pg_catalog.replace((k % 100 + 1)::text, k::text, (k * 7)::text);
		END LOOP;
		cpu_us := (canary_bench.backend_cpu_ns() - cpu_started) / 1e3 / calls;
		RETURN NEXT;

		form := 'route_select_list';
		cpu_started := canary_bench.backend_cpu_ns();
		FOR k IN 1..calls LOOP
			SELECT canary_route((k % 100 + 1)::text, k::text, (k * 7)::text)
			INTO result_row;
		END LOOP;
		cpu_us := (canary_bench.backend_cpu_ns() - cpu_started) / 1e3 / calls;
		RETURN NEXT;

		form := 'route_from';
		cpu_started := canary_bench.backend_cpu_ns();
		FOR k IN 1..calls LOOP
			SELECT * INTO version_out, is_canary_out
			FROM canary_route((k % 100 + 1)::text, k::text, (k * 7)::text);
		END LOOP;
		cpu_us := (canary_bench.backend_cpu_ns() - cpu_started) / 1e3 / calls;
		RETURN NEXT;

		form := 'route_named_type_from';
		cpu_started := canary_bench.backend_cpu_ns();
		FOR k IN 1..calls LOOP
			SELECT * INTO version_out, is_canary_out
			FROM canary_bench.canary_route_named_type((k % 100 + 1)::text,
													  k::text, (k * 7)::text);
		END LOOP;
		cpu_us := (canary_bench.backend_cpu_ns() - cpu_started) / 1e3 / calls;
		RETURN NEXT;
	END LOOP;
END;
$$;
