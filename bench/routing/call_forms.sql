-- Backend CPU time per execution of canary_route in different statement
-- forms, next to the parameter-only floor and a builtin function in FROM.
-- run.sh sets the psql variables runs and calls, and reads the lines that
-- start with "form".  Each form is called for the 100 agents in turn, so
-- the first 100 calls of the session fill the routing cache.

SET jit = off;

SELECT 'form', form,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu_us),
	   min(cpu_us), max(cpu_us)
FROM canary_bench.measure_call_forms(:runs, :calls)
GROUP BY form
ORDER BY pg_catalog.array_position(
	ARRAY['params_floor', 'builtin_from', 'route_select_list', 'route_from',
		  'route_named_type_from'],
	form);
