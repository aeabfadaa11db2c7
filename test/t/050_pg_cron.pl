# pg_cron instead of the background worker: a job that runs
# canary_evaluate_all() promotes a healthy rollout and rolls back a bad one,
# as the worker does, while canary.worker_enabled is off.  The job runs
# every second with pg_cron 1.5 or later, which accepts interval schedules
# such as '1 seconds', and every minute with older versions; each rollout
# has a single stage so that one run decides it.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'canary, pg_cron'
canary.worker_enabled = off
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();

-- Traffic of each agent under test: the baseline fails 1% of executions,
-- the canary canary_error_rate of them.
CREATE TABLE test_traffic (agent_id text PRIMARY KEY, canary_error_rate float8);
INSERT INTO test_traffic VALUES ('good', 0.01), ('bad', 0.5);
SELECT canary_register_agent(agent_id, 'v1') FROM test_traffic;

-- Write 40 executions per agent, routed by canary_route(), with log-normal
-- latency around 180 ms, at now().  Then return whether no rollout runs.
CREATE FUNCTION write_traffic_until_done() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT t.agent_id, r.version,
		   CASE WHEN random() < CASE WHEN r.is_canary THEN t.canary_error_rate ELSE 0.01 END
				THEN 'error' ELSE 'success' END,
		   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
		   now()
	FROM test_traffic t, generate_series(1, 40) g,
		 LATERAL canary_route(t.agent_id, 'request-' || g || '-' || random()) r;
	RETURN NOT EXISTS (SELECT FROM canary.deployments WHERE status = 'running');
END
$$;
});

# The default sequential judge uses buckets of a tenth of the stage duration,
# at least one second, so stages of a few seconds are decided within seconds.
# alpha 0.001 makes a false rollback of the healthy rollout a 1-in-1000 event.
my %rollout;
foreach my $agent ('good', 'bad')
{
	$rollout{$agent} = $node->safe_psql(
		'postgres', qq{
SELECT canary_create('$agent', 'v2', stages => '{50}',
	stage_duration => '2 seconds', min_samples => 30,
	success_rate_ratio => 0.9, p95_latency_ratio => 1.5,
	max_error_rate => 0.1, alpha => 0.001)});
	$node->safe_psql('postgres', "SELECT canary_start('$rollout{$agent}')");
}

my $cron_version = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'");
my ($major, $minor) = $cron_version =~ /^(\d+)\.(\d+)/;
my $schedule = ($major > 1 || $minor >= 5) ? '1 seconds' : '* * * * *';
note "pg_cron $cron_version, schedule '$schedule'";
$node->safe_psql('postgres',
	"SELECT cron.schedule('canary', '$schedule', 'SELECT canary_evaluate_all()')");

ok($node->poll_query_until('postgres', 'SELECT write_traffic_until_done()'),
	'pg_cron job finishes both rollouts');
is( $node->safe_psql(
		'postgres',
		"SELECT status FROM canary.deployments WHERE id = '$rollout{good}'"),
	'promoted',
	'healthy rollout promoted');
is( $node->safe_psql(
		'postgres',
		"SELECT status FROM canary.deployments WHERE id = '$rollout{bad}'"),
	'rolled_back',
	'bad rollout rolled back');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(event || ' ' || coalesce(old_stage, 0) || '>' || new_stage, ', ' ORDER BY id)
FROM canary.transitions WHERE deployment_id = '$rollout{good}'}),
	'started 0>1, promoted 1>1',
	'healthy rollout promoted once');

# The decisions came from the job, not from a canary worker.
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'canary worker'"),
	'0',
	'no canary worker runs');
cmp_ok(
	$node->safe_psql(
		'postgres', q{
SELECT count(*) FROM cron.job_run_details
WHERE command = 'SELECT canary_evaluate_all()' AND status = 'succeeded'}),
	'>=', 1,
	'pg_cron ran the evaluation job');

$node->safe_psql('postgres', "SELECT cron.unschedule('canary')");

done_testing();
