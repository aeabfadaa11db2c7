-- Workload 2: the call shape of canary_route (three text parameters, one
-- row back) with no work, so it measures the round-trip floor.  pgbench
-- variables are integers, so agent ids in this benchmark are decimal strings.
\set agent random(1, 100)
\set request random(1, 1000000000)
\set user random(1, 1000000)
SELECT :agent::text, :request::text, :user::text;
