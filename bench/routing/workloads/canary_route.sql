-- Workload 3: canary_route over 100 agents, each with a running rollout at
-- 25%, with a random agent and a random user id (the hash key).
\set agent random(1, 100)
\set request random(1, 1000000000)
\set user random(1, 1000000)
SELECT * FROM canary_route(:agent, :request, :user);
