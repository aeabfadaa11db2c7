-- Workload 4: the PL/pgSQL reference router from setup.sql, with the same
-- arguments as workload 3.
\set agent random(1, 100)
\set request random(1, 1000000000)
\set user random(1, 1000000)
SELECT * FROM canary_bench.plpgsql_route(:agent, :request, :user);
