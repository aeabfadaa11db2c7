--
-- Tables and functions of the rollout demo, in schema demo.  demo/run.sh
-- loads this file with psql after CREATE EXTENSION canary and the creation
-- of public.agent_execution_logs, with these psql variables set:
--
--   seed      text mixed into every pseudo-random draw
--   requests  number of trace requests to use, from the first one
--   replays   times the trace is replayed back to back
--   csv       path of demo/data/conversation.csv
--
-- The traffic model is described at the top of demo/run.sh.
--

\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;

CREATE TABLE demo.settings (
	seed text NOT NULL,
	base_time timestamptz NOT NULL,
	-- Simulated minutes per replay of the trace.
	replay_minutes integer,
	replays integer NOT NULL
);
INSERT INTO demo.settings (seed, base_time, replays)
VALUES (:'seed', '2024-03-04 09:00:00+00', :replays);

--
-- Deterministic random numbers
--

-- Uniform in (0, 1) from the first 32 bits of the MD5 of a key, so a draw
-- depends only on its key, never on the order in which rows are read.
CREATE FUNCTION demo.uniform(key text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (('x' || substr(md5(key), 1, 8))::bit(32)::bigint + 0.5) / 4294967296.0;

-- Standard normal by the Box-Muller transform of two uniforms.
CREATE FUNCTION demo.normal(key text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sqrt(-2.0 * ln(demo.uniform(key || ':u1')))
	* cos(2.0 * pi() * demo.uniform(key || ':u2'));

--
-- Trace
--

CREATE TABLE demo.trace_csv (
	arrival timestamp NOT NULL,
	context_tokens integer NOT NULL,
	generated_tokens integer NOT NULL
);
-- \copy takes its arguments literally, so build the command in a variable.
\set copy_trace '\\copy demo.trace_csv FROM ' :'csv' ' WITH (FORMAT csv, HEADER true)'
:copy_trace

-- The first :requests requests, numbered in arrival order and rebased so
-- that the minute of the first one starts at the base time.
CREATE TABLE demo.trace AS
SELECT row_number() OVER w AS id,
	   s.base_time + (t.arrival - date_trunc('minute', first_value(t.arrival) OVER w)) AS arrival,
	   t.context_tokens,
	   t.generated_tokens
FROM demo.trace_csv t, demo.settings s
WINDOW w AS (ORDER BY t.arrival, t.context_tokens, t.generated_tokens)
ORDER BY t.arrival, t.context_tokens, t.generated_tokens
LIMIT :requests;

UPDATE demo.settings s
SET replay_minutes = (SELECT floor(extract(epoch FROM max(t.arrival) - s.base_time) / 60.0)::integer + 1
					  FROM demo.trace t);

-- User population: user k of n sends a share of requests proportional to
-- 1 / k^0.8 (Zipf), so a few users send many requests.
CREATE TABLE demo.users AS
WITH weights AS (
	SELECT k AS user_rank, 1.0 / power(k, 0.8) AS weight
	FROM generate_series(1, 3000) k
)
SELECT user_rank,
	   'user-' || user_rank AS user_id,
	   (sum(weight) OVER (ORDER BY user_rank) / sum(weight) OVER ())::double precision AS cumulative
FROM weights;
CREATE UNIQUE INDEX ON demo.users (cumulative, user_rank);

-- Every request of every replay with its request id and user.  Replay r
-- starts r * replay_minutes after the base time.
CREATE TABLE demo.requests AS
SELECT r.replay * 100000 + t.id AS id,
	   'req-' || (r.replay * 100000 + t.id) AS request_id,
	   u.user_id,
	   t.arrival + make_interval(mins => r.replay * s.replay_minutes) AS arrival,
	   t.context_tokens,
	   t.generated_tokens
FROM demo.trace t
CROSS JOIN demo.settings s
CROSS JOIN generate_series(0, s.replays - 1) AS r(replay)
CROSS JOIN LATERAL demo.uniform(s.seed || ':user:' || r.replay || ':' || t.id) AS draw
CROSS JOIN LATERAL (
	SELECT user_id FROM demo.users
	WHERE cumulative >= draw
	ORDER BY cumulative LIMIT 1
) u;
CREATE INDEX ON demo.requests (arrival);

--
-- Versions and their failure bursts
--

CREATE TABLE demo.versions (
	version text PRIMARY KEY,
	latency_factor double precision NOT NULL,
	error_rate_normal double precision NOT NULL,
	error_rate_burst double precision NOT NULL,
	burst_start double precision NOT NULL,
	burst_end double precision NOT NULL
);
COMMENT ON COLUMN demo.versions.burst_start IS 'Probability per 10-second slot that a burst starts';
COMMENT ON COLUMN demo.versions.burst_end IS 'Probability per 10-second slot that a burst ends';

-- Long-run error rate: normal * (1 - b) + burst * b with
-- b = burst_start / (burst_start + burst_end) = 1/16.
INSERT INTO demo.versions VALUES
	('v1',        1.00, 0.008, 0.040, 0.02, 0.30),	-- baseline: 1.0 %
	('v2-fast',   0.95, 0.008, 0.040, 0.02, 0.30),	-- healthy: 1.0 %, 5 % faster
	('v2-slow',   1.30, 0.024, 0.120, 0.02, 0.30),	-- regressed: 3.0 %, 30 % slower
	('v2-broken', 1.00, 1.000, 1.000, 0.02, 0.30);	-- fails every request

-- Burst state of each version in each 10-second slot of simulated time: a
-- two-state Markov chain that starts in the normal state.
CREATE TABLE demo.bursts AS
WITH RECURSIVE chain (version, slot, burst) AS (
	SELECT version, 0, false FROM demo.versions
	UNION ALL
	SELECT c.version, c.slot + 1,
		   CASE WHEN c.burst
			   THEN demo.uniform(s.seed || ':burst:' || c.version || ':' || (c.slot + 1)) >= v.burst_end
			   ELSE demo.uniform(s.seed || ':burst:' || c.version || ':' || (c.slot + 1)) < v.burst_start
		   END
	FROM chain c
	JOIN demo.versions v USING (version)
	CROSS JOIN demo.settings s
	WHERE c.slot + 1 < s.replays * s.replay_minutes * 6
)
SELECT version, slot, burst FROM chain;
ALTER TABLE demo.bursts ADD PRIMARY KEY (version, slot);

--
-- Latency and status of one execution
--

-- Latency in milliseconds: time to first token (150 ms plus 0.1 ms per
-- context token) plus 25 ms per generated token, times the version's
-- factor and a log-normal noise with sigma 0.35 and median 1.  A failed
-- request ends after the time to first token.  The noise depends on the
-- request only, so two versions serving one request differ by their model.
CREATE FUNCTION demo.latency_ms(r demo.requests, v demo.versions, failed boolean)
RETURNS integer
LANGUAGE sql STABLE
RETURN round(v.latency_factor
			  * (150.0 + 0.1 * r.context_tokens
				 + CASE WHEN failed THEN 0 ELSE 25.0 * r.generated_tokens END)
			  * exp(0.35 * demo.normal((SELECT seed FROM demo.settings) || ':latency:' || r.id)));

-- Whether a request fails: a draw against the version's error rate in the
-- burst state of the request's 10-second slot.
CREATE FUNCTION demo.failed(r demo.requests, v demo.versions)
RETURNS boolean
LANGUAGE sql STABLE
RETURN demo.uniform((SELECT seed FROM demo.settings) || ':status:' || v.version || ':' || r.id)
	< CASE WHEN (SELECT b.burst FROM demo.bursts b
				 WHERE b.version = v.version
				   AND b.slot = floor(extract(epoch FROM r.arrival - (SELECT base_time FROM demo.settings)) / 10)::integer)
		   THEN v.error_rate_burst ELSE v.error_rate_normal END;

--
-- Scenarios and replay
--

-- A rate as a percentage with two decimals, or "-" when there is none.
CREATE FUNCTION demo.percent(rate double precision) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN coalesce(to_char(100 * rate, 'FM990.00'), '-');

CREATE TABLE demo.scenarios (
	scenario integer PRIMARY KEY,
	agent_id text NOT NULL,
	canary_version text NOT NULL,
	rollout_id uuid
);

-- Every routed request, with the user it came from.
CREATE TABLE demo.routed (
	agent_id text NOT NULL,
	request_id text NOT NULL,
	user_id text NOT NULL,
	version text NOT NULL,
	is_canary boolean NOT NULL,
	status text NOT NULL,
	latency_ms integer NOT NULL,
	arrival timestamptz NOT NULL
);
CREATE INDEX ON demo.routed (agent_id, arrival);

-- Simulate one minute of a scenario: route each request of the minute with
-- canary_route, log its execution in public.agent_execution_logs, then
-- evaluate the rollout at the end of the minute.  Returns one timeline
-- line and the rollout's status after the evaluation, with the pause kind
-- after a slash when paused ("paused/manual").
CREATE FUNCTION demo.step(p_scenario integer, p_minute integer,
						  OUT line text, OUT rollout_status text)
LANGUAGE plpgsql AS $$
DECLARE
	sc demo.scenarios;
	d canary.deployments;
	minute_start timestamptz;
	minute_end timestamptz;
	e canary.evaluation;
	n record;
	m canary.metrics;
BEGIN
	SELECT * INTO STRICT sc FROM demo.scenarios WHERE scenario = p_scenario;
	SELECT base_time + make_interval(mins => p_minute - 1),
		   base_time + make_interval(mins => p_minute)
	INTO minute_start, minute_end
	FROM demo.settings;

	-- Route and execute the minute's requests.
	INSERT INTO demo.routed
	SELECT sc.agent_id, r.request_id, r.user_id, x.version, x.is_canary,
		   CASE WHEN x.failed THEN 'error' ELSE 'success' END,
		   demo.latency_ms(r, v, x.failed), r.arrival
	FROM demo.requests r
	CROSS JOIN LATERAL canary_route(sc.agent_id, r.request_id, r.user_id) rt
	JOIN demo.versions v ON v.version = rt.version
	CROSS JOIN LATERAL (SELECT rt.version, rt.is_canary, demo.failed(r, v) AS failed) x
	WHERE r.arrival > minute_start AND r.arrival <= minute_end;

	INSERT INTO public.agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT agent_id, version, status, latency_ms, arrival
	FROM demo.routed
	WHERE agent_id = sc.agent_id AND arrival > minute_start AND arrival <= minute_end;

	-- Evaluate, unless the rollout already ended.
	SELECT * INTO STRICT d FROM canary.deployments WHERE id = sc.rollout_id;
	IF d.status IN ('running', 'paused') THEN
		e := canary_evaluate(sc.rollout_id, minute_end);
		SELECT * INTO STRICT d FROM canary.deployments WHERE id = sc.rollout_id;
	END IF;

	-- Requests per side this minute, and the figures the evaluation read
	-- from the log (none while paused).
	SELECT count(*) FILTER (WHERE NOT is_canary) AS baseline,
		   count(*) FILTER (WHERE is_canary) AS canary
	INTO n
	FROM demo.routed
	WHERE agent_id = sc.agent_id AND arrival > minute_start AND arrival <= minute_end;
	SELECT * INTO m FROM canary.metrics WHERE id = e.metrics_id;

	line := format('%4s  %-5s %6s  %5s %6s %7s  %5s %6s %7s  %-9s %s',
				   p_minute,
				   d.current_stage || '/' || cardinality(d.stages),
				   trim_scale(d.current_percentage) || '%',
				   n.baseline, demo.percent(m.baseline_error_rate),
				   coalesce(round(m.baseline_p95)::text, '-'),
				   n.canary, demo.percent(m.canary_error_rate),
				   coalesce(round(m.canary_p95)::text, '-'),
				   coalesce(e.decision, '-'),
				   coalesce(e.reason, 'rollout is ' || d.status));
	rollout_status := d.status || coalesce('/' || d.pause_kind, '');
END
$$;
