-- Markdown tables of the simulated rollouts: the outcomes per scenario,
-- rate and judge, each target with met or not met, and why rollouts ended.

\pset tuples_only on
\pset format unaligned

-- Outcome figures per scenario, rate and judge.
CREATE TEMP VIEW outcome_rows AS
SELECT s.position, s.label, r.scenario, r.rate, r.judge, count(*) AS runs,
	   avg((r.outcome = 'rollback')::int) AS rolled_back,
	   avg((r.outcome = 'rollback' AND r.outcome_stage <= 2)::int) AS rolled_back_by_25,
	   avg((r.outcome = 'rollback' AND r.outcome_stage <= 3)::int) AS rolled_back_by_50,
	   avg((r.outcome = 'pause')::int) AS paused,
	   avg((r.outcome = 'promote')::int) AS promoted,
	   avg((r.outcome = 'running')::int) AS undecided,
	   percentile_disc(0.5) WITHIN GROUP (ORDER BY r.outcome_minute)
		   FILTER (WHERE r.outcome IN ('rollback', 'promote')) AS median_minutes,
	   percentile_disc(0.5) WITHIN GROUP (ORDER BY r.outcome_minute)
		   FILTER (WHERE r.outcome = 'promote') AS median_promote_minutes
FROM canary_bench.runs r
JOIN canary_bench.scenarios s USING (scenario)
GROUP BY s.position, s.label, r.scenario, r.rate, r.judge;

-- Percentage with one decimal.
CREATE FUNCTION pg_temp.pct(share double precision) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT to_char(100 * share, 'FM990.0') || '%' $$;

-- 95% Wilson score interval of a share observed in n runs, as text.
CREATE FUNCTION pg_temp.wilson(share double precision, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT format('95%% interval %s to %s',
				  to_char(100 * greatest(0, (c - h) / d), 'FM990.0'),
				  to_char(100 * least(1, (c + h) / d), 'FM990.0') || '%')
	FROM (SELECT share + 1.96 ^ 2 / (2 * n) AS c,
				 1.96 * sqrt(share * (1 - share) / n + 1.96 ^ 2 / (4.0 * n * n)) AS h,
				 1 + 1.96 ^ 2 / n AS d) w
$$;

SELECT '| Scenario | Rate (req/min) | Judge | Runs | Rolled back | by end of 25% stage | by end of 50% stage | Paused | Promoted | Undecided | Median min to rollback/promotion |';
SELECT '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|';
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
			  label, CASE WHEN rate = 0 THEN 'trace (~330)' ELSE rate::text END,
			  judge, runs, pg_temp.pct(rolled_back), pg_temp.pct(rolled_back_by_25),
			  pg_temp.pct(rolled_back_by_50), pg_temp.pct(paused), pg_temp.pct(promoted),
			  pg_temp.pct(undecided), coalesce(median_minutes::text, '-'))
FROM outcome_rows
ORDER BY position, rate, judge DESC;

SELECT '';
SELECT 'Targets (met or not met per judge; "-" when the row was not run):';
SELECT '';
SELECT '| Target | Judge | Measured | Met |';
SELECT '|---|---|---|---|';

-- One line per target and judge.
WITH judges AS (
	SELECT DISTINCT judge FROM canary_bench.runs
), targets (position, target, scenario, rate, figure, bound, is_max) AS (
	VALUES (1, 'A/A at 100/min: at most 1% rolled back', 'aa', 100, 'rolled_back', 0.01, true),
		   (2, 'A/A at 1,000/min: at most 1% rolled back', 'aa', 1000, 'rolled_back', 0.01, true),
		   (3, 'errors x1.5 at 1,000/min: at least 95% rolled back by the end of the 25% stage', 'errors_x1.5', 1000, 'rolled_back_by_25', 0.95, false),
		   (4, 'errors x2 at 1,000/min: at least 99% rolled back by the end of the 25% stage', 'errors_x2', 1000, 'rolled_back_by_25', 0.99, false),
		   (5, 'latency +10% at 1,000/min: at least 99% rolled back by the end of the 25% stage', 'latency_10', 1000, 'rolled_back_by_25', 0.99, false),
		   (6, 'tail-only p95 +25% at 1,000/min: at least 95% rolled back by the end of the 50% stage', 'tail_p95_25', 1000, 'rolled_back_by_50', 0.95, false),
		   (7, 'A/A at 1,000/min: at least 99% promoted, median time to promotion 150 min', 'aa', 1000, 'promoted', 0.99, false),
		   (8, 'Azure trace A/A replays: none rolled back', 'trace_aa', 0, 'rolled_back', 0, true)
)
SELECT format('| %s | %s | %s | %s |', t.target, j.judge,
			  CASE WHEN o.runs IS NULL THEN '-'
				   WHEN t.scenario = 'trace_aa' THEN
					   format('%s of %s rolled back', round(o.rolled_back * o.runs), o.runs)
				   WHEN t.figure = 'promoted' THEN
					   format('%s promoted, median %s min', pg_temp.pct(o.promoted),
							  coalesce(o.median_promote_minutes::text, '-'))
				   ELSE format('%s of %s runs (%s)', pg_temp.pct(v.value), o.runs,
							   pg_temp.wilson(v.value, o.runs)) END,
			  CASE WHEN o.runs IS NULL THEN '-'
				   WHEN t.figure = 'promoted' THEN
					   CASE WHEN o.promoted >= t.bound AND o.median_promote_minutes <= 150
							THEN 'met' ELSE 'not met' END
				   WHEN (t.is_max AND v.value <= t.bound) OR (NOT t.is_max AND v.value >= t.bound)
					   THEN 'met'
				   ELSE format('not met (gap %s points)',
							   to_char(100 * abs(v.value - t.bound), 'FM990.0')) END)
FROM targets t
CROSS JOIN judges j
LEFT JOIN outcome_rows o ON o.scenario = t.scenario AND o.rate = t.rate AND o.judge = j.judge
CROSS JOIN LATERAL (SELECT CASE t.figure
								WHEN 'rolled_back' THEN o.rolled_back
								WHEN 'rolled_back_by_25' THEN o.rolled_back_by_25
								WHEN 'rolled_back_by_50' THEN o.rolled_back_by_50
								ELSE o.promoted END AS value) v
ORDER BY t.position, j.judge DESC;

SELECT '';
SELECT 'Why rollouts ended: rollbacks by the check named in the reason (a reason may name several), pauses by pause kind and stage, and the stage where undecided rollouts stood:';
SELECT '';
SELECT '| Scenario | Rate | Judge | Rollbacks | error-rate limit | success-rate ratio | p95 ratio | error test | latency test (Mann-Whitney or shift) | latency tail test | Pauses (kind, stage: count) | Undecided (stage: count) |';
SELECT '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|';
WITH per_row AS (
	SELECT s.position, s.label, r.rate, r.judge,
		   count(*) FILTER (WHERE r.outcome = 'rollback') AS rollbacks,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'canary error rate [0-9.]+% .* above the maximum') AS error_limit,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'success rate [0-9.]+% is below') AS success_ratio,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'p95 latency [0-9.]+ ms is above') AS p95_ratio,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'error rate is significantly higher|errors worse in the canary') AS error_test,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'latency_ms is significantly higher|latency_shift worse in the canary') AS latency_test,
		   count(*) FILTER (WHERE r.outcome = 'rollback' AND r.outcome_reason ~ 'latency_tail worse in the canary') AS tail_test
	FROM canary_bench.runs r
	JOIN canary_bench.scenarios s USING (scenario)
	GROUP BY s.position, s.label, r.rate, r.judge
), pause_text AS (
	SELECT scenario, rate, judge,
		   string_agg(format('%s, stage %s: %s', pause_kind, outcome_stage, n), '; '
					  ORDER BY pause_kind, outcome_stage) AS text
	FROM (SELECT scenario, rate, judge, coalesce(pause_kind, '?') AS pause_kind, outcome_stage, count(*) AS n
		  FROM canary_bench.runs WHERE outcome = 'pause'
		  GROUP BY 1, 2, 3, 4, 5) p
	GROUP BY 1, 2, 3
), undecided_text AS (
	SELECT scenario, rate, judge,
		   string_agg(format('stage %s: %s', outcome_stage, n), '; ' ORDER BY outcome_stage) AS text
	FROM (SELECT scenario, rate, judge, outcome_stage, count(*) AS n
		  FROM canary_bench.runs WHERE outcome = 'running'
		  GROUP BY 1, 2, 3, 4) u
	GROUP BY 1, 2, 3
)
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
			  p.label, CASE WHEN p.rate = 0 THEN 'trace' ELSE p.rate::text END, p.judge,
			  p.rollbacks, p.error_limit, p.success_ratio, p.p95_ratio, p.error_test,
			  p.latency_test, p.tail_test, coalesce(pt.text, '-'), coalesce(u.text, '-'))
FROM per_row p
JOIN canary_bench.scenarios s ON s.label = p.label
LEFT JOIN pause_text pt ON pt.scenario = s.scenario AND pt.rate = p.rate AND pt.judge = p.judge
LEFT JOIN undecided_text u ON u.scenario = s.scenario AND u.rate = p.rate AND u.judge = p.judge
ORDER BY p.position, p.rate, p.judge DESC;
