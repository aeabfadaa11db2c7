-- Correctness check: canary_route and the PL/pgSQL reference router must
-- choose the same version for every sampled request.  Run with
-- ON_ERROR_STOP, so a disagreement ends psql with a non-zero status.
--
-- Sample: every agent (100 with a running rollout, one without) times 100
-- requests.  Of each ten requests, one has no user id, one an empty user id
-- (both hash the request id), one a non-ASCII user id and seven a decimal
-- user id like the throughput workloads.

CREATE TEMP TABLE route_sample AS
SELECT a.agent_id,
	   'request-' || k AS request_id,
	   CASE k % 10
		   WHEN 0 THEN NULL
		   WHEN 1 THEN ''
		   WHEN 2 THEN 'usuário-' || k
		   ELSE k::text
	   END AS user_id,
	   d.id IS NOT NULL AS has_rollout
FROM canary.agents a
LEFT JOIN canary.deployments d
	ON d.agent_id = a.agent_id AND d.status = 'running'
CROSS JOIN generate_series(1, 100) k;

CREATE TEMP TABLE route_comparison AS
SELECT s.*,
	   c.version AS route_version, c.is_canary AS route_is_canary,
	   p.version AS plpgsql_version, p.is_canary AS plpgsql_is_canary
FROM route_sample s,
	 LATERAL canary_route(s.agent_id, s.request_id, s.user_id) c,
	 LATERAL canary_bench.plpgsql_route(s.agent_id, s.request_id, s.user_id) p;

-- Show up to ten disagreements.
SELECT 'disagreement', agent_id, request_id, user_id,
	   route_version, plpgsql_version
FROM route_comparison
WHERE (route_version, route_is_canary)
	IS DISTINCT FROM (plpgsql_version, plpgsql_is_canary)
ORDER BY agent_id, request_id
LIMIT 10;

-- Summary line for run.sh: keys, disagreements, canary share.
SELECT 'agreement',
	   count(*),
	   count(*) FILTER (WHERE (route_version, route_is_canary)
						IS DISTINCT FROM (plpgsql_version, plpgsql_is_canary)),
	   round(avg(route_is_canary::integer) FILTER (WHERE has_rollout), 4)
FROM route_comparison;

-- Fail on any disagreement.  Fail also when the canary share of the agents
-- with a rollout is outside 20% to 30%, because then the rollouts are not
-- running at 25% and the benchmark measures something else.  Over 10000
-- keys one standard deviation is 0.43 points, so the range is wider than
-- ten deviations.
DO $$
DECLARE
	disagreements bigint;
	canary_share numeric;
BEGIN
	SELECT count(*) FILTER (WHERE (route_version, route_is_canary)
							IS DISTINCT FROM (plpgsql_version, plpgsql_is_canary)),
		   avg(route_is_canary::integer) FILTER (WHERE has_rollout)
	INTO disagreements, canary_share
	FROM route_comparison;

	IF disagreements > 0 THEN
		RAISE EXCEPTION 'canary_route and the PL/pgSQL router disagree on % sampled requests',
			disagreements;
	END IF;
	IF canary_share NOT BETWEEN 0.20 AND 0.30 THEN
		RAISE EXCEPTION 'canary share % of the sampled requests is outside 0.20 to 0.30',
			canary_share
			USING HINT = 'Check that every benchmark rollout is running at 25%.';
	END IF;
END;
$$;
