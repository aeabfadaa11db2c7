--
-- Sequential judge: the test martingale checked against its formula, its
-- error guarantee checked exactly and by simulation, and rollouts driven
-- through canary_evaluate() with the clock given through "at".
--
-- The statistic (see canary_stats_sequential_add in src/stats.c): in each
-- time bucket j, the canary had x_j events among n_cj requests and the
-- baseline y_j among n_bj; with K_j = x_j + y_j, Fisher's noncentral
-- hypergeometric likelihood ratio for odds ratio psi is
--   L_j(psi) = psi^x_j / E_0[psi^U],  U ~ hypergeometric(n_cj, n_bj, K_j),
-- and the evidence is M = sum_k w_k prod_j L_j(psi_k) with sum_k w_k = 1
-- (Wald 1945 for the likelihood ratio product, Robbins 1970 "Statistical
-- methods related to the law of the iterated logarithm" for the mixture).
-- M is a test martingale, so by Ville's inequality (Ville 1939) it ever
-- reaches 1/a with probability at most a when the canary is no worse.
-- Howard, Ramdas, McAuliffe and Sekhon (2021, Annals of Statistics) give the
-- general framework of such time-uniform tests.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS canary;
RESET client_min_messages;
SET timezone = 'UTC';
SET max_parallel_workers_per_gather = 0;
SET extra_float_digits = 0;
CREATE SCHEMA sequential_test;
SET search_path = sequential_test, public;

-- Print the SQLSTATE, message and hint of the error a statement raises.
CREATE FUNCTION seq_error(statement text) RETURNS text
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

-- Binomial coefficient n over k, exact; 0 outside 0 <= k <= n.
CREATE FUNCTION choose(n integer, k integer) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN k < 0 OR k > n THEN 0
				ELSE factorial(n) / (factorial(k) * factorial(n - k)) END
$$;

-- Hypergeometric probability P(U = u), U the canary's share of k events
-- among nc + nb requests.
CREATE FUNCTION hyper_pmf(u integer, nc integer, nb integer, k integer)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
	SELECT choose(nc, u) * choose(nb, k - u) / choose(nc + nb, k)
$$;

-- L(psi) = psi^x / E_0[psi^U] of one bucket, computed from the formula
-- with exact binomial coefficients.
CREATE FUNCTION formula_ratio(x integer, nc integer, y integer, nb integer,
							  psi numeric) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
	SELECT (psi ^ x / sum(hyper_pmf(u, nc, nb, x + y) * psi ^ u))::float8
	FROM generate_series(0, x + y) AS u
$$;

--
-- The statistic against its formula
--

-- One bucket written out by hand: canary 2 of 4, baseline 0 of 4, psi = 2.
-- U ~ hypergeometric(4, 4, 2): P(0) = 6/28, P(1) = 16/28, P(2) = 6/28, so
-- E_0[2^U] = (6 + 32 + 24) / 28 and L = 4 / (62 / 28) = 112 / 62.
SELECT round(evidence::numeric, 12) AS evidence,
	   round(112 / 62.0, 12) AS by_hand,
	   round(formula_ratio(2, 4, 0, 4, 2)::numeric, 12) AS formula
FROM canary_sequential_evidence('{2}', '{4}', '{0}', '{4}', '{2}');

-- Uneven counts, one odds ratio: canary 3 of 10, baseline 1 of 15.
SELECT abs(log_evidence - ln(formula_ratio(3, 10, 1, 15, 1.5))) < 1e-12 AS matches,
	   round(evidence::numeric, 9) AS evidence
FROM canary_sequential_evidence('{3}', '{10}', '{1}', '{15}', '{1.5}');

-- Several buckets multiply.
SELECT abs(log_evidence - ln(formula_ratio(3, 10, 1, 15, 3) *
							 formula_ratio(0, 7, 2, 9, 3) *
							 formula_ratio(5, 6, 5, 30, 3))) < 1e-12 AS product_matches
FROM canary_sequential_evidence('{3,0,5}', '{10,7,6}', '{1,2,5}', '{15,9,30}', '{3}');

-- Mixture weights are scaled to sum 1: weights 1 and 3 are 1/4 and 3/4.
SELECT abs(evidence - (0.25 * formula_ratio(3, 10, 1, 15, 1.5) * formula_ratio(4, 8, 1, 8, 1.5) +
					   0.75 * formula_ratio(3, 10, 1, 15, 5) * formula_ratio(4, 8, 1, 8, 5))) < 1e-12
	   AS mixture_matches
FROM canary_sequential_evidence('{3,4}', '{10,8}', '{1,1}', '{15,8}', '{1.5,5}', '{1,3}');

-- Without odds ratios, the default grid 1.1 .. 30 is weighed equally.
SELECT abs(evidence - (SELECT avg(formula_ratio(3, 10, 1, 15, psi) * formula_ratio(4, 8, 1, 8, psi))
					   FROM unnest('{1.1,1.2,1.35,1.5,1.75,2,3,5,10,30}'::numeric[]) AS psi)) < 1e-12
	   AS default_grid_matches
FROM canary_sequential_evidence('{3,4}', '{10,8}', '{1,1}', '{15,8}');

-- Fewer canary events than expected give evidence below 1.
SELECT evidence < 1 AS below_one,
	   abs(log_evidence - ln(formula_ratio(0, 10, 6, 15, 2))) < 1e-12 AS matches
FROM canary_sequential_evidence('{0}', '{10}', '{6}', '{15}', '{2}');

-- Supports of up to 64 values are summed in plain arithmetic, longer ones
-- and those whose sums overflow in log space; all match the formula.
-- Canary 30 of 63 and baseline 33 of 100 have 64 possible canary shares,
-- canary 30 of 64 and baseline 34 of 100 have 65, and odds ratio 1e200
-- overflows at the third share.
SELECT label, abs(log_evidence - ln(formula_ratio(x, nc, y, nb, psi))) < 1e-9 AS matches
FROM (VALUES
	('support of 64', 30, 63, 33, 100, 2.0),
	('support of 65', 30, 64, 34, 100, 2.0),
	('overflowing odds ratio', 2, 5, 1, 5, 1e200)
) AS v (label, x, nc, y, nb, psi),
LATERAL canary_sequential_evidence(ARRAY[x], ARRAY[nc], ARRAY[y], ARRAY[nb],
								   ARRAY[psi::float8]) AS e
ORDER BY label;

-- Large counts stay finite: log space, no factorials.
SELECT round(log_evidence::numeric, 3) AS log_evidence, evidence > 1e100 AS huge
FROM canary_sequential_evidence('{30000}', '{100000}', '{20000}', '{100000}');

-- Products of 400 buckets reach far beyond the range of a double in both
-- directions, and the two odds ratios' products differ by more than that
-- range.  The evidence still matches the formula, summed in log space here.
SELECT label, round(log_evidence::numeric, 3) AS log_evidence,
	   abs(log_evidence - expected) < 1e-9 * abs(expected) AS matches
FROM (VALUES ('canary better', 0, 10), ('canary worse', 10, 0)) AS v (label, x, y),
LATERAL (SELECT 400 * ln(formula_ratio(x, 10, y, 20, 1.1)) AS small_psi,
				400 * ln(formula_ratio(x, 10, y, 20, 30)) AS large_psi) AS l,
LATERAL (SELECT greatest(small_psi, large_psi) + ln(0.5) +
				ln(1 + exp(greatest(least(small_psi, large_psi) -
									greatest(small_psi, large_psi), -700))) AS expected) AS f,
LATERAL canary_sequential_evidence(array_fill(x::bigint, '{400}'), array_fill(10::bigint, '{400}'),
								   array_fill(y::bigint, '{400}'), array_fill(20::bigint, '{400}'),
								   '{1.1,30}') AS e
ORDER BY label;

-- A weight of 1e-300 on the odds ratio whose product is largest: its term
-- still counts and the evidence stays finite.
SELECT n, round(log_evidence::numeric, 3) AS log_evidence,
	   abs(log_evidence - expected) < 1e-9 * abs(expected) AS matches
FROM (VALUES (168), (1000)) AS v (n),
LATERAL (SELECT ln(1e-300) + n * ln(formula_ratio(0, 10, 10, 20, 1.1)) AS small_psi,
				n * ln(formula_ratio(0, 10, 10, 20, 30)) AS large_psi) AS l,
LATERAL (SELECT greatest(small_psi, large_psi) +
				ln(1 + exp(greatest(least(small_psi, large_psi) -
									greatest(small_psi, large_psi), -700))) AS expected) AS f,
LATERAL canary_sequential_evidence(array_fill(0::bigint, ARRAY[n]), array_fill(10::bigint, ARRAY[n]),
								   array_fill(10::bigint, ARRAY[n]), array_fill(20::bigint, ARRAY[n]),
								   '{1.1,30}', '{1e-300,1}') AS e
ORDER BY n;

--
-- Buckets without information leave the evidence at exactly 1
--
SELECT label, log_evidence, evidence
FROM (VALUES
	('no buckets', (canary_sequential_evidence('{}', '{}', '{}', '{}')).*),
	('no canary requests', (canary_sequential_evidence('{0}', '{0}', '{4}', '{10}')).*),
	('no baseline requests', (canary_sequential_evidence('{4}', '{10}', '{0}', '{0}')).*),
	('no events', (canary_sequential_evidence('{0}', '{10}', '{0}', '{10}')).*),
	('all events', (canary_sequential_evidence('{10}', '{10}', '{10}', '{10}')).*)
) AS v (label, log_evidence, evidence)
ORDER BY label;

-- An empty bucket between two others changes nothing.
SELECT a.evidence = b.evidence AS unchanged
FROM canary_sequential_evidence('{3,5}', '{10,6}', '{1,5}', '{15,30}') AS a,
	 canary_sequential_evidence('{3,0,5}', '{10,0,6}', '{1,4,5}', '{15,12,30}') AS b;

--
-- The guarantee, computed exactly on a small design
--
-- Three buckets with fixed margins: (n_c, n_b, K) = (3, 5, 2), (4, 2, 3),
-- (1, 6, 4).  Every outcome (x1, x2, x3) is enumerated with its null
-- probability.  A martingale keeps mean 1 (E[M] = 1 under the null); under
-- an odds ratio of 0.5 (a better canary) the mean is at most 1; and the
-- probability that M ever reaches 1/a, over the three looks, is at most a.
CREATE TABLE exact_outcomes AS
SELECT x1, x2, x3,
	   hyper_pmf(x1, 3, 5, 2) * hyper_pmf(x2, 4, 2, 3) * hyper_pmf(x3, 1, 6, 4) AS p_null,
	   0.5 ^ (x1 + x2 + x3) * hyper_pmf(x1, 3, 5, 2) * hyper_pmf(x2, 4, 2, 3) *
		   hyper_pmf(x3, 1, 6, 4) AS weight_better,
	   (canary_sequential_evidence(ARRAY[x1, x2, x3], '{3,4,1}',
								   ARRAY[2 - x1, 3 - x2, 4 - x3], '{5,2,6}')).evidence AS m3,
	   greatest((canary_sequential_evidence(ARRAY[x1], '{3}', ARRAY[2 - x1], '{5}')).evidence,
				(canary_sequential_evidence(ARRAY[x1, x2], '{3,4}', ARRAY[2 - x1, 3 - x2], '{5,2}')).evidence,
				(canary_sequential_evidence(ARRAY[x1, x2, x3], '{3,4,1}',
											ARRAY[2 - x1, 3 - x2, 4 - x3], '{5,2,6}')).evidence) AS sup_m
FROM generate_series(0, 2) AS x1, generate_series(1, 3) AS x2, generate_series(0, 1) AS x3;
SELECT round(sum(p_null), 12) AS total_probability,
	   round(sum(p_null * m3::numeric), 12) AS null_mean,
	   sum(weight_better * m3::numeric) / sum(weight_better) < 1 AS better_mean_below_one
FROM exact_outcomes;
SELECT a, round(coalesce(sum(p_null) FILTER (WHERE sup_m >= 1 / a), 0), 6) AS p_reject,
	   coalesce(sum(p_null) FILTER (WHERE sup_m >= 1 / a), 0) <= a AS within_a
FROM exact_outcomes, unnest('{0.05,0.1,0.2,0.5}'::numeric[]) AS a
GROUP BY a ORDER BY a;

--
-- A/A simulation: 200 seeded runs of 20 buckets, 20 canary and 60 baseline
-- requests per bucket, 5% events in both.  The sup over all 20 looks
-- reaches 1/a = 10 in at most a = 10% of the runs, allowing three standard
-- errors of simulation noise (0.1 + 3 * sqrt(0.09 / 200) = 0.164).
-- Repeating a one-sided Fisher test at p < 0.1 on the same looks, by
-- contrast, rejects far more often than 10%.
--
SELECT setseed(0.31);
CREATE TABLE aa_buckets AS
SELECT run, bucket,
	   (SELECT count(*) FILTER (WHERE random() < 0.05) FROM generate_series(1, 20 + 0 * run)) AS x,
	   (SELECT count(*) FILTER (WHERE random() < 0.05) FROM generate_series(1, 60 + 0 * run)) AS y
FROM generate_series(1, 200) AS run, generate_series(1, 20) AS bucket;
CREATE TABLE aa_looks AS
SELECT b.run, l.look,
	   (canary_sequential_evidence(array_agg(b.x ORDER BY b.bucket),
								   array_fill(20::bigint, ARRAY[l.look]),
								   array_agg(b.y ORDER BY b.bucket),
								   array_fill(60::bigint, ARRAY[l.look]))).log_evidence,
	   canary_fisher_exact(sum(b.x)::bigint, 20 * l.look, sum(b.y)::bigint, 60 * l.look,
						   'greater') AS fisher_p
FROM aa_buckets b JOIN generate_series(1, 20) AS l (look) ON b.bucket <= l.look
GROUP BY b.run, l.look;
SELECT count(*) AS runs,
	   avg((sup >= ln(10))::int) AS sequential_rejection_rate,
	   avg((sup >= ln(10))::int) <= 0.164 AS sequential_within_bound,
	   avg(fisher_rejected::int) AS repeated_fisher_rejection_rate,
	   avg(fisher_rejected::int) > 0.164 AS repeated_fisher_beyond_bound
FROM (SELECT run, max(log_evidence) AS sup, bool_or(fisher_p < 0.1) AS fisher_rejected
	  FROM aa_looks GROUP BY run) AS r;

-- The same design with a real regression (canary events 10%, odds ratio
-- 2.1): the evidence grows with the buckets, and most runs reach 1/a.
SELECT setseed(0.32);
CREATE TABLE worse_buckets AS
SELECT run, bucket,
	   (SELECT count(*) FILTER (WHERE random() < 0.10) FROM generate_series(1, 20 + 0 * run)) AS x,
	   (SELECT count(*) FILTER (WHERE random() < 0.05) FROM generate_series(1, 60 + 0 * run)) AS y
FROM generate_series(1, 200) AS run, generate_series(1, 20) AS bucket;
CREATE TABLE worse_looks AS
SELECT b.run, l.look,
	   (canary_sequential_evidence(array_agg(b.x ORDER BY b.bucket),
								   array_fill(20::bigint, ARRAY[l.look]),
								   array_agg(b.y ORDER BY b.bucket),
								   array_fill(60::bigint, ARRAY[l.look]))).log_evidence
FROM worse_buckets b JOIN generate_series(1, 20) AS l (look) ON b.bucket <= l.look
GROUP BY b.run, l.look;
SELECT look, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY log_evidence)::numeric, 2) AS median_log_evidence
FROM worse_looks WHERE look IN (5, 10, 20) GROUP BY look ORDER BY look;
SELECT avg((sup >= ln(10))::int) AS detection_rate,
	   avg((sup >= ln(10))::int) > 0.5 AS most_detected
FROM (SELECT run, max(log_evidence) AS sup FROM worse_looks GROUP BY run) AS r;

--
-- Bad arguments, one per line
--
SELECT seq_error($$SELECT canary_sequential_evidence(NULL, '{1}', '{1}', '{1}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{1}', '{1}', '{1,2}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1,NULL}', '{1,1}', '{1,1}', '{1,1}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{{1}}', '{{1}}', '{{1}}', '{{1}}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{3}', '{2}', '{1}', '{5}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{-1}', '{2}', '{1}', '{5}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{0.5}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{1}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{2,NaN}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{2,3}', '{1}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{2,3}', '{1,-1}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', '{2,3}', '{0,0}')$$);
SELECT seq_error($$SELECT canary_sequential_evidence('{1}', '{2}', '{1}', '{5}', NULL, '{1}')$$);

--
-- Rollouts judged from an execution log, with the clock given through "at"
--
CREATE TABLE logs (agent_id text NOT NULL, version text NOT NULL, status text,
				   latency_ms float8, "timestamp" timestamptz NOT NULL);
CREATE INDEX logs_evaluation ON logs (agent_id, version, "timestamp");
SET canary.execution_log_table = 'sequential_test.logs';

-- All times are minutes after a fixed base time.
CREATE FUNCTION t(minutes numeric) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
	SELECT '2024-03-01 10:00:00+00'::timestamptz + minutes * interval '1 minute'
$$;

-- Write per_minute * (to - from) executions of one version at uniformly
-- random times in (from, to) minutes, a Poisson process given its count.
-- Latency is log-normal, median 800 ms and sigma 0.6, with a heavy tail:
-- 2% of the requests take four times as long.  tail stretches the upper
-- half of the distribution: the latency at the normal deviate z > 0 is
-- multiplied by (1 + tail)^((z / 1.645)^2), so the p95 grows by the factor
-- 1 + tail and the median stays.  Errors cluster: in the first two minutes
-- of every ten, both versions fail three times as often, and half as often
-- otherwise, so error_rate is the average.  The caller seeds random().
CREATE FUNCTION traffic(agent text, version text, per_minute float8,
						from_minute numeric, to_minute numeric,
						error_rate float8 DEFAULT 0.01, tail float8 DEFAULT 0)
RETURNS void LANGUAGE sql AS $$
	INSERT INTO logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT agent, version,
		   CASE WHEN u < error_rate * CASE WHEN floor(m)::integer % 10 < 2 THEN 3 ELSE 0.5 END
				THEN 'error' ELSE 'success' END,
		   round((800 * exp(0.6 * z + ln(1 + tail) * (greatest(z, 0) / 1.645) ^ 2) *
				  CASE WHEN v < 0.02 THEN 4 ELSE 1 END)::numeric, 1),
		   t(m::numeric)
	FROM (SELECT from_minute + random() * (to_minute - from_minute) AS m,
				 random() AS u, random() AS v,
				 sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z
		  FROM generate_series(1, round(per_minute * (to_minute - from_minute))::integer)) AS g
$$;

-- Write the traffic of the default stages (5, 25, 50, 75, 100% for 30
-- minutes each) from minute `from` to `to`: total requests per minute,
-- split by the stage's percentage.
CREATE FUNCTION staged_traffic(agent text, per_minute float8, from_minute integer,
							   to_minute integer, baseline_error_rate float8,
							   canary_error_rate float8, tail float8 DEFAULT 0)
RETURNS void LANGUAGE sql AS $$
	SELECT count(*) FROM (
		SELECT traffic(agent, 'v2', per_minute * s.pct / 100, c.lo, c.hi, canary_error_rate, tail),
			   traffic(agent, 'v1', per_minute * (100 - s.pct) / 100, c.lo, c.hi, baseline_error_rate)
		FROM (VALUES (0, 30, 5), (30, 60, 25), (60, 90, 50), (90, 120, 75), (120, 150, 100)) AS s (first, last, pct),
			 LATERAL (SELECT greatest(s.first, from_minute) AS lo, least(s.last, to_minute) AS hi) AS c
		WHERE c.lo < c.hi) AS w
$$;

-- Evaluate a rollout once a minute over (from, to] minutes, stopping after a
-- rollback or promotion, and record every decision.
CREATE TABLE decisions (agent text, minute integer, decision text, reason text,
						stage integer, percentage numeric, verdict text);
CREATE FUNCTION drive(agent text, id uuid, from_minute integer, to_minute integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	e record;
BEGIN
	FOR minute IN from_minute + 1 .. to_minute LOOP
		SELECT * INTO e FROM canary_evaluate(id, t(minute));
		INSERT INTO decisions
		SELECT agent, minute, e.decision, e.reason, e.stage, e.percentage, m.verdict
		FROM canary.metrics m WHERE m.id = e.metrics_id;
		EXIT WHEN e.decision IN ('rollback', 'promote');
	END LOOP;
END
$$;

-- Decisions of a rollout other than "continue", and its last decision.
CREATE FUNCTION outcome(agent text)
RETURNS TABLE (minute integer, decision text, stage integer, verdict text)
LANGUAGE sql AS $$
	SELECT d.minute, d.decision, d.stage, d.verdict FROM decisions d
	WHERE d.agent = outcome.agent
	  AND (d.decision <> 'continue' OR d.minute = (SELECT max(minute) FROM decisions x WHERE x.agent = outcome.agent))
	ORDER BY d.minute
$$;

-- Reasons of the last decision, one clause per line, numbers kept.
CREATE FUNCTION last_reason(agent text) RETURNS SETOF text
LANGUAGE sql AS $$
	SELECT r FROM decisions d, regexp_split_to_table(d.reason, '; ') WITH ORDINALITY AS s (r, n)
	WHERE d.agent = last_reason.agent
	  AND d.minute = (SELECT max(minute) FROM decisions x WHERE x.agent = last_reason.agent)
	ORDER BY n
$$;

--
-- Doubled error rate (1% to 2%) at 1000 requests per minute: rolled back
-- early in the 25% stage, with the evidence in the reason.
--
SELECT setseed(0.41);
SELECT canary_register_agent('seq-errors', 'v1');
SELECT canary_create('seq-errors', 'v2') AS errors_id \gset
SELECT analysis, alpha FROM canary.deployments WHERE id = :'errors_id';
SELECT canary_start(:'errors_id', t(0));
SELECT staged_traffic('seq-errors', 1000, 0, 60, 0.01, 0.02);
SELECT drive('seq-errors', :'errors_id', 0, 60);
SELECT * FROM outcome('seq-errors');
SELECT * FROM last_reason('seq-errors');

--
-- Tail-only regression: the canary's p95 is 25% higher, its median is not.
--
SELECT setseed(0.42);
SELECT canary_register_agent('seq-tail', 'v1');
SELECT canary_create('seq-tail', 'v2') AS tail_id \gset
SELECT canary_start(:'tail_id', t(0));
SELECT staged_traffic('seq-tail', 1000, 0, 90, 0.01, 0.01, tail => 0.25);
SELECT drive('seq-tail', :'tail_id', 0, 90);
SELECT * FROM outcome('seq-tail');
SELECT * FROM last_reason('seq-tail');
SELECT round((canary_p50 / baseline_p50)::numeric, 2) AS p50_ratio,
	   round((canary_p95 / baseline_p95)::numeric, 2) AS p95_ratio
FROM canary.metrics m WHERE m.deployment_id = :'tail_id'
ORDER BY m.id DESC LIMIT 1;
SELECT t->>'metric' AS metric, (t->>'failed')::boolean AS failed,
	   round((t->>'max_log_evidence')::numeric, 1) AS max_log_evidence,
	   t->>'buckets' AS buckets, round((t->>'odds_ratio')::numeric, 2) AS odds_ratio
FROM canary.metrics m, jsonb_array_elements(m.details->'sequential'->'tests') AS t
WHERE m.id = (SELECT max(id) FROM canary.metrics WHERE deployment_id = :'tail_id')
ORDER BY metric;

--
-- A/A canary at 100 requests per minute, judged on the same rows by both
-- analyses with min_samples 20 and max_error_rate 5% (the default of 2%
-- pauses the threshold rollout during the first error burst, when the
-- baseline breaks it): the fixed thresholds roll it back, the
-- sequential judge takes it through every default stage, including the
-- 100% stage, whose baseline is the baseline's last window before it, to
-- promotion.
--
SELECT setseed(0.43);
SELECT staged_traffic('seq-aa', 100, 0, 150, 0.01, 0.01);
INSERT INTO logs SELECT 'seq-aa-threshold', version, status, latency_ms, "timestamp"
FROM logs WHERE agent_id = 'seq-aa';
SELECT canary_register_agent('seq-aa', 'v1');
SELECT canary_register_agent('seq-aa-threshold', 'v1');
SELECT canary_create('seq-aa', 'v2', min_samples => 20,
					 max_error_rate => 0.05) AS aa_id \gset
SELECT canary_create('seq-aa-threshold', 'v2', min_samples => 20,
					 max_error_rate => 0.05, analysis => 'threshold') AS aa_threshold_id \gset
SELECT canary_start(:'aa_id', t(0));
SELECT canary_start(:'aa_threshold_id', t(0));
SELECT drive('seq-aa-threshold', :'aa_threshold_id', 0, 150);
SELECT * FROM outcome('seq-aa-threshold');
SELECT * FROM last_reason('seq-aa-threshold');
SELECT drive('seq-aa', :'aa_id', 0, 150);
SELECT * FROM outcome('seq-aa');
SELECT count(*) AS evaluations, count(*) FILTER (WHERE verdict = 'fail') AS failed
FROM decisions WHERE agent = 'seq-aa';
SELECT status, current_percentage FROM canary.deployments WHERE id = :'aa_id';

-- In the 100% stage the baseline window is the one before the stage.
SELECT round(minutes) AS minute, m.canary_requests, m.baseline_requests,
	   round(extract(epoch FROM m.baseline_window_end - t(0)) / 60, 1) AS baseline_end_minute,
	   extract(epoch FROM m.baseline_window_end - m.baseline_window_start) / 60 AS baseline_minutes
FROM canary.metrics m, LATERAL (SELECT extract(epoch FROM m.collected_at - t(0)) / 60 AS minutes) AS x
WHERE m.deployment_id = :'aa_id' AND m.percentage = 100
ORDER BY m.id DESC LIMIT 1;
SELECT r FROM canary.metrics m, unnest(m.reasons) WITH ORDINALITY AS u (r, n)
WHERE m.id = (SELECT max(id) FROM canary.metrics WHERE deployment_id = :'aa_id')
ORDER BY n;

-- The threshold analysis uses the same baseline window at 100%, so its
-- last stage can complete too: 50% for 30 minutes, then 100%.  No errors
-- here: the historic baseline comes from other minutes than the canary's
-- rows, so the fixed-horizon error test would compare a burst minute of the
-- canary with the baseline's average.
SELECT setseed(0.44);
SELECT traffic('seq-full', 'v1', 200, 0, 30, 0), traffic('seq-full', 'v2', 200, 0, 30, 0),
	   traffic('seq-full', 'v2', 400, 30, 60, 0);
SELECT canary_register_agent('seq-full', 'v1');
SELECT canary_create('seq-full', 'v2', stages => '{50,100}', analysis => 'threshold',
					 p95_latency_ratio => 1.25, max_error_rate => 0.10) AS full_id \gset
SELECT canary_start(:'full_id', t(0));
SELECT drive('seq-full', :'full_id', 0, 60);
SELECT * FROM outcome('seq-full');
SELECT m.percentage, m.canary_requests, m.baseline_requests, m.verdict,
	   round(extract(epoch FROM m.baseline_window_end - t(0)) / 60) AS baseline_end_minute
FROM canary.metrics m WHERE m.deployment_id = :'full_id'
ORDER BY m.id DESC LIMIT 1;

-- A 100% stage whose baseline has no row in the attempt before it has no
-- baseline to compare with: nodata, never a comparison with nothing.
SELECT canary_register_agent('seq-alone', 'v1');
SELECT canary_create('seq-alone', 'v2', stages => '{100}') AS alone_id \gset
SELECT canary_start(:'alone_id', t(0));
SELECT traffic('seq-alone', 'v2', 100, 0, 10);
SELECT (m).verdict, (m).baseline_requests, (m).reasons[1]
FROM (SELECT canary_collect_metrics(:'alone_id', '10 minutes', t(10)) AS m) AS c;

--
-- Stages shorter than ten minutes get buckets of a tenth of the stage
-- duration, and a stage needs one complete bucket of its own before it can
-- pass.  With 20-second stages (2-second buckets), a canary that fails half
-- of its requests is rolled back, never promoted for lack of evidence.
--
CREATE FUNCTION drive_seconds(agent text, id uuid, step_seconds integer, steps integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	e record;
BEGIN
	FOR step IN 1 .. steps LOOP
		SELECT * INTO e FROM canary_evaluate(id, t(step * step_seconds / 60.0));
		INSERT INTO decisions
		SELECT agent, step * step_seconds, e.decision, e.reason, e.stage, e.percentage, m.verdict
		FROM canary.metrics m WHERE m.id = e.metrics_id;
		EXIT WHEN e.decision IN ('rollback', 'promote');
	END LOOP;
END
$$;
SELECT setseed(0.47);
SELECT canary_register_agent('seq-short', 'v1');
SELECT canary_create('seq-short', 'v2', stages => '{20,50,100}',
					 stage_duration => '20 seconds', min_samples => 20,
					 max_error_rate => 0.10) AS short_id \gset
SELECT canary_start(:'short_id', t(0));
SELECT count(*) FROM (SELECT traffic('seq-short', 'v2', 300, 0, 3, 0.54),
							 traffic('seq-short', 'v1', 700, 0, 3, 0.01)) AS w;
SELECT drive_seconds('seq-short', :'short_id', 5, 36);
SELECT status, current_stage FROM canary.deployments WHERE id = :'short_id';
SELECT count(*) AS promotions FROM decisions WHERE agent = 'seq-short' AND decision = 'promote';
SELECT (details->'sequential'->>'bucket_seconds')::numeric AS bucket_seconds
FROM canary.metrics WHERE deployment_id = :'short_id' ORDER BY id DESC LIMIT 1;
SELECT decision, reason ~ 'errors worse in the canary' AS errors_failed
FROM decisions WHERE agent = 'seq-short' AND decision <> 'continue';

--
-- Low traffic: 100 requests per minute give the canary about 5 per minute
-- at 5%, 50 in a 10-minute window.  min_samples counts the whole stage with
-- the sequential judge, so the stage completes on its 30 minutes of rows
-- instead of waiting for a window that never holds 100.
--
SELECT setseed(0.53);
SELECT canary_register_agent('seq-slow', 'v1');
SELECT canary_create('seq-slow', 'v2', stages => '{5,25}', min_samples => 100,
					 evaluation_window => '10 minutes', max_error_rate => 0.10) AS slow_id \gset
SELECT canary_start(:'slow_id', t(0));
SELECT count(*) FROM (SELECT traffic('seq-slow', 'v2', 5, 0, 31),
							 traffic('seq-slow', 'v1', 95, 0, 31)) AS w;
SELECT drive('seq-slow', :'slow_id', 0, 31);
SELECT * FROM outcome('seq-slow');
SELECT m.canary_requests AS window_canary, m.stage_canary_requests AS stage_canary
FROM canary.metrics m WHERE m.deployment_id = :'slow_id' AND m.stage = 1
ORDER BY m.id DESC LIMIT 1;

--
-- A paused rollout keeps its split, so the canary still serves traffic: a
-- proven regression rolls it back even while it waits for an operator.
--
SELECT setseed(0.59);
SELECT canary_register_agent('seq-paused', 'v1');
SELECT canary_create('seq-paused', 'v2', stages => '{25,100}',
					 max_error_rate => 0.50) AS paused_id \gset
SELECT canary_start(:'paused_id', t(0));
SELECT canary_pause(:'paused_id', 'operator looks at a dashboard');
SELECT count(*) FROM (SELECT traffic('seq-paused', 'v2', 250, 0, 20, 0.05),
							 traffic('seq-paused', 'v1', 750, 0, 20, 0.01)) AS w;
SELECT drive('seq-paused', :'paused_id', 0, 20);
SELECT * FROM outcome('seq-paused');
SELECT status FROM canary.deployments WHERE id = :'paused_id';
SELECT reason ~ 'errors worse in the canary' AS errors_failed
FROM decisions WHERE agent = 'seq-paused' AND decision = 'rollback';

--
-- Stored evidence: canary_evaluate keeps the evidence of the buckets before
-- its window in canary.sequential_evidence, and the next evaluation reads
-- only the rows after them.  Driven minute by minute through three stages,
-- with two traffic changes whose buckets are left out, every evaluation has
-- the evidence that all rows since the attempt started give.
-- canary_collect_metrics computes that evidence once the stored row is
-- gone, and it never stores evidence itself.
--
CREATE TABLE evidence_check (minute integer, decision text, stored jsonb,
							 recomputed jsonb);
CREATE FUNCTION drive_and_recompute(rollout uuid, from_minute integer, to_minute integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	e record;
	saved canary.sequential_evidence;
BEGIN
	FOR minute IN from_minute + 1 .. to_minute LOOP
		SELECT * INTO e FROM canary_evaluate(rollout, t(minute));
		SELECT * INTO saved FROM canary.sequential_evidence s WHERE s.deployment_id = rollout;
		DELETE FROM canary.sequential_evidence s WHERE s.deployment_id = rollout;
		INSERT INTO evidence_check
		SELECT minute, e.decision, m.details->'sequential', c.details->'sequential'
		FROM canary.metrics m, canary_collect_metrics(rollout, '10 minutes', t(minute)) AS c
		WHERE m.id = e.metrics_id;
		IF saved.deployment_id IS NOT NULL THEN
			INSERT INTO canary.sequential_evidence SELECT saved.*;
		END IF;
		EXIT WHEN e.decision IN ('rollback', 'promote');
	END LOOP;
END
$$;
SELECT setseed(0.61);
SELECT canary_register_agent('seq-stored', 'v1');
SELECT canary_create('seq-stored', 'v2', stages => '{5,25,50}',
					 max_error_rate => 0.05, warmup => '90 seconds') AS stored_id \gset
SELECT canary_start(:'stored_id', t(0));
SELECT staged_traffic('seq-stored', 300, 0, 91, 0.01, 0.01);
SELECT drive_and_recompute(:'stored_id', 0, 91);
SELECT count(*) AS evaluations,
	   count(*) FILTER (WHERE stored - 'stored_until' = recomputed - 'stored_until') AS equal,
	   count(*) FILTER (WHERE stored->>'stored_until' IS NOT NULL) AS continued,
	   count(*) FILTER (WHERE recomputed->>'stored_until' IS NULL) AS read_all,
	   count(*) FILTER (WHERE decision = 'progress') AS progressions,
	   max(minute) AS last_minute,
	   max((stored->>'excluded_buckets')::integer) AS excluded_buckets
FROM evidence_check;
SELECT status FROM canary.deployments WHERE id = :'stored_id';

-- The stored evidence ends on a bucket boundary a window (10 minutes)
-- before the last evaluation, after both traffic changes.
SELECT extract(epoch FROM judged_until - t(0)) / 60 AS judged_until_minute,
	   array_length(traffic_changes, 1) AS traffic_changes, attempt
FROM canary.sequential_evidence WHERE deployment_id = :'stored_id';

-- Rows may arrive up to a window after their timestamp and still count:
-- rows of minute 15 written after the evaluation at minute 20 are in the
-- next evaluation's tests.  Rows of minute 5, written as late, are not,
-- because their bucket was judged and stored.  Recomputed from all rows,
-- the evidence counts both.
SELECT setseed(0.62);
SELECT canary_register_agent('seq-late', 'v1');
SELECT canary_create('seq-late', 'v2', max_error_rate => 0.50) AS late_id \gset
SELECT canary_start(:'late_id', t(0));
SELECT count(*) FROM (SELECT traffic('seq-late', 'v2', 50, 0, 20),
							 traffic('seq-late', 'v1', 950, 0, 20)) AS w;
SELECT drive('seq-late', :'late_id', 0, 20);
SELECT extract(epoch FROM judged_until - t(0)) / 60 AS judged_until_minute
FROM canary.sequential_evidence WHERE deployment_id = :'late_id';
SELECT (details->'sequential'->'error_rate_limit'->>'canary_requests')::integer AS canary_requests
FROM canary.metrics WHERE deployment_id = :'late_id' ORDER BY id DESC LIMIT 1;
SELECT count(*) FROM (SELECT traffic('seq-late', 'v2', 10, 14.5, 15.5, 0),
							 traffic('seq-late', 'v2', 20, 4.5, 5.5, 0)) AS w;
SELECT drive('seq-late', :'late_id', 20, 21);
SELECT (details->'sequential'->'error_rate_limit'->>'canary_requests')::integer AS canary_requests
FROM canary.metrics WHERE deployment_id = :'late_id' ORDER BY id DESC LIMIT 1;
DELETE FROM canary.sequential_evidence WHERE deployment_id = :'late_id';
SELECT (details->'sequential'->'error_rate_limit'->>'canary_requests')::integer AS recomputed_canary_requests
FROM canary_collect_metrics(:'late_id', '10 minutes', t(21));

-- Stored evidence made with other settings is not used: with another
-- execution log table, the evidence is computed from that table's rows.
CREATE TABLE other_logs (LIKE logs INCLUDING ALL);
SET canary.execution_log_table = 'sequential_test.other_logs';
SELECT canary_evaluate(:'late_id', t(22)) IS NOT NULL AS evaluated;
SELECT (details->'sequential'->'error_rate_limit'->>'canary_requests')::integer AS canary_requests
FROM canary.metrics WHERE deployment_id = :'late_id' ORDER BY id DESC LIMIT 1;
SET canary.execution_log_table = 'sequential_test.logs';

-- The latency tests' events counted again in SQL: in each bucket, the
-- canary's and the baseline's latencies above the median and above the p95
-- (percentile_cont) of both versions' latencies together.  Latency rounded
-- to 50 ms gives many equal values around the cuts.
SELECT setseed(0.63);
SELECT canary_register_agent('seq-cuts', 'v1');
SELECT canary_create('seq-cuts', 'v2', max_error_rate => 0.50) AS cuts_id \gset
SELECT canary_start(:'cuts_id', t(0));
SELECT count(*) FROM (SELECT traffic('seq-cuts', 'v2', 40, 0, 20, 0.01, 0.3),
							 traffic('seq-cuts', 'v1', 260, 0, 20)) AS w;
UPDATE logs SET latency_ms = round(latency_ms / 50) * 50 WHERE agent_id = 'seq-cuts';
CREATE TABLE cut_check AS
SELECT t.value->>'metric' AS metric, (t.value->>'buckets')::integer AS buckets,
	   (t.value->>'canary_events')::integer AS canary_events,
	   (t.value->>'baseline_events')::integer AS baseline_events,
	   (m.details->'sequential'->>'origin')::timestamptz AS origin,
	   (m.details->'sequential'->>'complete_buckets')::integer AS complete_buckets
FROM canary_collect_metrics(:'cuts_id', '20 minutes', t(20)) AS m,
	 jsonb_array_elements(m.details->'sequential'->'tests') AS t
WHERE t.value->>'metric' IN ('latency_shift', 'latency_tail');
WITH bucket AS (
	SELECT j, c.origin + j * interval '1 minute' AS lower_end,
		   c.origin + (j + 1) * interval '1 minute' AS upper_end
	FROM (SELECT DISTINCT origin, complete_buckets FROM cut_check) AS c,
		 generate_series(0, c.complete_buckets - 1) AS j
), cut AS (
	SELECT b.j, percentile_cont(0.5) WITHIN GROUP (ORDER BY l.latency_ms) AS median,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS p95
	FROM bucket b
	JOIN logs l ON l.agent_id = 'seq-cuts' AND l."timestamp" > b.lower_end
			   AND l."timestamp" <= b.upper_end
	GROUP BY b.j
), counted AS (
	SELECT count(DISTINCT b.j) AS buckets,
		   count(*) FILTER (WHERE l.version = 'v2' AND l.latency_ms > c.median) AS canary_above_median,
		   count(*) FILTER (WHERE l.version = 'v1' AND l.latency_ms > c.median) AS baseline_above_median,
		   count(*) FILTER (WHERE l.version = 'v2' AND l.latency_ms > c.p95) AS canary_above_p95,
		   count(*) FILTER (WHERE l.version = 'v1' AND l.latency_ms > c.p95) AS baseline_above_p95
	FROM bucket b
	JOIN cut c ON c.j = b.j
	JOIN logs l ON l.agent_id = 'seq-cuts' AND l."timestamp" > b.lower_end
			   AND l."timestamp" <= b.upper_end
)
SELECT k.metric, k.buckets = c.buckets AS same_buckets,
	   k.canary_events = CASE k.metric WHEN 'latency_shift' THEN c.canary_above_median
						 ELSE c.canary_above_p95 END AS same_canary_events,
	   k.baseline_events = CASE k.metric WHEN 'latency_shift' THEN c.baseline_above_median
						   ELSE c.baseline_above_p95 END AS same_baseline_events,
	   k.canary_events > 0 AND k.baseline_events > 0 AS has_events
FROM cut_check k, counted c
ORDER BY k.metric;

-- Each decision's snapshot of its metrics row keeps every digit, though
-- this file sets extra_float_digits = 0.
SELECT count(*) > 100 AS many_decisions,
	   count(*) FILTER (WHERE (d.metrics->>'canary_p95')::float8 IS DISTINCT FROM m.canary_p95
						   OR (d.metrics->>'baseline_mean_latency')::float8
							  IS DISTINCT FROM m.baseline_mean_latency) AS inexact
FROM canary.decisions d JOIN canary.metrics m ON m.id = d.metrics_id;

--
-- Function attributes and comments
--
SELECT p.proname, p.provolatile, p.proparallel,
	   obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p WHERE p.proname = 'canary_sequential_evidence';
SELECT pg_get_function_identity_arguments('canary_sequential_evidence'::regproc) AS arguments;

RESET canary.execution_log_table;
RESET search_path;

-- Leave an empty database for the next test.
SET client_min_messages = warning;
DROP EXTENSION canary CASCADE;
DROP SCHEMA sequential_test CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
