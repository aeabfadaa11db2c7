-- Decision-quality benchmark: traffic models, rollout bookkeeping and the
-- simulation loop.  run.sh loads this file into a fresh database, then
-- calls canary_bench.work() from one session per worker.
--
-- Randomness: every draw is a pure function of (key, stream) through
-- hashint8extended, so a run's traffic depends only on its seed and not
-- on the order in which rows are generated.  Runs of both judges with the
-- same seed see the same arrival counts and the same per-request draws.
-- Only the split differs, because canary_route hashes the request id with
-- the rollout's own id.

CREATE EXTENSION canary;

CREATE SCHEMA canary_bench;

--
-- Random draws
--

-- Uniform draw in (0, 1) for a key and a stream.
CREATE FUNCTION canary_bench.uniform(key bigint, stream bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT ((pg_catalog.hashint8extended(key, stream) & 9007199254740991)::float8 + 0.5)
		/ 9007199254740992.0
$$;

-- Standard normal draw (Box-Muller) from streams 2 * pair and 2 * pair + 1.
CREATE FUNCTION canary_bench.normal(key bigint, pair bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT sqrt(-2.0 * ln(canary_bench.uniform(key, 2 * pair)))
		* cos(2.0 * pi() * canary_bench.uniform(key, 2 * pair + 1))
$$;

-- ln(k!), exact below 10 and by the Stirling series of ln Gamma(k + 1)
-- above, where the first omitted term is below 5e-9.
CREATE FUNCTION canary_bench.ln_factorial(k bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN k < 10 THEN
			ln(((ARRAY[1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880])[k + 1])::float8)
		ELSE
			(k + 0.5) * ln(k + 1.0) - (k + 1.0) + 0.5 * ln(2.0 * pi())
			+ 1.0 / (12.0 * (k + 1.0)) - 1.0 / (360.0 * (k + 1.0) ^ 3)
		END
$$;

-- Poisson draw with mean lambda: multiplication of uniforms below 10, and
-- the transformed rejection method with squeeze (PTRS) above.
CREATE FUNCTION canary_bench.poisson(lambda double precision, key bigint)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	draw integer := 0;
	product double precision := 1.0;
	slam double precision;
	b double precision;
	a double precision;
	inv_alpha double precision;
	v_r double precision;
	u double precision;
	v double precision;
	us double precision;
	k bigint;
BEGIN
	IF lambda <= 0 THEN
		RETURN 0;
	END IF;

	IF lambda < 10 THEN
		LOOP
			product := product * canary_bench.uniform(key, 1000 + draw);
			EXIT WHEN product <= exp(-lambda);
			draw := draw + 1;
		END LOOP;
		RETURN draw;
	END IF;

	slam := sqrt(lambda);
	b := 0.931 + 2.53 * slam;
	a := -0.059 + 0.02483 * b;
	inv_alpha := 1.1239 + 1.1328 / (b - 3.4);
	v_r := 0.9277 - 3.6224 / (b - 2.0);
	LOOP
		u := canary_bench.uniform(key, 1000 + 2 * draw) - 0.5;
		v := canary_bench.uniform(key, 1001 + 2 * draw);
		draw := draw + 1;
		us := 0.5 - abs(u);
		k := floor((2.0 * a / us + b) * u + lambda + 0.43);
		IF us >= 0.07 AND v <= v_r THEN
			RETURN k;
		END IF;
		CONTINUE WHEN k < 0 OR (us < 0.013 AND v > us);
		IF ln(v) + ln(inv_alpha) - ln(a / (us * us) + b)
			<= -lambda + k * ln(lambda) - canary_bench.ln_factorial(k) THEN
			RETURN k;
		END IF;
	END LOOP;
END;
$$;

--
-- Traffic models
--

-- Synthetic latency in ms: log-normal with median 800 ms and sigma 0.6.
-- For a heavy tail, 1% of requests are multiplied by a Pareto factor
-- (alpha 2, minimum 1), and every latency is capped at a 120 s timeout.
-- factor scales the whole distribution.  A share slow_fraction of the
-- requests above the log-normal median take slow_factor times as long, as
-- if only long requests reached a slow dependency, so the tail rises and
-- the median stays.
CREATE FUNCTION canary_bench.synthetic_latency(key bigint, factor double precision,
											   slow_fraction double precision,
											   slow_factor double precision)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT LEAST(120000, round(800.0 * exp(0.6 * z) * factor
		* CASE WHEN tail < 0.01 THEN (tail / 0.01) ^ (-0.5) ELSE 1.0 END
		* CASE WHEN z > 0 AND slow < slow_fraction THEN slow_factor ELSE 1.0 END))::integer
	FROM (SELECT canary_bench.normal(key, 0) AS z,
				 canary_bench.uniform(key, 5) AS tail,
				 canary_bench.uniform(key, 6) AS slow) draws
$$;

-- Latency in ms of a replayed LLM request: time to first token of 200 ms
-- plus 0.2 ms per context token, then 20 ms per generated token, times
-- log-normal noise with sigma 0.3.
CREATE FUNCTION canary_bench.trace_latency(key bigint, context_tokens integer,
										   generated_tokens integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT LEAST(120000, round((200.0 + 0.2 * context_tokens + 20.0 * generated_tokens)
		* exp(0.3 * canary_bench.normal(key, 0))))::integer
$$;

-- Scenarios: how the canary differs from the baseline.  source is
-- 'synthetic' (Poisson arrivals at the batch's rate) or 'trace' (replay of
-- canary_bench.trace).  slow_fraction of tail_p95_25 is set by run.sh's
-- calibration.
CREATE TABLE canary_bench.scenarios (
	scenario text PRIMARY KEY,
	position integer NOT NULL,
	label text NOT NULL,
	source text NOT NULL CHECK (source IN ('synthetic', 'trace')),
	error_factor double precision NOT NULL DEFAULT 1,
	latency_factor double precision NOT NULL DEFAULT 1,
	slow_fraction double precision NOT NULL DEFAULT 0,
	slow_factor double precision NOT NULL DEFAULT 3
);
INSERT INTO canary_bench.scenarios (scenario, position, label, source,
									error_factor, latency_factor)
VALUES ('aa', 1, 'A/A', 'synthetic', 1, 1),
	   ('errors_x1.5', 2, 'errors x1.5', 'synthetic', 1.5, 1),
	   ('errors_x2', 3, 'errors x2', 'synthetic', 2, 1),
	   ('errors_x5', 4, 'errors x5', 'synthetic', 5, 1),
	   ('latency_10', 5, 'latency +10%', 'synthetic', 1, 1.10),
	   ('latency_25', 6, 'latency +25%', 'synthetic', 1, 1.25),
	   ('tail_p95_25', 7, 'tail-only p95 +25%', 'synthetic', 1, 1),
	   ('trace_aa', 8, 'A/A, Azure LLM trace replay', 'trace', 1, 1);

-- Requests of the Azure LLM inference trace: seconds since its first
-- request and token counts.  run.sh loads it from data/conversation.csv.
CREATE TABLE canary_bench.trace (
	id integer PRIMARY KEY,
	offset_s double precision NOT NULL,
	context_tokens integer NOT NULL,
	generated_tokens integer NOT NULL
);
CREATE INDEX trace_offset ON canary_bench.trace (offset_s);

-- Error bursts shared by both versions of a run: minutes in which the
-- error rate is 3% instead of 1%.  A burst starts in a minute with
-- probability 1/120 and lasts a geometric number of minutes with mean 2.
CREATE TABLE canary_bench.bursts (
	seed bigint NOT NULL,
	minute integer NOT NULL,
	PRIMARY KEY (seed, minute)
);

-- Fill canary_bench.bursts for seeds first_seed .. last_seed over
-- minutes 1 .. minutes.
CREATE PROCEDURE canary_bench.make_bursts(first_seed bigint, last_seed bigint,
										  minutes integer)
LANGUAGE sql
AS $$
	INSERT INTO canary_bench.bursts (seed, minute)
	SELECT DISTINCT s.seed, start.minute + k
	FROM generate_series(first_seed, last_seed) s (seed)
	CROSS JOIN generate_series(1, minutes) start (minute)
	CROSS JOIN LATERAL (SELECT (s.seed * 100000 + start.minute) AS key) b
	CROSS JOIN LATERAL generate_series(0, floor(ln(canary_bench.uniform(b.key, 21)) / ln(0.5))::integer) k
	WHERE canary_bench.uniform(b.key, 20) < 1.0 / 120
	  AND start.minute + k <= minutes
	ON CONFLICT DO NOTHING;
$$;

--
-- Batches and runs
--

-- A batch is a chunk of runs of one rate, one judge and its scenarios.  A
-- worker simulates all its rollouts together, one simulated minute at a
-- time.
CREATE TABLE canary_bench.batches (
	id integer PRIMARY KEY,
	rate integer NOT NULL,
	judge text NOT NULL,
	scenarios text[] NOT NULL,
	runs integer NOT NULL,
	first_seed bigint NOT NULL,
	worker integer,
	started_at timestamptz,
	finished_at timestamptz,
	log_rows bigint NOT NULL DEFAULT 0,
	evaluations bigint NOT NULL DEFAULT 0
);

-- One simulated rollout.  outcome is rollback, promote or pause when the
-- rollout ended, 'running' when the simulation's time ran out, and NULL
-- while it runs.  outcome_stage is the stage it was in when it ended.
CREATE TABLE canary_bench.runs (
	run_id serial PRIMARY KEY,
	batch_id integer NOT NULL REFERENCES canary_bench.batches,
	scenario text NOT NULL REFERENCES canary_bench.scenarios,
	rate integer NOT NULL,
	judge text NOT NULL,
	seed bigint NOT NULL,
	agent_id text NOT NULL UNIQUE,
	deployment_id uuid,
	trace_start_s double precision,
	stage integer NOT NULL DEFAULT 1,
	outcome text,
	outcome_stage integer,
	outcome_minute integer,
	outcome_reason text,
	pause_kind text
);
CREATE INDEX runs_batch_active ON canary_bench.runs (batch_id) WHERE outcome IS NULL;

-- Simulated start time of every rollout; all clocks are passed as "at".
CREATE FUNCTION canary_bench.start_time()
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$ SELECT '2030-01-07 00:00:00+00'::timestamptz $$;

--
-- Execution log
--

-- Create a worker's execution log with the covering index of
-- canary_create_execution_log_table().  It is partitioned by 10 simulated
-- minutes so that clearing it after a batch drops tables instead of
-- deleting rows.
CREATE PROCEDURE canary_bench.create_log(log_table text)
LANGUAGE plpgsql
AS $$
BEGIN
	EXECUTE format('CREATE TABLE canary_bench.%I (agent_id text NOT NULL, '
				   'version text NOT NULL, status text, latency_ms integer, '
				   '"timestamp" timestamptz NOT NULL) PARTITION BY RANGE ("timestamp")',
				   log_table);
	EXECUTE format('CREATE INDEX ON canary_bench.%I (agent_id, version, "timestamp") '
				   'INCLUDE (status, latency_ms)', log_table);
END;
$$;

-- Create the log partition of minutes 10 * part + 1 .. 10 * part + 10.
-- NB: no partition may be dropped while its batch runs.  Without valid
-- stored evidence, such as at the first evaluation of an attempt, the
-- sequential judge reads every row since the attempt started.
-- min_samples counts the rows of the whole stage.  At 100% both judges
-- read the baseline's last window before the stage started.
CREATE PROCEDURE canary_bench.add_log_partition(log_table text, part integer)
LANGUAGE plpgsql
AS $$
BEGIN
	EXECUTE format('CREATE UNLOGGED TABLE canary_bench.%I PARTITION OF canary_bench.%I '
				   'FOR VALUES FROM (%L) TO (%L)',
				   log_table || '_' || part, log_table,
				   canary_bench.start_time() + part * interval '10 minutes',
				   canary_bench.start_time() + (part + 1) * interval '10 minutes');
END;
$$;

-- Drop every partition of a worker's log.
CREATE PROCEDURE canary_bench.clear_log(log_table text)
LANGUAGE plpgsql
AS $$
DECLARE
	old record;
BEGIN
	FOR old IN
		SELECT c.relname
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = format('canary_bench.%I', log_table)::regclass
	LOOP
		EXECUTE format('DROP TABLE canary_bench.%I', old.relname);
	END LOOP;
END;
$$;

--
-- Simulation
--

-- Write one simulated minute of traffic of every running rollout of a
-- batch.  Each request is routed with canary_route(); its status and
-- latency depend on the version it got.  Returns the rows written.
CREATE FUNCTION canary_bench.write_traffic(log_table text, batch integer,
										   sim_minute integer, eval_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	written bigint;
	trace_span double precision;
	synthetic bigint;
BEGIN
	EXECUTE format($sql$
		INSERT INTO canary_bench.%I (agent_id, version, status, latency_ms, "timestamp")
		SELECT r.agent_id, route.version,
			   CASE WHEN canary_bench.uniform(q.key, 3) <
						 CASE WHEN bu.seed IS NULL THEN 0.01 ELSE 0.03 END
						 * CASE WHEN route.is_canary THEN s.error_factor ELSE 1 END
					THEN 'error' ELSE 'success' END,
			   canary_bench.synthetic_latency(q.key,
					CASE WHEN route.is_canary THEN s.latency_factor ELSE 1 END,
					CASE WHEN route.is_canary THEN s.slow_fraction ELSE 0 END,
					s.slow_factor),
			   $1 - interval '1 minute' + canary_bench.uniform(q.key, 4) * interval '1 minute'
		FROM canary_bench.runs r
		JOIN canary_bench.scenarios s ON s.scenario = r.scenario AND s.source = 'synthetic'
		LEFT JOIN canary_bench.bursts bu ON bu.seed = r.seed AND bu.minute = $2
		CROSS JOIN LATERAL generate_series(1, canary_bench.poisson(r.rate, r.seed * 256 + $2)) i
		CROSS JOIN LATERAL (SELECT (r.seed * 256 + $2) * 4096 + i AS key) q
		CROSS JOIN LATERAL canary_route(r.agent_id, q.key::text) route
		WHERE r.batch_id = $3 AND r.outcome IS NULL
		$sql$, log_table) USING eval_at, sim_minute, batch;
	GET DIAGNOSTICS synthetic = ROW_COUNT;

	-- Trace replay: minute m of a run replays the trace from
	-- trace_start_s + 60 (m - 1) seconds on, wrapping around at the end.
	SELECT max(offset_s) + max(offset_s) / count(*) INTO trace_span FROM canary_bench.trace;
	EXECUTE format($sql$
		INSERT INTO canary_bench.%I (agent_id, version, status, latency_ms, "timestamp")
		SELECT r.agent_id, route.version,
			   CASE WHEN canary_bench.uniform(q.key, 3) <
						 CASE WHEN bu.seed IS NULL THEN 0.01 ELSE 0.03 END
					THEN 'error' ELSE 'success' END,
			   canary_bench.trace_latency(q.key, t.context_tokens, t.generated_tokens),
			   $1 - interval '1 minute'
			   + (t.offset_s - w.first_s + $4)::numeric %% $4::numeric * interval '1 second'
		FROM canary_bench.runs r
		JOIN canary_bench.scenarios s ON s.scenario = r.scenario AND s.source = 'trace'
		CROSS JOIN LATERAL (SELECT (r.trace_start_s + 60.0 * ($2 - 1))::numeric
							%% $4::numeric AS first_s) w0
		CROSS JOIN LATERAL (SELECT w0.first_s::float8 AS first_s) w
		JOIN canary_bench.trace t
		  ON (t.offset_s >= w.first_s AND t.offset_s < w.first_s + 60)
		  OR t.offset_s < w.first_s + 60 - $4
		LEFT JOIN canary_bench.bursts bu ON bu.seed = r.seed AND bu.minute = $2
		CROSS JOIN LATERAL (SELECT (r.seed * 256 + $2) * 32768 + t.id AS key) q
		CROSS JOIN LATERAL canary_route(r.agent_id, q.key::text) route
		WHERE r.batch_id = $3 AND r.outcome IS NULL
		$sql$, log_table) USING eval_at, sim_minute, batch, trace_span;
	GET DIAGNOSTICS written = ROW_COUNT;
	RETURN synthetic + written;
END;
$$;

-- Evaluate every running rollout of a batch at eval_at and record the ones
-- that ended.  Returns the number of evaluations.
CREATE FUNCTION canary_bench.evaluate_batch(batch integer, sim_minute integer,
											eval_at timestamptz)
RETURNS bigint
LANGUAGE sql
AS $$
	WITH evaluated AS (
		SELECT r.run_id, r.stage AS old_stage, e.decision, e.reason, e.stage
		FROM canary_bench.runs r
		CROSS JOIN LATERAL canary_evaluate(r.deployment_id, eval_at) e
		WHERE r.batch_id = batch AND r.outcome IS NULL
	), updated AS (
		UPDATE canary_bench.runs r
		SET stage = e.stage,
			outcome = CASE WHEN e.decision IN ('rollback', 'promote')
						   THEN e.decision END,
			outcome_stage = e.old_stage,
			outcome_minute = sim_minute,
			outcome_reason = e.reason
		FROM evaluated e
		WHERE r.run_id = e.run_id
		RETURNING 1
	)
	SELECT count(*) FROM updated;
$$;

-- Create, register and start the rollouts of a batch at the simulated
-- start time.
CREATE PROCEDURE canary_bench.start_batch(batch integer)
LANGUAGE plpgsql
AS $$
DECLARE
	trace_span double precision;
BEGIN
	SELECT max(offset_s) + max(offset_s) / count(*) INTO trace_span FROM canary_bench.trace;

	INSERT INTO canary_bench.runs (batch_id, scenario, rate, judge, seed, agent_id,
								   trace_start_s)
	SELECT b.id, s.scenario, b.rate, b.judge, b.first_seed + i - 1,
		   format('b%s-%s-%s', b.id, s.scenario, b.first_seed + i - 1),
		   floor(canary_bench.uniform(b.first_seed + i - 1, 30) * trace_span)
	FROM canary_bench.batches b
	JOIN canary_bench.scenarios s ON s.scenario = ANY (b.scenarios)
	CROSS JOIN generate_series(1, b.runs) i
	WHERE b.id = batch
	ORDER BY s.position, i;

	PERFORM canary_register_agent(agent_id, 'v1')
	FROM canary_bench.runs WHERE batch_id = batch;
	UPDATE canary_bench.runs
	SET deployment_id = canary_create(agent_id, 'v2', analysis => judge)
	WHERE batch_id = batch;
	PERFORM canary_start(deployment_id, canary_bench.start_time())
	FROM canary_bench.runs WHERE batch_id = batch;
END;
$$;

-- Simulate a batch minute by minute until every rollout ended or
-- max_minutes passed: write the minute's traffic, then evaluate at the
-- end of the minute.  Each minute commits.
CREATE PROCEDURE canary_bench.simulate_batch(batch integer, log_table text,
											 max_minutes integer)
LANGUAGE plpgsql
AS $$
DECLARE
	eval_at timestamptz;
	rows_written bigint := 0;
	evaluations_done bigint := 0;
	active bigint;
BEGIN
	CALL canary_bench.start_batch(batch);
	COMMIT;

	FOR sim_minute IN 1 .. max_minutes LOOP
		eval_at := canary_bench.start_time() + sim_minute * interval '1 minute';
		IF (sim_minute - 1) % 10 = 0 THEN
			CALL canary_bench.add_log_partition(log_table, (sim_minute - 1) / 10);
		END IF;
		rows_written := rows_written +
			canary_bench.write_traffic(log_table, batch, sim_minute, eval_at);
		evaluations_done := evaluations_done +
			canary_bench.evaluate_batch(batch, sim_minute, eval_at);
		COMMIT;

		SELECT count(*) INTO active FROM canary_bench.runs
		WHERE batch_id = batch AND outcome IS NULL;
		IF sim_minute % 10 = 0 OR active = 0 THEN
			RAISE NOTICE 'batch %: minute %, % rollouts running, % log rows, % evaluations',
				batch, sim_minute, active, rows_written, evaluations_done;
		END IF;
		EXIT WHEN active = 0;
	END LOOP;

	-- Rollouts still running or paused when the time ran out.  A paused
	-- rollout keeps its split and is evaluated every minute like a running
	-- one, since a proven regression still rolls it back.
	UPDATE canary_bench.runs r
	SET outcome = CASE WHEN d.status = 'paused' THEN 'pause' ELSE 'running' END,
		outcome_stage = r.stage, outcome_minute = max_minutes,
		outcome_reason = CASE WHEN d.status = 'paused' THEN d.status_reason
							  ELSE 'still running when the simulation stopped' END,
		pause_kind = d.pause_kind
	FROM canary.deployments d
	WHERE r.batch_id = batch AND r.deployment_id = d.id AND r.outcome IS NULL;
	UPDATE canary_bench.batches
	SET log_rows = rows_written, evaluations = evaluations_done,
		finished_at = clock_timestamp()
	WHERE id = batch;
	CALL canary_bench.clear_log(log_table);
	COMMIT;
END;
$$;

-- Worker loop: claim the next unclaimed batch and simulate it, until none
-- is left.  The session's canary.execution_log_table must name this
-- worker's log, canary_bench.log_<worker>.
CREATE PROCEDURE canary_bench.work(worker integer, max_minutes integer)
LANGUAGE plpgsql
AS $$
DECLARE
	batch integer;
BEGIN
	LOOP
		UPDATE canary_bench.batches b
		SET worker = work.worker, started_at = clock_timestamp()
		WHERE b.id = (SELECT q.id FROM canary_bench.batches q
					  WHERE q.worker IS NULL ORDER BY q.id
					  FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING b.id INTO batch;
		COMMIT;
		EXIT WHEN batch IS NULL;
		CALL canary_bench.simulate_batch(batch, 'log_' || worker, max_minutes);
	END LOOP;
END;
$$;
