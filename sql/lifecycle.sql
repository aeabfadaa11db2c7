--
-- Rollout lifecycle: the state machine driven through every decision with
-- the clock given through "at", operator actions, illegal transitions and
-- the history they leave.
--
CREATE EXTENSION IF NOT EXISTS canary;
SET timezone = 'UTC';
SET max_parallel_workers_per_gather = 0;

DO $$
BEGIN
	IF to_regclass('public.agent_execution_logs') IS NULL THEN
		PERFORM canary_create_execution_log_table();
	END IF;
END
$$;

-- Print the SQLSTATE, message and hint of the error a statement raises,
-- with rollout ids replaced by <id>.
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
	RETURN state || ': ' ||
		regexp_replace(message, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g') ||
		coalesce(' HINT: ' || nullif(hint, ''), '');
END
$$;

-- All times are minutes after a fixed base time.
CREATE FUNCTION t(minutes numeric) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
	SELECT '2024-03-01 10:00:00+00'::timestamptz + minutes * interval '1 minute'
$$;

CREATE FUNCTION minutes(at timestamptz) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
	SELECT round(extract(epoch FROM at - t(0)) / 60, 1)
$$;

-- Write n executions of one version, evenly spread over (from, to]
-- minutes.  Latency is log-normal around median_ms with a 2% tail four
-- times slower; failures come in bursts: two tenths of the span have three
-- times the average error rate, the rest half of it.  Timeouts take 30 s.
CREATE FUNCTION executions(agent text, version text, n integer,
						   from_minute numeric, to_minute numeric,
						   error_rate float8, median_ms float8) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT agent, version,
		   CASE WHEN failed AND random() < 0.3 THEN 'timeout'
				WHEN failed THEN 'error' ELSE 'success' END,
		   CASE WHEN failed AND random() < 0.3 THEN 30000
				ELSE round(median_ms * exp(0.4 * z) * CASE WHEN random() < 0.02 THEN 4 ELSE 1 END)
		   END,
		   t(from_minute + (to_minute - from_minute) * (i - 0.5) / n)
	FROM (SELECT i,
				 random() < error_rate * CASE WHEN (i * 10 / n) % 5 = 2 THEN 3 ELSE 0.5 END AS failed,
				 sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z
		  FROM generate_series(1, n) i) g
$$;

-- Write the traffic of one split: pct percent of n executions go to the
-- canary.
CREATE FUNCTION traffic(agent text, baseline text, canary text, pct numeric,
						n integer, from_minute numeric, to_minute numeric,
						baseline_error_rate float8, canary_error_rate float8)
RETURNS void LANGUAGE sql AS $$
	SELECT executions(agent, canary, round(n * pct / 100)::integer, from_minute,
					  to_minute, canary_error_rate, 180);
	SELECT executions(agent, baseline, n - round(n * pct / 100)::integer,
					  from_minute, to_minute, baseline_error_rate, 180);
$$;

-- Cut the metrics engine's own findings, which end the reason of an
-- unhealthy verdict, to "...": the canary.metrics row keeps them.
CREATE FUNCTION brief(reason text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT regexp_replace(reason,
						  '(failure_threshold \d+|max_stage_failures \d+|before rollback|is possible|hard limit breached in [^:]+): .*$',
						  '\1: ...')
$$;

-- Evaluate a rollout at a minute and show the decision with its time in
-- minutes.
CREATE FUNCTION ev(id uuid, minute numeric)
RETURNS TABLE (decision text, reason text, stage integer, percentage numeric,
			   has_metrics boolean, minute numeric)
LANGUAGE sql AS $$
	SELECT e.decision, brief(e.reason), e.stage, e.percentage,
		   e.metrics_id IS NOT NULL, minutes(e.at)
	FROM canary_evaluate(id, t(minute)) e
$$;

-- The state of a rollout in one line.
CREATE FUNCTION state(id uuid)
RETURNS TABLE (status canary.status, stage integer, percentage numeric,
			   attempt integer, pause_kind text, stage_started numeric,
			   consecutive_failures integer, stage_failures integer,
			   stage_samples bigint)
LANGUAGE sql AS $$
	SELECT status, current_stage, current_percentage, attempt, pause_kind,
		   minutes(stage_started_at), consecutive_failures, stage_failures,
		   stage_samples
	FROM canary.deployments d WHERE d.id = $1
$$;

-- Share of each version among 2000 routed requests, to one decimal: the
-- exact counts depend on the random rollout id.
CREATE FUNCTION routed(agent text) RETURNS TABLE (version text, share numeric)
LANGUAGE sql AS $$
	SELECT r.version, round(count(*) / 2000.0, 1) FROM generate_series(1, 2000) g,
		   canary_route(agent, 'request-' || g) r
	GROUP BY r.version ORDER BY r.version
$$;

--
-- A healthy canary goes through every stage to promotion.
--
SELECT setseed(0.11);
SELECT canary_register_agent('lc-support', 'v1');
SELECT canary_create('lc-support', 'v2', stages => ARRAY[5, 25, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 p95_latency_ratio => 1.5) AS support \gset
SELECT canary_start(:'support', t(0));
SELECT * FROM state(:'support');

-- Stage 1 at 5%: 4000 requests in 30 minutes, 200 to the canary.
SELECT traffic('lc-support', 'v1', 'v2', 5, 4000, 0, 30, 0.01, 0.01);
SELECT * FROM ev(:'support', 12);
SELECT * FROM ev(:'support', 20);
SELECT * FROM ev(:'support', 30);
SELECT * FROM state(:'support');

-- An evaluation at the same time returns that decision and records nothing.
SELECT count(*) AS decisions FROM canary.decisions WHERE deployment_id = :'support';
SELECT * FROM ev(:'support', 30);
SELECT count(*) AS decisions FROM canary.decisions WHERE deployment_id = :'support';

-- Stage 2 at 25%: its samples are counted from the stage start.
SELECT * FROM ev(:'support', 31);
SELECT traffic('lc-support', 'v1', 'v2', 25, 4000, 30, 60, 0.01, 0.01);
SELECT * FROM ev(:'support', 45);
SELECT * FROM ev(:'support', 60);

-- Stage 3 at 50%, the last: promotion.
SELECT traffic('lc-support', 'v1', 'v2', 50, 4000, 60, 90, 0.01, 0.01);
SELECT * FROM routed('lc-support');
SELECT * FROM ev(:'support', 90);
SELECT * FROM state(:'support');
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'lc-support';
SELECT * FROM routed('lc-support');

-- Decisions, transitions and events tell the same story.
SELECT decision, verdict, stage, percentage, automatic, minutes(at), brief(reason)
FROM canary.decisions WHERE deployment_id = :'support' ORDER BY id;
SELECT event, old_status, new_status, old_stage, new_stage, old_percentage,
	   new_percentage, automatic, minutes(at), brief(reason)
FROM canary.transitions WHERE deployment_id = :'support' ORDER BY id;
SELECT event_type, payload->>'new_status' AS new_status,
	   payload->>'new_stage' AS new_stage, payload->>'new_percentage' AS new_percentage,
	   claimed_at IS NULL AS unclaimed
FROM canary.events WHERE deployment_id = :'support' ORDER BY id;
SELECT kind, action, status, stage, percentage, minutes(at)
FROM canary_history(:'support');

--
-- A canary whose error rate doubles rolls back at 5%: 20000 requests, 1000
-- of them to the canary, with 6% errors against the baseline's 3%.
--
SELECT setseed(0.22);
SELECT canary_register_agent('lc-billing', 'v7');
SELECT canary_create('lc-billing', 'v8', stages => ARRAY[5, 50],
					 stage_duration => '30 minutes', min_samples => 200,
					 evaluation_window => '30 minutes', max_error_rate => 0.10,
					 success_rate_ratio => 0.99, p95_latency_ratio => 1.5)
	AS billing \gset
SELECT canary_start(:'billing', t(0));
SELECT traffic('lc-billing', 'v7', 'v8', 5, 20000, 0, 30, 0.03, 0.06);
SELECT * FROM ev(:'billing', 30);
SELECT m.canary_requests, round(m.canary_error_rate::numeric, 4) AS canary_error_rate,
	   m.baseline_requests, round(m.baseline_error_rate::numeric, 4) AS baseline_error_rate,
	   m.verdict
FROM canary.decisions d JOIN canary.metrics m ON m.id = d.metrics_id
WHERE d.deployment_id = :'billing' ORDER BY d.id;
SELECT * FROM state(:'billing');
SELECT * FROM routed('lc-billing');
SELECT event_type, payload->>'old_percentage' AS old_percentage,
	   payload->>'new_percentage' AS new_percentage
FROM canary.events WHERE deployment_id = :'billing' ORDER BY id;

--
-- Retry: a new attempt counts only executions after the retry, and is
-- rejected while another rollout of the agent is active.
--
SELECT canary_create('lc-billing', 'v9') AS billing_other \gset
SELECT expect_error(format('SELECT canary_retry(%L, t(40))', :'billing'));
SELECT canary_rollback(:'billing_other', 'made by mistake');
SELECT canary_retry(:'billing', t(40));
SELECT * FROM state(:'billing');
SELECT * FROM ev(:'billing', 50);
SELECT setseed(0.23);
SELECT traffic('lc-billing', 'v7', 'v8', 5, 8000, 40, 70, 0.03, 0.02);
SELECT * FROM ev(:'billing', 70);
SELECT attempt, decision, stage, minutes(at) FROM canary.decisions
WHERE deployment_id = :'billing' ORDER BY id;

--
-- Unhealthy evaluations that alternate with healthy ones still reach
-- max_stage_failures: bad, good, bad ten-minute windows.  Fixed thresholds
-- judge each window afresh; the sequential judge would keep failing after
-- the first bad window.
--
SELECT setseed(0.33);
SELECT canary_register_agent('lc-flaky', 'v1');
SELECT canary_create('lc-flaky', 'v2', stages => ARRAY[10, 50],
					 stage_duration => '60 minutes', min_samples => 100,
					 evaluation_window => '10 minutes', max_error_rate => 0.30,
					 success_rate_ratio => 0.95, p95_latency_ratio => 1.5,
					 failure_threshold => 3, max_stage_failures => 2,
					 analysis => 'threshold')
	AS flaky \gset
SELECT canary_start(:'flaky', t(0));
SELECT traffic('lc-flaky', 'v1', 'v2', 10, 3000, 0, 10, 0.01, 0.20);
SELECT traffic('lc-flaky', 'v1', 'v2', 10, 3000, 10, 20, 0.01, 0.01);
SELECT traffic('lc-flaky', 'v1', 'v2', 10, 3000, 20, 30, 0.01, 0.20);
SELECT * FROM ev(:'flaky', 10);
SELECT * FROM state(:'flaky');
SELECT * FROM ev(:'flaky', 20);
SELECT * FROM state(:'flaky');
SELECT * FROM ev(:'flaky', 30);
SELECT * FROM state(:'flaky');

--
-- An unhealthy baseline pauses: no fair comparison exists.
--
SELECT setseed(0.44);
SELECT canary_register_agent('lc-search', 'v3');
SELECT canary_create('lc-search', 'v4', stages => ARRAY[10, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 p95_latency_ratio => 1.5, analysis => 'threshold') AS search \gset
SELECT canary_start(:'search', t(0));
SELECT traffic('lc-search', 'v3', 'v4', 10, 3000, 0, 30, 0.15, 0.15);
SELECT * FROM ev(:'search', 30);
SELECT * FROM state(:'search');
-- While paused, an evaluation records that it waits and changes nothing.
SELECT * FROM ev(:'search', 35);
SELECT * FROM state(:'search');
SELECT * FROM routed('lc-search');
SELECT canary_resume(:'search');
SELECT * FROM state(:'search');

--
-- No data: before the deadline the rollout waits; after it, it pauses.
--
SELECT setseed(0.55);
SELECT canary_register_agent('lc-faq', 'v1');
SELECT canary_create('lc-faq', 'v2', stages => ARRAY[5, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 nodata_deadline => '20 minutes') AS faq \gset
SELECT canary_start(:'faq', t(0));
SELECT traffic('lc-faq', 'v1', 'v2', 5, 600, 0, 30, 0.01, 0.01);
SELECT * FROM ev(:'faq', 10);
SELECT * FROM ev(:'faq', 25);
SELECT * FROM state(:'faq');

-- nodata_action rollback rolls back instead.
SELECT canary_register_agent('lc-faq2', 'v1');
SELECT canary_create('lc-faq2', 'v2', stages => ARRAY[5, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 max_error_rate => 0.05, nodata_deadline => '20 minutes',
					 nodata_action => 'rollback')
	AS faq2 \gset
SELECT canary_start(:'faq2', t(0));
SELECT executions('lc-faq2', 'v1', 500, 0, 25, 0.01, 180);
SELECT * FROM ev(:'faq2', 25);
SELECT * FROM state(:'faq2');

--
-- Superseding a paused rollout ends it and records the transition.
--
SELECT canary_create('lc-faq', 'v3', supersede => true) AS faq_v3 \gset
SELECT * FROM state(:'faq');
SELECT event, old_status, new_status, old_percentage, new_percentage, brief(reason)
FROM canary.transitions WHERE deployment_id = :'faq' ORDER BY id;
SELECT event_type FROM canary.events WHERE deployment_id = :'faq' ORDER BY id;

--
-- Approval gate before stage 2: the rollout pauses at the end of stage 1,
-- and after canary_approve() the next evaluation moves on without
-- restarting stage 1.
--
SELECT setseed(0.66);
SELECT canary_register_agent('lc-gate', 'v1');
SELECT canary_create('lc-gate', 'v2', stages => ARRAY[10, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 p95_latency_ratio => 1.5, approval_stages => ARRAY[2])
	AS gate \gset
SELECT canary_start(:'gate', t(0));
SELECT traffic('lc-gate', 'v1', 'v2', 10, 3000, 0, 40, 0.01, 0.01);
SELECT * FROM ev(:'gate', 30);
SELECT * FROM ev(:'gate', 35);
SELECT canary_approve(:'gate');
SELECT * FROM state(:'gate');
SELECT * FROM ev(:'gate', 40);
SELECT * FROM state(:'gate');

--
-- Inconclusive verdict.  The sequential judge calls a stage inconclusive
-- when a test's evidence of a regression is past the square root of its
-- threshold without reaching it (here the errors test, canary 7% against
-- baseline 5%).  At the stage deadline the rollout pauses for a human;
-- canary_resume() accepts it, and the same evidence does not pause the
-- attempt again.
--
SELECT setseed(0.77);
SELECT canary_register_agent('lc-unsure', 'v1');
SELECT canary_create('lc-unsure', 'v2', stages => ARRAY[10, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.20,
					 p95_latency_ratio => 1.5, analysis => 'sequential')
	AS unsure \gset
SELECT canary_start(:'unsure', t(0));
SELECT traffic('lc-unsure', 'v1', 'v2', 10, 6000, 0, 30, 0.05, 0.07);
SELECT decision, stage, percentage FROM canary_evaluate(:'unsure', t(30));
SELECT decision, verdict, reason ~ '^verdict inconclusive at the end of stage 1' AS at_deadline,
	   reason ~ 'errors inconclusive: evidence' AS errors_inconclusive
FROM canary.decisions WHERE deployment_id = :'unsure' ORDER BY id DESC LIMIT 1;
SELECT * FROM state(:'unsure');
SELECT pause_kind FROM canary.deployments WHERE id = :'unsure';
SELECT canary_resume(:'unsure');
SELECT * FROM ev(:'unsure', 31);
SELECT * FROM state(:'unsure');
SELECT inconclusive_accepted FROM canary.deployments WHERE id = :'unsure';

--
-- Bake time: after the last stage the canary keeps its share under watch;
-- it is promoted only after the bake time elapsed healthy, and a
-- regression during the bake rolls back to the old stable version.
--
SELECT setseed(0.88);
SELECT canary_register_agent('lc-bake', 'v1');
SELECT canary_create('lc-bake', 'v2', stages => ARRAY[50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 p95_latency_ratio => 1.5, bake_time => '60 minutes')
	AS bake \gset
SELECT canary_start(:'bake', t(0));
SELECT traffic('lc-bake', 'v1', 'v2', 50, 1000, 0, 90, 0.01, 0.01);
SELECT * FROM ev(:'bake', 30);
SELECT * FROM state(:'bake');
SELECT * FROM ev(:'bake', 60);
SELECT * FROM ev(:'bake', 90);
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'lc-bake';

SELECT canary_register_agent('lc-bake2', 'v1');
SELECT canary_create('lc-bake2', 'v2', stages => ARRAY[50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.05,
					 p95_latency_ratio => 1.5, bake_time => '60 minutes')
	AS bake2 \gset
SELECT canary_start(:'bake2', t(0));
SELECT traffic('lc-bake2', 'v1', 'v2', 50, 1000, 0, 30, 0.01, 0.01);
SELECT traffic('lc-bake2', 'v1', 'v2', 50, 1000, 30, 60, 0.01, 0.20);
SELECT * FROM ev(:'bake2', 30);
SELECT * FROM ev(:'bake2', 60);
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'lc-bake2';
SELECT * FROM routed('lc-bake2');

--
-- Operator actions: pause, resume, percentage override, promotion refused
-- after an unhealthy verdict unless forced, and undo.
--
SELECT setseed(0.99);
SELECT canary_register_agent('lc-ops', 'v1');
SELECT canary_create('lc-ops', 'v2', stages => ARRAY[10, 50],
					 stage_duration => '30 minutes', min_samples => 100,
					 evaluation_window => '30 minutes', max_error_rate => 0.50,
					 success_rate_ratio => 0.95, p95_latency_ratio => 1.5,
					 failure_threshold => 3) AS ops \gset
SELECT canary_start(:'ops', t(0));
SELECT canary_pause(:'ops', 'investigating a support ticket');
SELECT * FROM state(:'ops');
SELECT canary_resume(:'ops');
SELECT canary_set_percentage(:'ops', 12.5);
SELECT * FROM state(:'ops');
SELECT traffic('lc-ops', 'v1', 'v2', 10, 3000, 0, 30, 0.01, 0.20);
SELECT * FROM ev(:'ops', 30);
SELECT expect_error(format('SELECT canary_promote(%L)', :'ops'));
SELECT canary_promote(:'ops', 'customer needs the fix today', force => true);
SELECT * FROM state(:'ops');
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'lc-ops';
SELECT canary_undo('lc-ops');
SELECT stable_version, previous_stable_version FROM canary.agents WHERE agent_id = 'lc-ops';
SELECT * FROM state(:'ops');
SELECT event, old_status, new_status, old_percentage, new_percentage, automatic,
	   actor = current_user AS by_me, reason
FROM canary.transitions WHERE deployment_id = :'ops' ORDER BY id;
SELECT decision, automatic, brief(reason) AS reason FROM canary.decisions
WHERE deployment_id = :'ops' ORDER BY id;

--
-- Illegal transitions and bad arguments, one per line.
--
SELECT canary_register_agent('lc-idle', 'v1');
SELECT canary_create('lc-idle', 'v2') AS pending \gset
SELECT expect_error(format('SELECT canary_evaluate(%L, t(0))', :'pending'));
SELECT expect_error(format('SELECT canary_pause(%L)', :'pending'));
SELECT expect_error(format('SELECT canary_resume(%L)', :'pending'));
SELECT expect_error(format('SELECT canary_approve(%L)', :'pending'));
SELECT expect_error(format('SELECT canary_resume(%L)', :'support'));
SELECT expect_error(format('SELECT canary_evaluate(%L, t(100))', :'support'));
SELECT expect_error(format('SELECT canary_pause(%L)', :'support'));
SELECT expect_error(format('SELECT canary_rollback(%L)', :'support'));
SELECT expect_error(format('SELECT canary_promote(%L)', :'billing_other'));
SELECT expect_error(format('SELECT canary_resume(%L)', :'billing_other'));
SELECT expect_error(format('SELECT canary_retry(%L)', :'support'));
SELECT expect_error(format('SELECT canary_retry(%L)', :'billing'));
SELECT expect_error(format('SELECT canary_resume(%L)', :'billing'));
SELECT expect_error(format('SELECT canary_pause(%L)', :'faq'));
SELECT expect_error(format('SELECT canary_evaluate(%L, t(100))', :'faq'));
SELECT expect_error(format('SELECT canary_set_percentage(%L, 10)', :'faq'));
SELECT expect_error(format('SELECT canary_approve(%L)', :'billing'));
SELECT expect_error(format('SELECT canary_set_percentage(%L, 150)', :'billing'));
SELECT expect_error(format('SELECT canary_set_percentage(%L, 12.345)', :'billing'));
SELECT expect_error(format('SELECT canary_set_percentage(%L, NULL)', :'billing'));
SELECT expect_error(format('SELECT canary_pause(%L, NULL)', :'billing'));
SELECT expect_error(format('SELECT canary_evaluate(%L, t(10))', :'billing'));
SELECT expect_error($$SELECT canary_evaluate('00000000-0000-0000-0000-000000000000')$$);
SELECT expect_error($$SELECT canary_pause('00000000-0000-0000-0000-000000000000')$$);
SELECT expect_error($$SELECT canary_evaluate(NULL)$$);
SELECT expect_error(format('SELECT canary_evaluate(%L, %L)', :'billing', 'infinity'));
SELECT expect_error($$SELECT canary_evaluate_all('-infinity')$$);
SELECT expect_error($$SELECT canary_undo('lc-nobody')$$);
SELECT expect_error($$SELECT canary_undo('lc-idle')$$);
SELECT expect_error($$SELECT canary_undo('lc-ops')$$);
SELECT canary_create('lc-bake', 'v3') AS bake_next \gset
SELECT expect_error($$SELECT canary_undo('lc-bake')$$);
SELECT canary_rollback(:'bake_next');

--
-- canary_evaluate_all evaluates every running rollout in its own
-- subtransaction: one that fails reports its error, the others go on.
--
SELECT canary_start(:'pending', t(500));
SELECT agent_id, decision,
	   regexp_replace(error, '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>') AS error,
	   regexp_replace(reason, '\d+ of \d+', 'n of m') AS reason
FROM canary_evaluate_all(t(120)) ORDER BY agent_id;
SELECT status, count(*) FROM canary.deployments
WHERE agent_id LIKE 'lc-%' GROUP BY status ORDER BY status;
-- Paused rollouts are evaluated too, because their frozen split still
-- serves the canary; without a proven regression they wait.
SELECT e.agent_id, e.decision, d.status
FROM canary_evaluate_all(t(121)) e JOIN canary.deployments d ON d.id = e.deployment_id
WHERE d.agent_id LIKE 'lc-%' ORDER BY e.agent_id;

--
-- Every rollout, with its outcome and how far it got.
--
SELECT agent_id, canary_version, status, outcome, attempt, max_stage_reached,
	   stage_count, brief(final_reason) AS final_reason
FROM canary.rollouts WHERE agent_id LIKE 'lc-%'
ORDER BY agent_id, created_at;

-- One event per transition, each with a payload that names it.
SELECT count(*) AS transitions,
	   (SELECT count(*) FROM canary.events e WHERE e.agent_id LIKE 'lc-%') AS events
FROM canary.transitions t WHERE t.agent_id LIKE 'lc-%';
SELECT event_type, count(*) FROM canary.events WHERE agent_id LIKE 'lc-%'
GROUP BY event_type ORDER BY event_type;

-- A relay claims each event exactly once.
WITH claimed AS (
	UPDATE canary.events SET claimed_at = now(), claimed_by = 'relay-1'
	WHERE id IN (SELECT id FROM canary.events WHERE claimed_at IS NULL
				 ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 10)
	RETURNING id
)
SELECT count(*) AS claimed FROM claimed;
SELECT count(*) FILTER (WHERE claimed_at IS NOT NULL) AS claimed,
	   count(*) FILTER (WHERE claimed_by = 'relay-1') AS by_relay
FROM canary.events;

-- Functions declare volatility, parallel safety and a fixed search_path.
SELECT proname, provolatile, proparallel, proconfig
FROM pg_proc
WHERE proname IN ('canary_evaluate', 'canary_evaluate_all', 'canary_pause',
				  'canary_resume', 'canary_rollback', 'canary_promote',
				  'canary_approve', 'canary_set_percentage', 'canary_undo',
				  'canary_retry', 'canary_history')
ORDER BY proname;

-- History tables are dumped with the extension's data.
SELECT c.relname FROM pg_extension e,
	   unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
WHERE e.extname = 'canary' AND c.relname IN
	('decisions', 'transitions', 'events', 'history_id_seq', 'events_id_seq')
ORDER BY c.relname;

-- Leave an empty database for the next test.
SET client_min_messages = warning;
DROP EXTENSION canary CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
