-- In-backend cost of a canary_route cache hit.  run.sh sets the psql
-- variables runs and calls, and reads the lines that start with a label.
--
-- JIT compilation and parallel query are off so that both loops run the
-- same plain executor path.

SET jit = off;
SET max_parallel_workers_per_gather = 0;

-- The scan counter must see a miss, or a zero count in the loops proves
-- nothing.  Agent "2" is not cached yet in this new session.
BEGIN;
SELECT canary_bench.routing_table_scans() AS scans_before \gset
SELECT version FROM canary_route('2', 'r') \gset
SELECT 'miss_scans', canary_bench.routing_table_scans() - :scans_before;
COMMIT;

-- Canary share of the loop's keys, to show that the loop hashes.
SELECT 'loop_canary_share',
	   round(avg((canary_route('1', 'r', g::text)).is_canary::integer), 4)
FROM generate_series(1, :calls) g;

SELECT 'loop', run, baseline_ms, route_ms, baseline_cpu_ms, route_cpu_ms,
	   table_scans
FROM canary_bench.measure_cache_hit(:runs, :calls)
ORDER BY run;
