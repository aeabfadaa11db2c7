-- Write execution log rows in COPY text format to standard output.
--
-- Variables: rows, first (timestamptz), span_seconds, seed (-1 to 1).
--
-- Rows come in timestamp order, evenly spread over [first, first +
-- span_seconds), as an application appends them.  Each row belongs to one
-- of 100 agents at random; 5% of the rows are the canary v2, the rest the
-- baseline v1.  Agent i fails 1% + 2% * (i - 1) / 99 of its executions
-- (80% of failures "error", 20% "timeout").  Latency is log-normal with
-- sigma 0.5 around a median of 100 to 1080 ms that depends on the agent,
-- the same for both versions.

SELECT setseed(:seed) \g /dev/null

COPY (
	SELECT 'agent-' || lpad(g.agent::text, 3, '0'),
		   CASE WHEN random() < 0.05 THEN 'v2' ELSE 'v1' END,
		   CASE WHEN g.u < p.error_rate * 0.8 THEN 'error'
				WHEN g.u < p.error_rate THEN 'timeout'
				ELSE 'success' END,
		   greatest(1, round(p.median_ms *
							 exp(0.5 * sqrt(-2 * ln(1 - random())) *
								 cos(2 * pi() * random()))))::integer,
		   :'first'::timestamptz +
		   (g.k + random()) * (:span_seconds::float8 / :rows) * interval '1 second'
	FROM (SELECT k, 1 + floor(random() * 100)::integer AS agent, random() AS u
		  FROM generate_series(0, :rows - 1) k) g,
		 LATERAL (SELECT 0.01 + 0.02 * (g.agent - 1) / 99.0 AS error_rate,
						 100.0 + 20 * ((g.agent * 37) % 50) AS median_ms) p
) TO STDOUT;
