--
-- Routing: reference buckets, stickiness, monotonicity, split accuracy,
-- routing in every rollout status, and argument checks.
--
CREATE EXTENSION canary;

-- Print the SQLSTATE, message and hint of the error a statement raises.
CREATE FUNCTION expect_error(statement text) RETURNS text
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

-- Every reference bucket matches.
\getenv vectors_dir CANARY_VECTORS_DIR
\set buckets_file :vectors_dir '/routing_buckets.csv'
CREATE TEMP TABLE routing_vectors (deployment_id uuid, hash_key text, bucket integer);
COPY routing_vectors FROM :'buckets_file' WITH (FORMAT csv, HEADER true);
SELECT count(*) AS vectors FROM routing_vectors;
SELECT deployment_id, hash_key, bucket, canary_bucket(deployment_id, hash_key) AS computed
FROM routing_vectors
WHERE canary_bucket(deployment_id, hash_key) <> bucket;

-- Buckets lie in [0, 10000).
SELECT min(canary_bucket('3cbc19ac-02d7-47da-b01c-d368631e7da6', g::text)) >= 0 AS low_ok,
       max(canary_bucket('3cbc19ac-02d7-47da-b01c-d368631e7da6', g::text)) < 10000 AS high_ok
FROM generate_series(1, 20000) g;

-- An unknown agent is an error, never a made-up version.
SELECT expect_error($$SELECT * FROM canary_route('support-bot', 'r1')$$);

-- A registered agent without a rollout gets its stable version.
SELECT canary_register_agent('support-bot', 'v1', 'acme');
SELECT * FROM canary_route('support-bot', 'r1');
SELECT * FROM canary_route('support-bot', 'r1', 'user-1');

-- A pending rollout routes everything to the stable version.
SELECT canary_create('support-bot', 'v2') AS rollout \gset
SELECT status, current_stage, current_percentage, baseline_version, canary_version,
       stages, stage_duration, min_samples, success_rate_ratio, p95_latency_ratio,
       max_error_rate, organization_id
FROM canary.deployments WHERE id = :'rollout';
SELECT count(*) FILTER (WHERE r.is_canary) AS canary, count(*) AS total,
       count(DISTINCT r.version) AS versions
FROM generate_series(1, 2000) g, canary_route('support-bot', 'req', 'user-' || g) r;

-- A running rollout sends a key to the canary exactly when its bucket is
-- below the percentage times 100.
SELECT canary_start(:'rollout');
SELECT status, current_stage, current_percentage FROM canary.deployments WHERE id = :'rollout';
SELECT bool_and(r.is_canary = (canary_bucket(:'rollout', 'user-' || g) < 500)) AS formula_holds,
       bool_and(r.version = CASE WHEN r.is_canary THEN 'v2' ELSE 'v1' END) AS versions_match
FROM generate_series(1, 20000) g, canary_route('support-bot', 'req-' || g, 'user-' || g) r;

-- The user id is the hash key when given; an empty or NULL user id falls
-- back to the request id.
SELECT bool_and(a.is_canary = b.is_canary) AS user_id_is_key
FROM generate_series(1, 2000) g,
     canary_route('support-bot', 'req-a-' || g, 'user-' || g) a,
     canary_route('support-bot', 'req-b-' || g, 'user-' || g) b;
SELECT bool_and(a.is_canary = (canary_bucket(:'rollout', 'req-' || g) < 500)
                AND b.is_canary = a.is_canary) AS request_id_fallback
FROM generate_series(1, 2000) g,
     canary_route('support-bot', 'req-' || g, '') a,
     canary_route('support-bot', 'req-' || g, NULL) b;

-- Sticky: the same key gets the same result in separate statements.
CREATE TEMP TABLE first_pass AS
SELECT g, r.is_canary FROM generate_series(1, 5000) g,
       canary_route('support-bot', 'x', 'user-' || g) r;
SELECT count(*) AS changed
FROM first_pass f, canary_route('support-bot', 'y', 'user-' || f.g) r
WHERE r.is_canary <> f.is_canary;

-- Split accuracy over 100,000 keys at 5, 25 and 50 percent, and
-- monotonicity over every default stage: a key in the canary at one stage is
-- in it at every later stage.
CREATE TEMP TABLE assignments (percentage numeric, key integer, is_canary boolean);
INSERT INTO assignments
SELECT 5, g, r.is_canary FROM generate_series(1, 100000) g,
       canary_route('support-bot', 'req', 'key-' || g) r;
UPDATE canary.deployments SET current_stage = 2, current_percentage = 25 WHERE id = :'rollout';
INSERT INTO assignments
SELECT 25, g, r.is_canary FROM generate_series(1, 100000) g,
       canary_route('support-bot', 'req', 'key-' || g) r;
UPDATE canary.deployments SET current_stage = 3, current_percentage = 50 WHERE id = :'rollout';
INSERT INTO assignments
SELECT 50, g, r.is_canary FROM generate_series(1, 100000) g,
       canary_route('support-bot', 'req', 'key-' || g) r;
UPDATE canary.deployments SET current_stage = 4, current_percentage = 75 WHERE id = :'rollout';
INSERT INTO assignments
SELECT 75, g, r.is_canary FROM generate_series(1, 100000) g,
       canary_route('support-bot', 'req', 'key-' || g) r;
UPDATE canary.deployments SET current_stage = 5, current_percentage = 100 WHERE id = :'rollout';
INSERT INTO assignments
SELECT 100, g, r.is_canary FROM generate_series(1, 100000) g,
       canary_route('support-bot', 'req', 'key-' || g) r;
SELECT percentage,
       abs(100.0 * count(*) FILTER (WHERE is_canary) / count(*) - percentage) <= 0.5
         AS within_half_point
FROM assignments GROUP BY percentage ORDER BY percentage;
SELECT count(*) AS monotonicity_violations
FROM assignments lower_stage
JOIN assignments higher_stage
  ON higher_stage.key = lower_stage.key AND higher_stage.percentage > lower_stage.percentage
WHERE lower_stage.is_canary AND NOT higher_stage.is_canary;

-- A paused rollout keeps its split frozen at the current percentage.
UPDATE canary.deployments SET current_stage = 2, current_percentage = 25, status = 'paused'
WHERE id = :'rollout';
SELECT bool_and(r.is_canary = (canary_bucket(:'rollout', 'user-' || g) < 2500)) AS paused_split_holds,
       count(*) FILTER (WHERE r.is_canary) > 0 AS some_canary
FROM generate_series(1, 5000) g, canary_route('support-bot', 'req', 'user-' || g) r;

-- A rolled-back rollout sends everything to the baseline.
UPDATE canary.deployments SET status = 'rolled_back', current_percentage = 0
WHERE id = :'rollout';
SELECT count(*) FILTER (WHERE r.is_canary) AS canary,
       count(*) FILTER (WHERE r.version = 'v1') AS baseline
FROM generate_series(1, 5000) g, canary_route('support-bot', 'req', 'user-' || g) r;

-- After a promotion the new stable version serves everyone.
SELECT canary_create('support-bot', 'v3') AS rollout3 \gset
UPDATE canary.deployments SET status = 'promoted', current_stage = 5, current_percentage = 100
WHERE id = :'rollout3';
SELECT canary_register_agent('support-bot', 'v3');
SELECT count(*) FILTER (WHERE r.is_canary) AS canary,
       count(*) FILTER (WHERE r.version = 'v3') AS stable
FROM generate_series(1, 5000) g, canary_route('support-bot', 'req', 'user-' || g) r;
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'support-bot';

-- Invalid routing arguments.
SELECT expect_error($$SELECT * FROM canary_route(NULL, 'r1')$$);
SELECT expect_error($$SELECT * FROM canary_route('support-bot', NULL)$$);
SELECT expect_error($$SELECT * FROM canary_route('support-bot', NULL, '')$$);
SELECT expect_error($$SELECT * FROM canary_route('', 'r1')$$);
SELECT * FROM canary_route('support-bot', NULL, 'user-1');

-- Invalid agent registrations.
SELECT expect_error($$SELECT canary_register_agent(NULL, 'v1')$$);
SELECT expect_error($$SELECT canary_register_agent('a', NULL)$$);
SELECT expect_error($$SELECT canary_register_agent('', 'v1')$$);
SELECT expect_error($$SELECT canary_register_agent(repeat('x', 256), 'v1')$$);
SELECT expect_error($$SELECT canary_register_agent('a', '')$$);

-- Invalid rollout settings, one per line.
SELECT expect_error($$SELECT canary_create('nobody', 'v2')$$);
SELECT expect_error($$SELECT canary_create(NULL, 'v2')$$);
SELECT expect_error($$SELECT canary_create('support-bot', NULL)$$);
SELECT expect_error($$SELECT canary_create('support-bot', '')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v3')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{5,NULL}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{0,50}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{-5,50}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{50,100.5}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{25,10}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{10,10}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{1.005}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stages => '{{5,10},{20,30}}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stage_duration => '0')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', stage_duration => '-5 minutes')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', min_samples => 0)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', success_rate_ratio => 0)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', success_rate_ratio => 1.5)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', p95_latency_ratio => 0.9)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', p95_latency_ratio => 'NaN')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', max_error_rate => -0.01)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', max_error_rate => 2)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', evaluation_window => '0')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', warmup => '-1 minute')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', success_statuses => '{}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', success_statuses => '{ok,""}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', error_statuses => '{failed,success}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', analysis => 'bayesian')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', alpha => 0)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', alpha => 0.9)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', failure_threshold => 0)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', max_stage_failures => 0)$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', nodata_deadline => '0')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', nodata_action => 'ignore')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', inconclusive_action => 'wait')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', approval_stages => '{0}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', approval_stages => '{6}')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', bake_time => '-1 hour')$$);
SELECT expect_error($$SELECT canary_create('support-bot', 'v4', supersede => NULL)$$);

-- Only one active rollout per agent; a second is rejected unless it
-- supersedes the first.
SELECT canary_create('support-bot', 'v4') AS rollout4 \gset
SELECT expect_error($$SELECT canary_create('support-bot', 'v5')$$) ~ '^42710: agent "support-bot" already has an active rollout' AS duplicate_rejected;
SELECT expect_error($$INSERT INTO canary.deployments (agent_id, baseline_version, canary_version, stages, stage_duration, min_samples, success_rate_ratio, p95_latency_ratio, max_error_rate, evaluation_window, warmup, success_statuses, error_statuses, metrics, analysis, alpha, failure_threshold, max_stage_failures, rollback_on_hard_limit, nodata_deadline, nodata_action, inconclusive_action, approval_stages, bake_time) SELECT agent_id, baseline_version, 'v9', stages, stage_duration, min_samples, success_rate_ratio, p95_latency_ratio, max_error_rate, evaluation_window, warmup, success_statuses, error_statuses, metrics, analysis, alpha, failure_threshold, max_stage_failures, rollback_on_hard_limit, nodata_deadline, nodata_action, inconclusive_action, approval_stages, bake_time FROM canary.deployments WHERE id = '$$ || :'rollout4' || $$'$$);
SELECT canary_create('support-bot', 'v5', supersede => true) AS rollout5 \gset
SELECT canary_version, status FROM canary.deployments
WHERE agent_id = 'support-bot' ORDER BY created_at, canary_version;
SELECT expect_error($$SELECT canary_register_agent('support-bot', 'v6')$$);

-- Starting twice, or an unknown rollout, is an error.
SELECT canary_start(:'rollout5');
SELECT replace(expect_error($$SELECT canary_start('$$ || :'rollout5' || $$')$$),
               :'rollout5', '<rollout id>');
SELECT expect_error($$SELECT canary_start('00000000-0000-0000-0000-000000000000')$$);

-- A caller may choose the rollout id, for example its deploy system's id,
-- which makes routing reproducible across runs.
SELECT canary_register_agent('id-agent', 'v1');
SELECT canary_create('id-agent', 'v2', id => '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f');
SELECT canary_start('6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f');
SELECT version, is_canary, canary_bucket('6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f', 'user-7') AS bucket
FROM canary_route('id-agent', 'req', 'user-7');

SELECT expect_error($$SELECT canary_create('id-agent', 'v3', id => '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f', supersede => true)$$);

-- Any role that may execute canary_route can route without privileges on
-- schema canary: a cache miss reads the tables as their owner.
SELECT canary_register_agent('role-agent', 'v1');
CREATE ROLE regress_canary_app;
SET ROLE regress_canary_app;
SELECT * FROM canary_route('role-agent', 'req', 'user-7');
SELECT current_user;
SELECT expect_error($$SELECT count(*) FROM canary.agents$$);
RESET ROLE;
DROP ROLE regress_canary_app;

-- Routing functions declare the volatility and parallel safety a hot
-- standby and parallel queries need.
SELECT proname, provolatile, proparallel, proisstrict
FROM pg_proc WHERE proname IN ('canary_route', 'canary_bucket') ORDER BY proname;

-- Leave an empty database for the next test.
SET client_min_messages = warning;
DROP EXTENSION canary CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
