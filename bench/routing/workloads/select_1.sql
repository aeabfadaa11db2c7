-- Workload 1: the cheapest statement, for the protocol and executor floor.
SELECT 1;
