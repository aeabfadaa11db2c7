--
-- Metrics collection: execution log tables, windows, counts, percentiles,
-- hard limits, statistical verdicts, sample-ratio check and argument checks.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS canary;
RESET client_min_messages;
SET max_parallel_workers_per_gather = 0;
SET extra_float_digits = 0;
CREATE SCHEMA metrics_test;
SET search_path = metrics_test, public;

-- Print the SQLSTATE, message and hint of the error a statement raises.
CREATE FUNCTION metrics_error(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	message text;
	hint text;
BEGIN
	EXECUTE statement;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		hint = PG_EXCEPTION_HINT;
	RETURN state || ': ' || message || coalesce(' HINT: ' || nullif(hint, ''), '');
END
$$;

-- Every collection below ends at this time.
CREATE FUNCTION eval_at() RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT timestamptz '2024-03-01 12:00:00+00' $$;

-- Rollouts by scenario name; each scenario has its own agent, with stable
-- version v1 as the baseline and v2 as the canary.  They use the fixed
-- thresholds (analysis 'threshold'); sql/sequential.sql tests the
-- sequential judge.
CREATE TABLE rollouts (scenario text PRIMARY KEY, id uuid NOT NULL);

CREATE FUNCTION make_rollout(scenario text, stages numeric[] DEFAULT '{20,50,100}',
							 started interval DEFAULT '30 minutes',
							 warmup interval DEFAULT '0',
							 metrics jsonb DEFAULT '[]',
							 max_error_rate float8 DEFAULT 0.02,
							 start boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	rollout uuid;
BEGIN
	PERFORM canary_register_agent('metrics_' || scenario, 'v1');
	rollout := canary_create('metrics_' || scenario, 'v2', stages => stages,
							 warmup => warmup, metrics => metrics,
							 max_error_rate => max_error_rate,
							 analysis => 'threshold');
	INSERT INTO rollouts VALUES (scenario, rollout);
	IF start THEN
		PERFORM canary_start(rollout, eval_at() - started);
	END IF;
END
$$;

-- Write n executions of a scenario's version, evenly spaced over
-- (eval_at() + first, eval_at() + last].  Latency is log-normal with the
-- given median: exp(ln(median) + sigma * N(0,1)), N from Box-Muller.  Errors
-- cluster in bursts: the first tenth of every half of the span has four
-- times the average error rate, the rest a quarter of it.  The caller seeds
-- random() with setseed(), so the rows are the same on every run.
CREATE FUNCTION add_logs(scenario text, version text, n integer,
						 median float8 DEFAULT 800, error_rate float8 DEFAULT 0.01,
						 sigma float8 DEFAULT 0.6,
						 first interval DEFAULT '-10 minutes',
						 last interval DEFAULT '0',
						 score float8 DEFAULT NULL,
						 log_table text DEFAULT 'metrics_test.logs')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($sql$
		INSERT INTO %s (agent_id, version, status, latency_ms, "timestamp", eval_score)
		SELECT $1, $2,
			   CASE WHEN g.u3 < (CASE WHEN (g.i * 10 / $3) %% 5 = 0 THEN 4.0 ELSE 0.25 END) * $5
					THEN (ARRAY['failed', 'error', 'timeout'])[1 + g.i %% 3]
					ELSE 'success' END,
			   round(exp(ln($4) + $6 * sqrt(-2 * ln(1 - g.u1)) * cos(2 * pi() * g.u2))),
			   eval_at() + $7 + ((g.i - 0.5) / $3) * ($8 - $7),
			   CASE WHEN $9 IS NOT NULL
					THEN round((least(1, greatest(0, $9 + 0.1 * sqrt(-2 * ln(1 - g.u4)) * cos(2 * pi() * g.u5))))::numeric, 3)
			   END
		FROM (SELECT i, random() AS u1, random() AS u2, random() AS u3,
					 random() AS u4, random() AS u5
			  FROM generate_series(1, $3) AS i) AS g
		$sql$, log_table)
	USING 'metrics_' || scenario, version, n, median, error_rate, sigma,
		  first, last, score;
END
$$;

-- Collected rows by scenario, as canary_collect_metrics() returned them.
CREATE TABLE collected (scenario text PRIMARY KEY, m canary.metrics NOT NULL);

CREATE FUNCTION collect(scenario text, "window" interval DEFAULT '10 minutes')
RETURNS void LANGUAGE sql AS $$
	INSERT INTO collected
	SELECT r.scenario, canary_collect_metrics(r.id, "window", eval_at())
	FROM rollouts r WHERE r.scenario = collect.scenario
$$;

-- Figures of both versions, one line per figure.
CREATE FUNCTION figures(scenario text)
RETURNS TABLE (figure text, baseline text, canary text) LANGUAGE sql AS $$
	SELECT f.figure, f.baseline, f.canary
	FROM collected c, LATERAL (VALUES
		(1, 'requests', (c.m).baseline_requests::text, (c.m).canary_requests::text),
		(2, 'successes', (c.m).baseline_successes::text, (c.m).canary_successes::text),
		(3, 'errors', (c.m).baseline_errors::text, (c.m).canary_errors::text),
		(4, 'unrecognized', (c.m).baseline_unrecognized::text, (c.m).canary_unrecognized::text),
		(5, 'null_latency', (c.m).baseline_null_latency::text, (c.m).canary_null_latency::text),
		(6, 'success_rate', round((c.m).baseline_success_rate::numeric, 4)::text, round((c.m).canary_success_rate::numeric, 4)::text),
		(7, 'error_rate', round((c.m).baseline_error_rate::numeric, 4)::text, round((c.m).canary_error_rate::numeric, 4)::text),
		(8, 'p50', round((c.m).baseline_p50::numeric, 1)::text, round((c.m).canary_p50::numeric, 1)::text),
		(9, 'p95', round((c.m).baseline_p95::numeric, 1)::text, round((c.m).canary_p95::numeric, 1)::text),
		(10, 'p99', round((c.m).baseline_p99::numeric, 1)::text, round((c.m).canary_p99::numeric, 1)::text),
		(11, 'mean_latency', round((c.m).baseline_mean_latency::numeric, 1)::text, round((c.m).canary_mean_latency::numeric, 1)::text),
		(12, 'latency_sampled', (c.m).baseline_latency_sampled::text, (c.m).canary_latency_sampled::text)
	) AS f (n, figure, baseline, canary)
	WHERE c.scenario = figures.scenario
	ORDER BY f.n
$$;

-- Overall outcome of a collection.
CREATE FUNCTION outcome(scenario text)
RETURNS TABLE (verdict text, is_healthy boolean, hard_limit boolean,
			   baseline_unhealthy boolean, baseline_nodata boolean,
			   srm boolean, success_ratio numeric, p95_ratio numeric)
LANGUAGE sql AS $$
	SELECT (c.m).verdict, (c.m).is_healthy, (c.m).hard_limit_breached,
		   (c.m).baseline_unhealthy, (c.m).baseline_nodata,
		   (c.m).sample_ratio_mismatch,
		   round((c.m).success_rate_ratio::numeric, 4),
		   round((c.m).p95_latency_ratio::numeric, 4)
	FROM collected c WHERE c.scenario = outcome.scenario
$$;

-- Statistical verdict of each metric.
CREATE FUNCTION checks(scenario text)
RETURNS TABLE (metric text, verdict text, failed boolean, test text,
			   p_value text, effect numeric, relative_effect numeric,
			   tolerance numeric)
LANGUAGE sql AS $$
	SELECT d.key, d.value->>'verdict', (d.value->>'failed')::boolean,
		   d.value->>'test',
		   CASE WHEN (d.value->>'p_value')::float8 < 0.0001 THEN '< 0.0001'
				ELSE round((d.value->>'p_value')::numeric, 4)::text END,
		   round((d.value->>'effect')::numeric, 4),
		   round((d.value->>'relative_effect')::numeric, 4),
		   round((d.value->>'tolerance')::numeric, 4)
	FROM collected c, jsonb_each((c.m).details->'metrics') AS d
	WHERE c.scenario = checks.scenario
	ORDER BY d.key
$$;

-- Reasons of a collection, one per line.
CREATE FUNCTION reasons(scenario text) RETURNS SETOF text
LANGUAGE sql AS $$
	SELECT r FROM collected c, unnest((c.m).reasons) WITH ORDINALITY AS u (r, n)
	WHERE c.scenario = reasons.scenario ORDER BY n
$$;

--
-- Execution log tables
--

-- The recommended table and its covering index.
SELECT canary_create_execution_log_table('metrics_test.logs');
ALTER TABLE logs ADD COLUMN eval_score numeric, ADD COLUMN cost_usd float8;
SELECT indexdef FROM pg_indexes WHERE schemaname = 'metrics_test' AND tablename = 'logs';

-- The setting names the table; its default is public.agent_execution_logs.
SHOW canary.execution_log_table;
SELECT setting, context FROM pg_settings WHERE name = 'canary.execution_log_table';
SET canary.execution_log_table = 'metrics_test.logs';

--
-- Healthy canary: same distributions, 20% of the traffic.
--
SELECT setseed(0.11);
SELECT make_rollout('healthy');
SELECT add_logs('healthy', 'v1', 1600);
SELECT add_logs('healthy', 'v2', 400);
SELECT collect('healthy');
SELECT * FROM figures('healthy');
SELECT * FROM outcome('healthy');
SELECT * FROM checks('healthy');
SELECT * FROM reasons('healthy');

-- Stored window and stage, and the summary as jsonb.
SELECT (m).stage, (m).percentage, (m).window_end - (m).window_start AS window_length,
	   (m).window_end = eval_at() AS ends_at_eval,
	   round((m).expected_canary_share::numeric, 4) AS expected_share,
	   round((m).observed_canary_share::numeric, 4) AS observed_share
FROM collected WHERE scenario = 'healthy';

-- The stored tests are the SQL primitives applied to the window's rows:
-- U, z, p-value and shift of the latency, and the error rate's Fisher test
-- (its counts are too small for the z test).  Stored numbers read back
-- exactly even with extra_float_digits = 0, which this file sets.
WITH w AS (
	SELECT version, array_agg(latency_ms::float8) AS latencies, count(*) AS requests,
		   count(*) FILTER (WHERE status IN ('failed', 'error', 'timeout')) AS errors
	FROM logs
	WHERE agent_id = 'metrics_healthy'
	  AND "timestamp" > eval_at() - interval '10 minutes' AND "timestamp" <= eval_at()
	GROUP BY version
), canary AS (SELECT * FROM w WHERE version = 'v2'),
baseline AS (SELECT * FROM w WHERE version = 'v1'),
stored AS (SELECT (m).details->'metrics' AS metrics FROM collected WHERE scenario = 'healthy')
SELECT (s.metrics->'latency_ms'->>'statistic')::float8 = u.u AS u_matches,
	   (s.metrics->'latency_ms'->>'z')::float8 = u.z AS z_matches,
	   (s.metrics->'latency_ms'->>'p_value')::float8 = coalesce(u.p_exact, u.p_value) AS p_value_matches,
	   (s.metrics->'latency_ms'->>'effect')::float8 =
		   canary_hodges_lehmann(c.latencies, b.latencies) AS shift_matches,
	   s.metrics->'error_rate'->>'test' AS error_test,
	   (s.metrics->'error_rate'->>'p_value')::float8 = f.p_value AS fisher_p_value_matches
FROM stored s, canary c, baseline b,
	 canary_mann_whitney(c.latencies, b.latencies) AS u,
	 canary_fisher_exact(c.errors, c.requests, b.errors, b.requests) AS f;

--
-- Doubled error rate (3% to 6%) under a loose fixed limit of 10%: the
-- two-proportion test alone catches it.
--
SELECT setseed(0.22);
SELECT make_rollout('errors_doubled', stages => '{50,100}', max_error_rate => 0.10);
SELECT add_logs('errors_doubled', 'v1', 1500, error_rate => 0.03);
SELECT add_logs('errors_doubled', 'v2', 1500, error_rate => 0.06);
SELECT collect('errors_doubled');
SELECT * FROM figures('errors_doubled') WHERE figure IN ('requests', 'errors', 'error_rate');
SELECT * FROM outcome('errors_doubled');
SELECT * FROM checks('errors_doubled');
SELECT * FROM reasons('errors_doubled');

-- Doubled error rate (2% to 4%) under the default limit of 2%: the fixed
-- limit breaks, and the baseline, a little above 2% in this window, is
-- flagged as breaking it too.
SELECT setseed(0.23);
SELECT make_rollout('errors_limit');
SELECT add_logs('errors_limit', 'v1', 2000, error_rate => 0.02);
SELECT add_logs('errors_limit', 'v2', 500, error_rate => 0.04);
SELECT collect('errors_limit');
SELECT * FROM figures('errors_limit') WHERE figure IN ('requests', 'errors', 'error_rate');
SELECT * FROM outcome('errors_limit');
SELECT * FROM reasons('errors_limit');

--
-- p95 latency regression: canary median 1200 ms against 800 ms.
--
SELECT setseed(0.33);
SELECT make_rollout('latency');
SELECT add_logs('latency', 'v1', 1600);
SELECT add_logs('latency', 'v2', 400, median => 1200);
SELECT collect('latency');
SELECT * FROM figures('latency') WHERE figure IN ('p50', 'p95', 'p99');
SELECT * FROM outcome('latency');
SELECT * FROM checks('latency') WHERE metric = 'latency_ms';
SELECT * FROM reasons('latency');

--
-- A 4% latency shift is significant with 2000 rows each, but within the
-- tolerance of 10% (p95_latency_ratio 1.10), so it passes.
--
SELECT setseed(0.44);
SELECT make_rollout('small_shift', stages => '{50,100}');
SELECT add_logs('small_shift', 'v1', 2000, sigma => 0.2);
SELECT add_logs('small_shift', 'v2', 2000, median => 832, sigma => 0.2);
SELECT collect('small_shift');
SELECT * FROM outcome('small_shift');
SELECT * FROM checks('small_shift') WHERE metric = 'latency_ms';
SELECT * FROM reasons('small_shift');

--
-- No canary rows: nodata, with NULL rates and percentiles.  The split
-- check flags the missing canary traffic.
--
SELECT setseed(0.55);
SELECT make_rollout('no_canary');
SELECT add_logs('no_canary', 'v1', 500);
SELECT collect('no_canary');
SELECT * FROM figures('no_canary');
SELECT * FROM outcome('no_canary');
SELECT * FROM checks('no_canary');
SELECT * FROM reasons('no_canary');

--
-- 500 canary rows without an error: error rate 0 and a pass.
--
SELECT setseed(0.66);
SELECT make_rollout('zero_errors', stages => '{50,100}');
SELECT add_logs('zero_errors', 'v1', 500, error_rate => 0.01);
SELECT add_logs('zero_errors', 'v2', 500, error_rate => 0);
SELECT collect('zero_errors');
SELECT * FROM figures('zero_errors') WHERE figure IN ('requests', 'errors', 'error_rate');
SELECT * FROM outcome('zero_errors');
SELECT * FROM checks('zero_errors') WHERE metric = 'error_rate';

--
-- No baseline rows: nodata with NULL ratios, never a made-up 1.0.  The
-- split is off too, since the canary served every request at 50%.
--
SELECT setseed(0.77);
SELECT make_rollout('no_baseline', stages => '{50,100}');
SELECT add_logs('no_baseline', 'v2', 500);
SELECT collect('no_baseline');
SELECT * FROM figures('no_baseline') WHERE figure IN ('requests', 'success_rate', 'p95');
SELECT * FROM outcome('no_baseline');
SELECT * FROM reasons('no_baseline');

-- Without a baseline, a canary that breaks the error rate limit is still
-- nodata, but not healthy.
SELECT setseed(0.78);
SELECT make_rollout('no_baseline_errors', stages => '{50,100}');
SELECT add_logs('no_baseline_errors', 'v2', 200, error_rate => 0.2);
SELECT collect('no_baseline_errors');
SELECT * FROM figures('no_baseline_errors') WHERE figure IN ('requests', 'errors', 'error_rate');
SELECT * FROM outcome('no_baseline_errors');
SELECT * FROM reasons('no_baseline_errors');

--
-- NULL latency, NULL status and unrecognized statuses are counted.
--
SELECT setseed(0.88);
SELECT make_rollout('oddities');
SELECT add_logs('oddities', 'v1', 800);
SELECT add_logs('oddities', 'v2', 200);
UPDATE logs SET status = 'cancelled'
WHERE agent_id = 'metrics_oddities' AND version = 'v2'
  AND "timestamp" > eval_at() - interval '1 minute';
UPDATE logs SET status = NULL
WHERE agent_id = 'metrics_oddities' AND version = 'v2'
  AND "timestamp" BETWEEN eval_at() - interval '3 minutes' AND eval_at() - interval '2 minutes';
UPDATE logs SET latency_ms = NULL
WHERE agent_id = 'metrics_oddities' AND version = 'v1'
  AND "timestamp" <= eval_at() - interval '9 minutes';
SELECT collect('oddities');
SELECT * FROM figures('oddities') WHERE figure IN ('requests', 'successes', 'errors', 'unrecognized', 'null_latency', 'success_rate');

-- Unrecognized statuses are not successes, so the canary's success rate
-- falls below 0.95 of the baseline's and that hard limit fails.
SELECT * FROM outcome('oddities');
SELECT * FROM reasons('oddities');

--
-- A rollout's own status mapping: 'ok' counts as a success and 'boom' as
-- an error, so the default statuses of the older rows are unrecognized.
--
SELECT setseed(0.89);
SELECT canary_register_agent('metrics_mapping', 'v1');
INSERT INTO rollouts
SELECT 'mapping', canary_create('metrics_mapping', 'v2', stages => '{20,50,100}',
								analysis => 'threshold', success_statuses => '{ok}',
								error_statuses => '{boom}');
SELECT canary_start(id, eval_at() - interval '30 minutes') FROM rollouts WHERE scenario = 'mapping';
SELECT add_logs('mapping', 'v1', 800, error_rate => 0.05);
SELECT add_logs('mapping', 'v2', 200, error_rate => 0.05);
UPDATE logs SET status = CASE status WHEN 'success' THEN 'ok' ELSE 'boom' END
WHERE agent_id = 'metrics_mapping' AND "timestamp" > eval_at() - interval '6 minutes';
SELECT collect('mapping');
SELECT * FROM figures('mapping') WHERE figure IN ('requests', 'successes', 'errors', 'unrecognized');
SELECT (c.m).baseline_successes = count(*) FILTER (WHERE l.version = 'v1' AND l.status = 'ok') AS baseline_successes_match,
	   (c.m).baseline_errors = count(*) FILTER (WHERE l.version = 'v1' AND l.status = 'boom') AS baseline_errors_match,
	   (c.m).canary_successes = count(*) FILTER (WHERE l.version = 'v2' AND l.status = 'ok') AS canary_successes_match,
	   (c.m).canary_errors = count(*) FILTER (WHERE l.version = 'v2' AND l.status = 'boom') AS canary_errors_match,
	   (c.m).canary_unrecognized = count(*) FILTER (WHERE l.version = 'v2' AND l.status NOT IN ('ok', 'boom')) AS canary_unrecognized_match
FROM collected c, logs l
WHERE c.scenario = 'mapping' AND l.agent_id = 'metrics_mapping'
  AND l."timestamp" > eval_at() - interval '10 minutes' AND l."timestamp" <= eval_at()
GROUP BY c.m;

--
-- Rows before the stage started do not count: the stage started 5 minutes
-- before the evaluation, and every earlier row is an error.
--
SELECT setseed(0.99);
SELECT make_rollout('stage_start', started => '5 minutes');
SELECT add_logs('stage_start', 'v1', 400, error_rate => 1.0, last => '-5 minutes');
SELECT add_logs('stage_start', 'v2', 100, error_rate => 1.0, last => '-5 minutes');
SELECT add_logs('stage_start', 'v1', 800, first => '-5 minutes');
SELECT add_logs('stage_start', 'v2', 200, first => '-5 minutes');
SELECT collect('stage_start');
SELECT * FROM figures('stage_start') WHERE figure IN ('requests', 'errors');
SELECT (m).window_end - (m).window_start AS window_length
FROM collected WHERE scenario = 'stage_start';
SELECT * FROM outcome('stage_start');

--
-- Warmup: rows within 2 minutes of the stage start do not count either.
--
SELECT setseed(0.12);
SELECT make_rollout('warmup', started => '5 minutes', warmup => '2 minutes');
SELECT add_logs('warmup', 'v1', 1000);
SELECT add_logs('warmup', 'v2', 250);
SELECT collect('warmup');
SELECT * FROM figures('warmup') WHERE figure = 'requests';
SELECT (m).window_end - (m).window_start AS window_length
FROM collected WHERE scenario = 'warmup';

-- A pending rollout reads the whole window: [at - window, at].
SELECT setseed(0.13);
SELECT make_rollout('pending', start => false);
SELECT add_logs('pending', 'v1', 300);
SELECT collect('pending', '5 minutes');
SELECT * FROM figures('pending') WHERE figure = 'requests';
SELECT (m).stage, (m).window_end - (m).window_start AS window_length, (m).verdict
FROM collected WHERE scenario = 'pending';

--
-- Sample-ratio mismatch: the rollout routes 20% to the canary, which served
-- half of the requests.
--
SELECT setseed(0.14);
SELECT make_rollout('srm');
SELECT add_logs('srm', 'v1', 500);
SELECT add_logs('srm', 'v2', 500);
SELECT collect('srm');
SELECT * FROM outcome('srm');
SELECT round((m).observed_canary_share::numeric, 4) AS observed_share,
	   (m).sample_ratio_p_value < 0.001 AS significant
FROM collected WHERE scenario = 'srm';
SELECT * FROM reasons('srm');

--
-- Extra metric: an evaluation score 15% lower in the canary, where a
-- decrease is bad and 5% is tolerated.
--
SELECT setseed(0.15);
SELECT make_rollout('eval_score', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": 0.05}]');
SELECT add_logs('eval_score', 'v1', 1600, score => 0.80);
SELECT add_logs('eval_score', 'v2', 400, score => 0.68);
SELECT collect('eval_score');
SELECT * FROM outcome('eval_score');
SELECT * FROM checks('eval_score');
SELECT * FROM reasons('eval_score');
SELECT jsonb_pretty((m).details->'metrics'->'eval_score'->'canary')
FROM collected WHERE scenario = 'eval_score';

-- The same drop on a critical metric also counts as a hard-limit breach.
SELECT setseed(0.15);
SELECT make_rollout('critical', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": 0.05, "critical": true}]');
SELECT add_logs('critical', 'v1', 1600, score => 0.80);
SELECT add_logs('critical', 'v2', 400, score => 0.68);
SELECT collect('critical');
SELECT * FROM outcome('critical');
SELECT * FROM reasons('critical');

-- An increase of a decrease_is_bad metric is reported as high and passes.
SELECT setseed(0.16);
SELECT make_rollout('score_up', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": 0.05}]');
SELECT add_logs('score_up', 'v1', 1600, score => 0.70);
SELECT add_logs('score_up', 'v2', 400, score => 0.85);
SELECT collect('score_up');
SELECT * FROM outcome('score_up');
SELECT * FROM checks('score_up') WHERE metric = 'eval_score';

-- Metrics without data: a must_have_data metric fails, any other one is
-- left out of the verdict and the reason says so.
SELECT setseed(0.17);
SELECT make_rollout('must_have_data', metrics => '[{"column": "cost_usd", "direction": "increase_is_bad", "must_have_data": true}, {"column": "eval_score", "direction": "decrease_is_bad"}]');
SELECT add_logs('must_have_data', 'v1', 1600, sigma => 0.3);
SELECT add_logs('must_have_data', 'v2', 400, sigma => 0.3);
SELECT collect('must_have_data');
SELECT * FROM outcome('must_have_data');
SELECT * FROM checks('must_have_data');
SELECT * FROM reasons('must_have_data');

SELECT setseed(0.17);
SELECT make_rollout('optional_nodata', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad"}]');
SELECT add_logs('optional_nodata', 'v1', 1600, sigma => 0.3);
SELECT add_logs('optional_nodata', 'v2', 400, sigma => 0.3);
SELECT collect('optional_nodata');
SELECT * FROM outcome('optional_nodata');
SELECT * FROM reasons('optional_nodata');

--
-- Above 10000 latencies per version, percentiles come from a uniform
-- sample with a fixed seed: flagged, and the same on every collection.
--
SELECT setseed(0.18);
SELECT make_rollout('sampled', stages => '{50,100}');
SELECT add_logs('sampled', 'v1', 12000);
SELECT add_logs('sampled', 'v2', 12000);
SELECT collect('sampled');
SELECT * FROM figures('sampled') WHERE figure IN ('requests', 'p50', 'p95', 'mean_latency', 'latency_sampled');
SELECT * FROM outcome('sampled');
SELECT (m).canary_p95 = (again).canary_p95 AS same_p95,
	   (m).baseline_p99 = (again).baseline_p99 AS same_p99,
	   (m).details = (again).details AS same_details
FROM collected,
	 LATERAL (SELECT canary_collect_metrics(r.id, '10 minutes', eval_at()) AS again
			  FROM rollouts r WHERE r.scenario = 'sampled') AS a
WHERE scenario = 'sampled';

--
-- A partitioned log table, named through the setting without a schema
-- (schema public is implied).
--
SELECT canary_create_execution_log_table('metrics_daily_logs', partitioned => true);
SELECT count(*) AS partitions_around_now FROM pg_inherits
WHERE inhparent = 'public.metrics_daily_logs'::regclass;
SELECT canary_add_execution_log_partitions('metrics_daily_logs', '2024-02-29', '2024-03-01') AS created;
SELECT canary_add_execution_log_partitions('metrics_daily_logs', '2024-02-29', '2024-03-01') AS created_again;
ALTER TABLE public.metrics_daily_logs ADD COLUMN eval_score numeric;
SET canary.execution_log_table = 'metrics_daily_logs';
SELECT setseed(0.19);
SELECT make_rollout('partitioned');
SELECT add_logs('partitioned', 'v1', 1600, log_table => 'public.metrics_daily_logs');
SELECT add_logs('partitioned', 'v2', 400, log_table => 'public.metrics_daily_logs');
SELECT collect('partitioned');
SELECT * FROM figures('partitioned') WHERE figure IN ('requests', 'errors', 'p95');
SELECT * FROM outcome('partitioned');
SELECT tableoid::regclass AS partition, count(*) FROM public.metrics_daily_logs
GROUP BY 1 ORDER BY 1;

-- A collection plans its read of a partitioned table with the window's
-- values, so it locks only the partition that holds the window, not all
-- of them.
BEGIN;
SELECT canary_collect_metrics(id, '10 minutes', eval_at()) IS NOT NULL AS collected
FROM rollouts WHERE scenario = 'partitioned';
SELECT count(*) AS partitions_locked,
	   (SELECT count(*) FROM pg_inherits
		WHERE inhparent = 'public.metrics_daily_logs'::regclass) > 10 AS more_than_ten_exist
FROM pg_locks l JOIN pg_inherits i ON i.inhrelid = l.relation
WHERE l.pid = pg_backend_pid() AND i.inhparent = 'public.metrics_daily_logs'::regclass;
ROLLBACK;
SET canary.execution_log_table = 'metrics_test.logs';

--
-- The per-version query reads the window through the covering index.
--
VACUUM ANALYZE logs;
PREPARE window_rows (text, text, timestamptz, timestamptz, text[], text[]) AS
SELECT CASE WHEN status::text = ANY ($5) THEN 1
			WHEN status::text = ANY ($6) THEN 2 ELSE 0 END,
	   latency_ms::float8
FROM metrics_test.logs
WHERE agent_id = $1 AND version = $2 AND "timestamp" > $3 AND "timestamp" <= $4
ORDER BY "timestamp";
EXPLAIN (COSTS OFF)
EXECUTE window_rows ('metrics_healthy', 'v2', eval_at() - interval '10 minutes',
					 eval_at(), '{success}', '{failed,error,timeout}');

-- A collection's own reads: one scan of the evaluation index per version,
-- and no sequential scan of the log table.  The statistics views count
-- this backend's scans once they are flushed after a statement outside a
-- transaction block.  The collection is rolled back, so it stores nothing.
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS index_scans_before FROM pg_stat_user_indexes
WHERE schemaname = 'metrics_test' AND indexrelname = 'logs_evaluation' \gset
SELECT seq_scan AS table_scans_before FROM pg_stat_user_tables
WHERE schemaname = 'metrics_test' AND relname = 'logs' \gset
BEGIN;
SELECT canary_collect_metrics(id, '10 minutes', eval_at()) IS NOT NULL AS collected
FROM rollouts WHERE scenario = 'healthy';
ROLLBACK;
SELECT pg_stat_force_next_flush();
SELECT i.idx_scan - :index_scans_before AS index_scans,
	   t.seq_scan - :table_scans_before AS table_scans
FROM pg_stat_user_indexes i, pg_stat_user_tables t
WHERE i.schemaname = 'metrics_test' AND i.indexrelname = 'logs_evaluation'
  AND t.schemaname = 'metrics_test' AND t.relname = 'logs';

--
-- A plain log table with the evaluation index is read through the index
-- directly, not with SQL.  Both reads give the same figures: each scenario
-- is collected from logs and from logs_by_sql, which contains the same rows
-- under an index that only SQL can use ("timestamp" descending).  The
-- tables differ from their vacuumed state by updated, deleted and new rows,
-- so some rows are checked against the heap.  eval_score, an extra metric
-- that the index does not hold, is read from the heap; logs_numeric has a
-- numeric latency_ms.
--
CREATE TABLE logs_by_sql (LIKE logs);
INSERT INTO logs_by_sql SELECT * FROM logs;
CREATE INDEX ON logs_by_sql (agent_id, version, "timestamp" DESC);
VACUUM ANALYZE logs_by_sql;
SELECT canary_create_execution_log_table('metrics_test.logs_numeric');
ALTER TABLE logs_numeric ALTER COLUMN latency_ms TYPE numeric,
	ADD COLUMN eval_score numeric, ADD COLUMN cost_usd float8;
INSERT INTO logs_numeric SELECT agent_id, version, status, latency_ms + 0.25,
	"timestamp", eval_score, cost_usd FROM logs;
CREATE TABLE logs_numeric_by_sql (LIKE logs_numeric);
INSERT INTO logs_numeric_by_sql SELECT * FROM logs_numeric;
VACUUM ANALYZE logs_numeric, logs_numeric_by_sql;

-- Under a case-insensitive collation, agent 'METRICS_HEALTHY' is agent
-- 'metrics_healthy' for the direct read too.
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2',
								   deterministic = false);
CREATE TABLE logs_case_insensitive (LIKE logs);
ALTER TABLE logs_case_insensitive
	ALTER COLUMN agent_id TYPE text COLLATE case_insensitive;
INSERT INTO logs_case_insensitive
SELECT CASE WHEN latency_ms % 2 = 0 THEN upper(agent_id) ELSE agent_id END,
	   version, status, latency_ms, "timestamp", eval_score, cost_usd
FROM logs;
CREATE TABLE logs_case_insensitive_by_sql (LIKE logs_case_insensitive);
INSERT INTO logs_case_insensitive_by_sql SELECT * FROM logs_case_insensitive;
CREATE INDEX ON logs_case_insensitive (agent_id, version, "timestamp")
	INCLUDE (status, latency_ms);
VACUUM ANALYZE logs_case_insensitive, logs_case_insensitive_by_sql;

CREATE FUNCTION change_logs(log_table text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($sql$UPDATE %s SET latency_ms = latency_ms * 3
		WHERE agent_id IN ('metrics_healthy', 'metrics_eval_score')
		  AND version = 'v2' AND latency_ms::numeric %% 5 < 1$sql$, log_table);
	EXECUTE format($sql$DELETE FROM %s
		WHERE agent_id IN ('metrics_healthy', 'metrics_eval_score')
		  AND version = 'v1' AND latency_ms::numeric %% 7 < 1$sql$, log_table);
	PERFORM setseed(0.31);
	PERFORM add_logs('healthy', 'v2', 50, median => 900, error_rate => 0.2,
					 first => '-2 minutes', log_table => log_table);
	PERFORM add_logs('eval_score', 'v1', 50, score => 0.5,
					 first => '-3 minutes', log_table => log_table);
END
$$;
-- Collect a scenario from two log tables.  Return whether the stored rows
-- agree in everything but their ids, and the requests read.
CREATE FUNCTION reads_agree(scenario text, direct_table text, sql_table text,
							OUT agree boolean, OUT baseline_requests bigint,
							OUT canary_requests bigint)
LANGUAGE plpgsql AS $$
DECLARE
	rollout uuid := (SELECT id FROM rollouts r WHERE r.scenario = reads_agree.scenario);
	direct canary.metrics;
	by_sql canary.metrics;
BEGIN
	PERFORM set_config('canary.execution_log_table', direct_table, true);
	direct := canary_collect_metrics(rollout, '10 minutes', eval_at());
	PERFORM set_config('canary.execution_log_table', sql_table, true);
	by_sql := canary_collect_metrics(rollout, '10 minutes', eval_at());
	PERFORM set_config('canary.execution_log_table', 'metrics_test.logs', true);
	agree := to_jsonb(direct) - 'id' = to_jsonb(by_sql) - 'id';
	baseline_requests := direct.baseline_requests;
	canary_requests := direct.canary_requests;
END
$$;
BEGIN;
SELECT change_logs(t) FROM unnest(ARRAY['metrics_test.logs', 'metrics_test.logs_by_sql',
	'metrics_test.logs_numeric', 'metrics_test.logs_numeric_by_sql']) AS t;
SELECT s AS scenario, a.*
FROM unnest(ARRAY['healthy', 'eval_score', 'oddities', 'latency']) AS s,
	 reads_agree(s, 'metrics_test.logs', 'metrics_test.logs_by_sql') AS a;
SELECT s AS scenario, a.*
FROM unnest(ARRAY['healthy', 'eval_score']) AS s,
	 reads_agree(s, 'metrics_test.logs_numeric', 'metrics_test.logs_numeric_by_sql') AS a;
SELECT * FROM reads_agree('healthy', 'metrics_test.logs_case_insensitive',
						  'metrics_test.logs_case_insensitive_by_sql');
ROLLBACK;

-- Row-level security applies to the direct read as to SQL: a role that
-- the policy lets see only successes reads no errors.
CREATE TABLE logs_secured (LIKE logs);
INSERT INTO logs_secured SELECT * FROM logs;
CREATE INDEX ON logs_secured (agent_id, version, "timestamp") INCLUDE (status, latency_ms);
ALTER TABLE logs_secured ENABLE ROW LEVEL SECURITY;
CREATE POLICY successes_only ON logs_secured FOR SELECT USING (status = 'success');
CREATE ROLE metrics_test_reader;
GRANT USAGE ON SCHEMA public, metrics_test, canary TO metrics_test_reader;
GRANT SELECT ON logs_secured TO metrics_test_reader;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA canary TO metrics_test_reader;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA canary TO metrics_test_reader;
SELECT id AS errors_limit_rollout FROM rollouts WHERE scenario = 'errors_limit' \gset
SELECT format($$SELECT baseline_requests, baseline_errors, canary_requests, canary_errors
FROM canary_collect_metrics(%L, '10 minutes', eval_at())$$, :'errors_limit_rollout')
	AS collect_counts \gset
BEGIN;
SET LOCAL canary.execution_log_table = 'metrics_test.logs_secured';
:collect_counts;
SET LOCAL ROLE metrics_test_reader;
:collect_counts;
ROLLBACK;

-- A role that may read only the columns a collection needs gets the same
-- figures as the table's owner.
GRANT SELECT (agent_id, version, status, latency_ms, "timestamp") ON logs
	TO metrics_test_reader;
BEGIN;
:collect_counts;
SET LOCAL ROLE metrics_test_reader;
:collect_counts;
ROLLBACK;
REVOKE ALL ON logs FROM metrics_test_reader;

-- Without SELECT on the table, the collection fails as a query would.
BEGIN;
SET LOCAL ROLE metrics_test_reader;
SELECT metrics_error(format(
	$$SELECT canary_collect_metrics(%L, '10 minutes', eval_at())$$,
	:'errors_limit_rollout'));
ROLLBACK;

-- Under serializable isolation the log is read with SQL, whose scan takes
-- the predicate locks that detect conflicts with concurrent writers.
BEGIN ISOLATION LEVEL SERIALIZABLE;
:collect_counts;
SELECT count(*) > 0 AS table_has_predicate_locks
FROM pg_locks
WHERE pid = pg_backend_pid() AND mode = 'SIReadLock'
  AND relation = 'metrics_test.logs'::regclass;
ROLLBACK;

REVOKE ALL ON ALL TABLES IN SCHEMA canary FROM metrics_test_reader;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA canary FROM metrics_test_reader;
REVOKE ALL ON SCHEMA public, metrics_test, canary FROM metrics_test_reader;
DROP TABLE logs_secured;
DROP ROLE metrics_test_reader;

--
-- Every collection is stored in canary.metrics.
--
SELECT count(*) AS stored, count(DISTINCT m.deployment_id) AS rollouts
FROM canary.metrics m JOIN rollouts r ON r.id = m.deployment_id;
SELECT r.scenario, count(*) AS rows
FROM canary.metrics m JOIN rollouts r ON r.id = m.deployment_id
GROUP BY r.scenario ORDER BY r.scenario;
SELECT bool_and(m.id = (c.m).id) AS returned_row_is_stored
FROM collected c JOIN canary.metrics m ON m.id = (c.m).id;

--
-- Errors
--

-- Arguments of canary_collect_metrics().
SELECT metrics_error($$SELECT canary_collect_metrics('00000000-0000-0000-0000-000000000000')$$);
SELECT metrics_error($$SELECT canary_collect_metrics(NULL)$$);
SELECT metrics_error($$SELECT canary_collect_metrics(id, NULL) FROM rollouts WHERE scenario = 'healthy'$$);
SELECT metrics_error($$SELECT canary_collect_metrics(id, '10 minutes', NULL) FROM rollouts WHERE scenario = 'healthy'$$);
SELECT metrics_error($$SELECT canary_collect_metrics(id, '0') FROM rollouts WHERE scenario = 'healthy'$$);
SELECT metrics_error($$SELECT canary_collect_metrics(id, '-5 minutes') FROM rollouts WHERE scenario = 'healthy'$$);
SELECT metrics_error($$SELECT canary_collect_metrics(id, '10 minutes', 'infinity') FROM rollouts WHERE scenario = 'healthy'$$);

-- Execution log table missing, or with missing or mistyped columns.
CREATE TABLE no_latency (agent_id text, version text, status text, "timestamp" timestamptz);
CREATE TABLE int_status (agent_id text, version text, status integer, latency_ms integer, "timestamp" timestamptz);
CREATE TABLE local_time (agent_id text, version text, status text, latency_ms numeric, "timestamp" timestamp);
CREATE TABLE no_score (agent_id text, version text, status text, latency_ms numeric, "timestamp" timestamptz);
CREATE TABLE text_score (agent_id text, version text, status text, latency_ms numeric, "timestamp" timestamptz, eval_score text);
SET canary.execution_log_table = 'metrics_test.no_such_table';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'healthy'$$);
SET canary.execution_log_table = 'metrics_test.no_latency';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'healthy'$$);
SET canary.execution_log_table = 'metrics_test.int_status';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'healthy'$$);
SET canary.execution_log_table = 'metrics_test.local_time';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'healthy'$$);
SET canary.execution_log_table = 'metrics_test.no_score';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'eval_score'$$);
SET canary.execution_log_table = 'metrics_test.text_score';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'eval_score'$$);
SET canary.execution_log_table = 'metrics_test."bad';
SELECT metrics_error($$SELECT canary_collect_metrics(id) FROM rollouts WHERE scenario = 'healthy'$$);
SET canary.execution_log_table = 'metrics_test.logs';

-- The metrics setting of canary_create().
SELECT canary_register_agent('metrics_config', 'v1');
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '{"column": "eval_score"}')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '["eval_score"]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "weight": 2}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": 5, "direction": "decrease_is_bad"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "", "direction": "decrease_is_bad"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "latency_ms", "direction": "increase_is_bad"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"direction": "decrease_is_bad"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "down"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": -0.1}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": "5%"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "critical": "yes"}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "must_have_data": 1}]')$$);
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad"}, {"column": "eval_score", "direction": "increase_is_bad"}]')$$);
SELECT metrics_error(format('SELECT canary_create(%L, %L, metrics => %L)', 'metrics_config', 'v2',
	(SELECT jsonb_agg(jsonb_build_object('column', 'c' || i, 'direction', 'increase_is_bad'))
	 FROM generate_series(1, 17) AS i)));
SELECT metrics_error($$SELECT canary_create('metrics_config', 'v2', metrics => '[{"column": "eval_score", "direction": "decrease_is_bad", "tolerance": 0.05, "critical": true, "must_have_data": false}]')$$) AS valid_setting;

-- Execution log table creation.
SELECT metrics_error($$SELECT canary_create_execution_log_table('metrics_test.logs')$$);
SELECT metrics_error($$SELECT canary_create_execution_log_table('a.b.c')$$);
SELECT metrics_error($$SELECT canary_create_execution_log_table(NULL)$$);
SELECT metrics_error($$SELECT canary_add_execution_log_partitions('metrics_daily_logs', '2024-01-01', '2025-06-01')$$);

--
-- Function attributes and comments.
--
SELECT p.proname, p.provolatile, p.proparallel, p.proconfig,
	   obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p
WHERE p.proname IN ('canary_collect_metrics', 'canary_create_execution_log_table',
					'canary_add_execution_log_partitions')
ORDER BY p.proname;
SELECT obj_description('canary.metrics'::regclass, 'pg_class') IS NOT NULL AS table_comment,
	   (SELECT count(*) FROM pg_catalog.pg_extension e, unnest(e.extconfig) AS c (oid)
		WHERE e.extname = 'canary' AND c.oid = 'canary.metrics'::regclass) AS dumped;

RESET canary.execution_log_table;
RESET search_path;

-- Leave an empty database for the next test.
SET client_min_messages = warning;
DROP EXTENSION canary CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
