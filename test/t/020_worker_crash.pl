# Background worker crash: after SIGKILL of the worker in the middle of a
# rollout, the postmaster reinitializes the cluster, the worker comes back
# and finishes the rollout from its stored state, with every stage move
# recorded exactly once.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'canary'
canary.evaluation_interval = '1s'
restart_after_crash = on
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();
SELECT canary_register_agent('agent', 'v1');

-- Write n healthy executions routed by canary_route(), with log-normal
-- latency around 180 ms and 1% errors, at now().  Then return whether the
-- rollout has reached the given stage or left status running.
CREATE FUNCTION write_traffic_until(stage integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT 'agent', r.version,
		   CASE WHEN random() < 0.01 THEN 'error' ELSE 'success' END,
		   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
		   now()
	FROM generate_series(1, 40) g,
		 LATERAL canary_route('agent', 'request-' || g || '-' || random()) r;
	RETURN EXISTS (SELECT FROM canary.deployments
				   WHERE agent_id = 'agent'
					 AND (current_stage >= stage OR status <> 'running'));
END
$$;
});

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'canary worker'"
	),
	'worker runs');

# The default sequential judge uses buckets of a tenth of the stage duration,
# at least one second, so stages of a few seconds are decided within seconds.
# alpha 0.001 makes a false rollback of the healthy rollout a 1-in-1000 event.
my $rollout = $node->safe_psql(
	'postgres', q{
SELECT canary_create('agent', 'v2', stages => '{10,20,30,40,50}',
	stage_duration => '2 seconds', min_samples => 30,
	success_rate_ratio => 0.9, p95_latency_ratio => 1.5, max_error_rate => 0.1,
	alpha => 0.001)});
$node->safe_psql('postgres', "SELECT canary_start('$rollout')");

# Let the worker move the rollout to stage 3, then kill it.
ok($node->poll_query_until('postgres', 'SELECT write_traffic_until(3)'),
	'worker reaches stage 3 before the crash');
my $stage_before = $node->safe_psql('postgres',
	"SELECT current_stage FROM canary.deployments WHERE id = '$rollout'");
my $worker_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'canary worker'");
my $log_offset = -s $node->logfile;

PostgreSQL::Test::Utils::system_or_bail('pg_ctl', 'kill', 'KILL', $worker_pid);

$node->wait_for_log(
	qr/background worker "canary worker" \(PID $worker_pid\) was terminated by signal 9/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE backend_type = 'canary worker' AND pid <> $worker_pid}),
	'worker restarted after the crash');

my $stage_after = $node->safe_psql('postgres',
	"SELECT current_stage FROM canary.deployments WHERE id = '$rollout'");
cmp_ok($stage_after, '>=', $stage_before,
	'stage committed before the crash survives it');

ok( $node->poll_query_until('postgres', 'SELECT write_traffic_until(99)'),
	'rollout finishes after the crash');
is( $node->safe_psql(
		'postgres', "SELECT status FROM canary.deployments WHERE id = '$rollout'"),
	'promoted',
	'rollout promoted');

# Every stage move happened once, in order.
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(event || ' ' || coalesce(old_stage, 0) || '>' || new_stage, ', ' ORDER BY id)
FROM canary.transitions WHERE deployment_id = '$rollout'}),
	'started 0>1, progressed 1>2, progressed 2>3, progressed 3>4, progressed 4>5, promoted 5>5',
	'each transition recorded once');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(decision || ' ' || stage, ', ' ORDER BY id)
FROM canary.decisions
WHERE deployment_id = '$rollout' AND decision <> 'continue'}),
	'progress 2, progress 3, progress 4, progress 5, promote 5',
	'each acting decision recorded once');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) - count(DISTINCT at) FROM canary.decisions
WHERE deployment_id = '$rollout'}),
	'0',
	'no evaluation time recorded twice');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM canary.events WHERE deployment_id = '$rollout'}),
	'6',
	'one event per transition');

done_testing();
