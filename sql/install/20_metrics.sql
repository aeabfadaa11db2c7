--
-- Execution log and metrics collection
--
-- Applications write one row per agent execution into the execution log
-- table named by the setting canary.execution_log_table.  A name without a
-- schema means schema public, because canary's functions run with
-- search_path = pg_catalog, pg_temp.
--

CREATE TABLE canary.metrics (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id uuid NOT NULL REFERENCES canary.deployments (id) ON DELETE CASCADE,
	stage integer NOT NULL,
	percentage numeric(5,2) NOT NULL,
	collected_at timestamptz NOT NULL,
	window_start timestamptz NOT NULL,
	window_end timestamptz NOT NULL,
	baseline_window_start timestamptz NOT NULL,
	baseline_window_end timestamptz NOT NULL,
	baseline_version text NOT NULL,
	canary_version text NOT NULL,
	baseline_requests bigint NOT NULL,
	baseline_successes bigint NOT NULL,
	baseline_errors bigint NOT NULL,
	baseline_unrecognized bigint NOT NULL,
	baseline_null_latency bigint NOT NULL,
	baseline_success_rate double precision,
	baseline_error_rate double precision,
	baseline_p50 double precision,
	baseline_p95 double precision,
	baseline_p99 double precision,
	baseline_mean_latency double precision,
	baseline_latency_sampled boolean NOT NULL,
	canary_requests bigint NOT NULL,
	canary_successes bigint NOT NULL,
	canary_errors bigint NOT NULL,
	canary_unrecognized bigint NOT NULL,
	canary_null_latency bigint NOT NULL,
	canary_success_rate double precision,
	canary_error_rate double precision,
	canary_p50 double precision,
	canary_p95 double precision,
	canary_p99 double precision,
	canary_mean_latency double precision,
	canary_latency_sampled boolean NOT NULL,
	success_rate_ratio double precision,
	p95_latency_ratio double precision,
	expected_canary_share double precision,
	observed_canary_share double precision,
	sample_ratio_p_value double precision,
	sample_ratio_mismatch boolean NOT NULL,
	stage_baseline_requests bigint NOT NULL,
	stage_canary_requests bigint NOT NULL,
	hard_limit_breached boolean NOT NULL,
	baseline_unhealthy boolean NOT NULL,
	baseline_nodata boolean NOT NULL,
	is_healthy boolean,
	verdict text NOT NULL CHECK (verdict IN ('pass', 'fail', 'inconclusive', 'nodata')),
	reasons text[] NOT NULL,
	details jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE canary.metrics IS 'One row per metrics collection: counts, rates and latency percentiles of baseline and canary over an evaluation window, and their comparison';
COMMENT ON COLUMN canary.metrics.stage_canary_requests IS 'Canary rows that min_samples counts: since the current stage started plus warmup with the sequential judge, in the window with the threshold judge';
COMMENT ON COLUMN canary.metrics.stage_baseline_requests IS 'Baseline rows that min_samples counts, as for the canary; at 100% traffic, the rows of the historic baseline window';
COMMENT ON COLUMN canary.metrics.stage IS 'Stage of the rollout when the metrics were collected; 0 before the start';
COMMENT ON COLUMN canary.metrics.percentage IS 'Canary traffic percentage of the rollout when the metrics were collected';
COMMENT ON COLUMN canary.metrics.collected_at IS 'Evaluation time given to the collection; the window ends here';
COMMENT ON COLUMN canary.metrics.window_start IS 'Exclusive start of the rows read: the later of collected_at minus the window and, for a running or paused rollout, stage start plus warmup';
COMMENT ON COLUMN canary.metrics.window_end IS 'Inclusive end of the rows read, equal to collected_at';
COMMENT ON COLUMN canary.metrics.baseline_window_start IS 'Exclusive start of the baseline rows read: window_start, except at 100% canary traffic, where the baseline window is the evaluation window ending at the baseline''s last row before the stage started';
COMMENT ON COLUMN canary.metrics.baseline_window_end IS 'Inclusive end of the baseline rows read: window_end, except at 100% canary traffic';
COMMENT ON COLUMN canary.metrics.baseline_unrecognized IS 'Baseline rows whose status is NULL or neither a success nor an error status; counted in requests';
COMMENT ON COLUMN canary.metrics.baseline_null_latency IS 'Baseline rows whose latency is NULL, NaN or infinite; counted in requests, left out of the latency figures';
COMMENT ON COLUMN canary.metrics.baseline_success_rate IS 'Baseline successes divided by requests; NULL when there are no requests';
COMMENT ON COLUMN canary.metrics.baseline_p95 IS 'Baseline 95th latency percentile in milliseconds, as percentile_cont computes it; NULL when no latency was recorded';
COMMENT ON COLUMN canary.metrics.baseline_latency_sampled IS 'Whether the baseline latency percentiles come from a uniform sample because the window holds more latencies than the cap of 10000';
COMMENT ON COLUMN canary.metrics.canary_unrecognized IS 'Canary rows whose status is NULL or neither a success nor an error status; counted in requests';
COMMENT ON COLUMN canary.metrics.canary_null_latency IS 'Canary rows whose latency is NULL, NaN or infinite; counted in requests, left out of the latency figures';
COMMENT ON COLUMN canary.metrics.canary_latency_sampled IS 'Whether the canary latency percentiles come from a uniform sample because the window holds more latencies than the cap of 10000';
COMMENT ON COLUMN canary.metrics.success_rate_ratio IS 'Canary success rate divided by the baseline''s; NULL when either rate is NULL or the baseline''s is 0';
COMMENT ON COLUMN canary.metrics.p95_latency_ratio IS 'Canary p95 latency divided by the baseline''s; NULL when either is NULL or the baseline''s is 0';
COMMENT ON COLUMN canary.metrics.expected_canary_share IS 'Canary share of the requests that the rollout''s percentage implies';
COMMENT ON COLUMN canary.metrics.observed_canary_share IS 'Canary share of the requests in the window; NULL when there are none';
COMMENT ON COLUMN canary.metrics.sample_ratio_p_value IS 'p-value of the chi-square goodness-of-fit test of the observed canary share against the expected one; NULL when not tested';
COMMENT ON COLUMN canary.metrics.sample_ratio_mismatch IS 'Whether the observed canary share differs from the expected one with p < 0.001, which makes the comparison suspect';
COMMENT ON COLUMN canary.metrics.hard_limit_breached IS 'Whether the canary broke a fixed threshold, or a critical metric failed, with at least min_samples requests';
COMMENT ON COLUMN canary.metrics.baseline_unhealthy IS 'Whether the baseline alone breaks max_error_rate with at least min_samples requests';
COMMENT ON COLUMN canary.metrics.baseline_nodata IS 'Whether the baseline has fewer than min_samples requests';
COMMENT ON COLUMN canary.metrics.is_healthy IS 'Overall health of the canary; NULL when there is too little data and no hard limit is broken';
COMMENT ON COLUMN canary.metrics.verdict IS 'nodata: canary or baseline below min_samples requests; fail: unhealthy; pass: healthy; inconclusive: reserved for the sequential judge';
COMMENT ON COLUMN canary.metrics.reasons IS 'Every failing check and finding, in plain words with numbers';
COMMENT ON COLUMN canary.metrics.details IS 'Per-metric comparison: verdict (pass, high, low, nodata), test, statistic, p-value, effect size, tolerance and both versions'' figures; for a sequential rollout also "sequential": each test''s log evidence (now and its maximum), threshold, buckets, event counts and Mantel-Haenszel odds ratio, the error-rate limit''s evidence, and the end of the stored evidence it continued from (stored_until, null when every bucket was read)';
CREATE INDEX metrics_deployment ON canary.metrics (deployment_id, collected_at);

SELECT pg_catalog.pg_extension_config_dump('canary.metrics', '');
SELECT pg_catalog.pg_extension_config_dump('canary.metrics_id_seq', '');

-- The sequential judge's evidence over the buckets judged so far in each
-- rollout's current attempt.  canary_evaluate stores it, so that the next
-- evaluation reads only the rows of later buckets.  When it is missing or
-- was made with other settings, a collection computes the evidence again
-- from the rows the execution log contains then, which can differ from the
-- stored evidence by rows that arrived late or were deleted since.  pg_dump
-- leaves its rows out.
CREATE TABLE canary.sequential_evidence (
	deployment_id uuid PRIMARY KEY REFERENCES canary.deployments (id) ON DELETE CASCADE,
	attempt integer NOT NULL,
	settings text NOT NULL,
	judged_until timestamptz NOT NULL,
	traffic_changes timestamptz[] NOT NULL,
	excluded_buckets bigint NOT NULL,
	canary_errors bigint NOT NULL,
	canary_requests bigint NOT NULL,
	baseline_errors bigint NOT NULL,
	baseline_requests bigint NOT NULL,
	tests bytea NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE canary.sequential_evidence IS 'Evidence of the sequential judge over the judged buckets of each rollout''s current attempt, stored by canary_evaluate; when it is missing or stale, a collection computes the evidence again from the execution log';
COMMENT ON COLUMN canary.sequential_evidence.settings IS 'Everything the evidence depends on besides the rows: execution log table, agent, versions, statuses, extra metrics, origin and bucket width';
COMMENT ON COLUMN canary.sequential_evidence.judged_until IS 'End of the last bucket judged; later evaluations read the rows after it';
COMMENT ON COLUMN canary.sequential_evidence.traffic_changes IS 'Traffic changes of the attempt before judged_until, whose buckets were left out';
COMMENT ON COLUMN canary.sequential_evidence.tests IS 'State of each sequential test, in the binary layout of this build of canary';

CREATE FUNCTION canary_collect_metrics(deployment_id uuid,
									   "window" interval DEFAULT '10 minutes',
									   at timestamptz DEFAULT pg_catalog.now())
RETURNS canary.metrics
AS 'MODULE_PATHNAME', 'canary_collect_metrics'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_collect_metrics(uuid, interval, timestamptz) IS
'Compare the canary with the baseline over the execution log rows of a window ending at "at", store the result in canary.metrics and return it';

--
-- Recommended execution log table
--

CREATE FUNCTION canary_add_execution_log_partitions(
	name text DEFAULT 'public.agent_execution_logs',
	first_day date DEFAULT CAST(pg_catalog.now() AT TIME ZONE 'UTC' AS date) - 7,
	last_day date DEFAULT CAST(pg_catalog.now() AT TIME ZONE 'UTC' AS date) + 14)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[];
	schema_name text;
	table_name text;
	created integer := 0;
	day date;
	partition_name text;
BEGIN
	IF name IS NULL OR first_day IS NULL OR last_day IS NULL THEN
		RAISE EXCEPTION 'table name and days must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF last_day - first_day > 366 THEN
		RAISE EXCEPTION 'partition range from % to % is longer than 366 days', first_day, last_day
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Add partitions in steps of at most one year.';
	END IF;
	parts := pg_catalog.parse_ident(name);
	IF pg_catalog.cardinality(parts) = 1 THEN
		parts := ARRAY['public'] || parts;
	ELSIF pg_catalog.cardinality(parts) > 2 THEN
		RAISE EXCEPTION 'table name "%" has too many dotted parts', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a table name, optionally qualified with its schema.';
	END IF;
	schema_name := parts[1];
	table_name := parts[2];

	day := first_day;
	WHILE day <= last_day LOOP
		partition_name := pg_catalog.left(table_name, 54) || '_' || pg_catalog.to_char(day, 'YYYYMMDD');
		IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, partition_name)) IS NULL THEN
			EXECUTE pg_catalog.format(
				'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
				schema_name, partition_name, schema_name, table_name,
				day::timestamp AT TIME ZONE 'UTC',
				(day + 1)::timestamp AT TIME ZONE 'UTC');
			created := created + 1;
		END IF;
		day := day + 1;
	END LOOP;
	RETURN created;
END;
$$;
COMMENT ON FUNCTION canary_add_execution_log_partitions(text, date, date) IS
'Create the missing daily partitions (one UTC day each) of a partitioned execution log table from first_day to last_day; returns the number created';

CREATE FUNCTION canary_create_execution_log_table(
	name text DEFAULT 'public.agent_execution_logs',
	partitioned boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[];
	qualified text;
BEGIN
	IF name IS NULL OR partitioned IS NULL THEN
		RAISE EXCEPTION 'table name and partitioned must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	parts := pg_catalog.parse_ident(name);
	IF pg_catalog.cardinality(parts) = 1 THEN
		parts := ARRAY['public'] || parts;
	ELSIF pg_catalog.cardinality(parts) > 2 THEN
		RAISE EXCEPTION 'table name "%" has too many dotted parts', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a table name, optionally qualified with its schema.';
	END IF;
	qualified := pg_catalog.format('%I.%I', parts[1], parts[2]);

	EXECUTE pg_catalog.format(
		'CREATE TABLE %s (agent_id text NOT NULL, version text NOT NULL, '
		'status text, latency_ms integer, '
		'"timestamp" timestamptz NOT NULL DEFAULT pg_catalog.now())%s',
		qualified, CASE WHEN partitioned THEN ' PARTITION BY RANGE ("timestamp")' ELSE '' END);
	EXECUTE pg_catalog.format(
		'CREATE INDEX %I ON %s (agent_id, version, "timestamp") INCLUDE (status, latency_ms)',
		pg_catalog.left(parts[2], 47) || '_evaluation', qualified);
	EXECUTE pg_catalog.format(
		'COMMENT ON TABLE %s IS %L', qualified,
		'Execution log of agents: one row per execution, read by canary_collect_metrics()');

	IF partitioned THEN
		PERFORM @extschema@.canary_add_execution_log_partitions(qualified);
	END IF;
END;
$$;
COMMENT ON FUNCTION canary_create_execution_log_table(text, boolean) IS
'Create an execution log table with the covering index that evaluation reads through; when partitioned, by UTC day from 7 days back to 14 days ahead, extended with canary_add_execution_log_partitions()';
