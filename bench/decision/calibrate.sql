-- Calibrate the tail-only scenario.  Bisection on 200,000 draws finds the
-- share of the requests above the median that must take 3 times as long
-- for the p95 to rise by 25%.  The query then measures the median and p95
-- of both distributions on 1,000,000 other draws.

DO $$
DECLARE
	base_p95 double precision;
	low double precision := 0;
	high double precision := 0.5;
	middle double precision;
	tail_p95 double precision;
BEGIN
	SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY canary_bench.synthetic_latency(-k, 1, 0, 3))
	INTO base_p95 FROM generate_series(1, 200000) k;
	FOR step IN 1 .. 16 LOOP
		middle := (low + high) / 2;
		SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY canary_bench.synthetic_latency(-k, 1, middle, 3))
		INTO tail_p95 FROM generate_series(1, 200000) k;
		IF tail_p95 < 1.25 * base_p95 THEN
			low := middle;
		ELSE
			high := middle;
		END IF;
	END LOOP;
	UPDATE canary_bench.scenarios SET slow_fraction = round(((low + high) / 2)::numeric, 4)
	WHERE scenario = 'tail_p95_25';
END;
$$;

SELECT 'calibration', s.slow_fraction,
	   round(base.p50::numeric, 1), round(base.p95::numeric, 1),
	   round(tail.p50::numeric, 1), round(tail.p95::numeric, 1),
	   round((100 * (tail.p50 / base.p50 - 1))::numeric, 2),
	   round((100 * (tail.p95 / base.p95 - 1))::numeric, 2)
FROM canary_bench.scenarios s
CROSS JOIN LATERAL (
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY l) AS p95
	FROM (SELECT canary_bench.synthetic_latency(k, 1, 0, s.slow_factor) AS l
		  FROM generate_series(1, 1000000) k) d) base
CROSS JOIN LATERAL (
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY l) AS p95
	FROM (SELECT canary_bench.synthetic_latency(k, 1, s.slow_fraction, s.slow_factor) AS l
		  FROM generate_series(1, 1000000) k) d) tail
WHERE s.scenario = 'tail_p95_25';
