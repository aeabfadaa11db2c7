# Background worker settings: a reloaded evaluation interval takes effect,
# a database without the extension and a database that does not exist are
# logged once per reload while the workers keep waiting, and a changed
# worker role restarts the workers as that role.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Count the lines of the server log after $offset that match $pattern.
sub count_log_lines
{
	my ($node, $pattern, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @matches = ($log =~ m/$pattern/gm);
	return scalar @matches;
}

my $node = PostgreSQL::Test::Cluster->new('settings');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'canary'
canary.database = 'postgres, appdb'
canary.evaluation_interval = '1h'
log_min_messages = debug1
});
$node->start;

# The worker of postgres starts and finds no extension; appdb is missing.
$node->wait_for_log(
	qr/LOG:  extension "canary" is not installed in database "postgres"/);
$node->wait_for_log(
	qr/WARNING:  database "appdb" set in "canary.database" does not exist/);
my $worker_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'canary worker'");
like($worker_pid, qr/^\d+$/, 'worker of postgres runs without the extension');

# Create a rollout with traffic while the interval is one hour: the worker,
# which ticked once at its start, makes no decision.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();
SELECT canary_register_agent('agent', 'v1');
CREATE FUNCTION write_traffic() RETURNS void
LANGUAGE sql AS $$
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT 'agent', r.version,
		   CASE WHEN random() < 0.01 THEN 'error' ELSE 'success' END,
		   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
		   now()
	FROM generate_series(1, 40) g,
		 LATERAL canary_route('agent', 'request-' || g || '-' || random()) r
$$;
CREATE TABLE test_clock AS SELECT clock_timestamp() AS started;
});
# The default sequential judge uses buckets of a tenth of the stage duration,
# at least one second, so stages of a few seconds are decided within seconds.
# alpha 0.001 makes a false rollback of the healthy rollout a 1-in-1000 event.
my $rollout = $node->safe_psql(
	'postgres', q{
SELECT canary_create('agent', 'v2', stages => '{10,50}',
	stage_duration => '1 second', min_samples => 20,
	success_rate_ratio => 0.9, p95_latency_ratio => 1.5, max_error_rate => 0.1,
	alpha => 0.001)});
$node->safe_psql('postgres', "SELECT canary_start('$rollout')");
my $log_offset = -s $node->logfile;

ok( $node->poll_query_until(
		'postgres', q{
SELECT write_traffic(), clock_timestamp() > started + interval '3 seconds'
FROM test_clock}, '|t'),
	'traffic written for 3 seconds');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM canary.decisions WHERE deployment_id = '$rollout'"),
	'0',
	'no evaluation within a one-hour interval');
is(count_log_lines($node, qr/canary worker tick in database "postgres"/, $log_offset),
	0, 'no tick within a one-hour interval');

is( count_log_lines(
		$node, qr/WARNING:  database "appdb" set in "canary.database" does not exist/),
	1,
	'missing database logged once before the reload');

# Reload with a 1 s interval: ticks resume and the rollout is evaluated.
$node->append_conf('postgresql.conf', "canary.evaluation_interval = '1s'\n");
$node->reload;
$node->wait_for_log(
	qr/DEBUG:  canary worker tick in database "postgres": 1 rollouts evaluated/,
	$log_offset);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT write_traffic(), count(*) > 0 FROM canary.decisions
WHERE deployment_id = '$rollout'}, '|t'),
	'rollout evaluated after the interval was reloaded');
is( $node->safe_psql(
		'postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'canary worker'"),
	$worker_pid,
	'reloading the interval keeps the worker running');

is( count_log_lines(
		$node, qr/WARNING:  database "appdb" set in "canary.database" does not exist/,
		$log_offset),
	1,
	'missing database logged once after the reload');

# Once appdb exists, its worker starts and reports the missing extension
# once per reload, tick after tick.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE DATABASE appdb');
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE backend_type = 'canary worker' AND datname = 'appdb'}),
	'worker of appdb starts once the database exists');
foreach my $tick (1 .. 3)
{
	$log_offset = $node->wait_for_log(
		qr/canary worker tick in database "appdb" skipped: extension not installed/,
		$log_offset);
}
is( count_log_lines(
		$node, qr/LOG:  extension "canary" is not installed in database "appdb"/),
	1,
	'missing extension logged once over three ticks');

$node->reload;
$node->wait_for_log(
	qr/LOG:  extension "canary" is not installed in database "appdb"/,
	$log_offset);
pass('missing extension logged again after a reload');

$node->safe_psql('appdb', 'CREATE EXTENSION canary');
$node->wait_for_log(
	qr/LOG:  extension "canary" found in database "appdb"; evaluating its rollouts/,
	$log_offset);
pass('worker of appdb notices the extension');

# A role that does not exist stops the workers; once it exists they run as
# that role.
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "canary.worker_role = 'canary_bot'\n");
$node->reload;
$node->wait_for_log(
	qr/WARNING:  role "canary_bot" set in "canary.worker_role" does not exist/,
	$log_offset);
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'canary worker'"
	),
	'workers stop while the role is missing');

$node->safe_psql('postgres', 'CREATE ROLE canary_bot LOGIN SUPERUSER');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity
WHERE backend_type = 'canary worker' AND usename = 'canary_bot'}),
	'workers run as the configured role');

done_testing();
