# Background worker: with a 1 s interval and 2 s stages it promotes a healthy
# rollout and rolls back a bad one on its own, a rollout whose evaluation
# fails does not hold up the others, and turning the worker off and on again
# takes effect on reload.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'canary'
canary.evaluation_interval = '1s'
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();

-- Traffic of each agent under test: the baseline fails 1% of executions,
-- the canary canary_error_rate of them.
CREATE TABLE test_traffic (agent_id text PRIMARY KEY, canary_error_rate float8);

-- Write n executions per agent, routed by canary_route() with a fresh
-- request id each, with log-normal latency around 180 ms, at now().
CREATE FUNCTION write_traffic(n integer) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT t.agent_id, r.version,
		   CASE WHEN random() < CASE WHEN r.is_canary THEN t.canary_error_rate ELSE 0.01 END
				THEN 'error' ELSE 'success' END,
		   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
		   now()
	FROM test_traffic t, generate_series(1, n) g,
		 LATERAL canary_route(t.agent_id, 'request-' || g || '-' || random()) r
$$;

-- Write one batch of traffic, then report whether none of the given
-- agents has a running rollout any more.
CREATE FUNCTION write_traffic_until_done(agents text[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM write_traffic(40);
	RETURN NOT EXISTS (SELECT FROM canary.deployments
					   WHERE agent_id = ANY (agents) AND status = 'running');
END
$$;

-- Make every evaluation of agent "broken" fail when it records its decision.
CREATE FUNCTION reject_broken_decision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.deployment_id IN (SELECT id FROM canary.deployments WHERE agent_id = 'broken') THEN
		RAISE EXCEPTION 'decision store of agent broken is unavailable';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER reject_broken_decision BEFORE INSERT ON canary.decisions
	FOR EACH ROW EXECUTE FUNCTION reject_broken_decision();

INSERT INTO test_traffic VALUES ('good', 0.01), ('bad', 0.5), ('broken', 0.01);
SELECT canary_register_agent(agent_id, 'v1') FROM test_traffic;
});

ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE backend_type = 'canary worker' AND application_name = 'canary worker'
	AND datname = 'postgres'}),
	'worker runs in database postgres');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'canary launcher' AND datname IS NULL"
	),
	'1',
	'launcher runs without a database');

my $log_offset = -s $node->logfile;

# The default sequential judge uses buckets of a tenth of the stage duration,
# at least one second, so stages of a few seconds are decided within seconds.
# alpha 0.001 makes a false rollback of the healthy rollout a 1-in-1000 event.
# Start one rollout per agent: two 2 s stages, 30 samples each.
my %rollout;
foreach my $agent ('good', 'bad', 'broken')
{
	$rollout{$agent} = $node->safe_psql(
		'postgres', qq{
SELECT canary_create('$agent', 'v2', stages => '{20,50}',
	stage_duration => '2 seconds', min_samples => 30,
	success_rate_ratio => 0.9, p95_latency_ratio => 1.5,
	max_error_rate => 0.1, alpha => 0.001)});
	$node->safe_psql('postgres', "SELECT canary_start('$rollout{$agent}')");
}

ok( $node->poll_query_until(
		'postgres', "SELECT write_traffic_until_done('{good,bad}')"),
	'worker finishes the good and the bad rollout');

my %status = map { $_ => $node->safe_psql('postgres',
		"SELECT status FROM canary.deployments WHERE id = '$rollout{$_}'") }
  keys %rollout;
is($status{good},   'promoted',    'healthy rollout promoted');
is($status{bad},    'rolled_back', 'bad rollout rolled back');
is($status{broken}, 'running',     'failing rollout left running');

is( $node->safe_psql(
		'postgres', q{
SELECT stable_version FROM canary.agents WHERE agent_id = 'good'}),
	'v2',
	'promotion makes the canary stable');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(coalesce(old_stage, 0) || '>' || new_stage || ' ' || new_status, ', ' ORDER BY id)
FROM canary.transitions WHERE deployment_id = '$rollout{good}'}),
	'0>1 running, 1>2 running, 2>2 promoted',
	'healthy rollout passes each stage once');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM canary.decisions WHERE deployment_id = '$rollout{broken}'}),
	'0',
	'failing rollout records no decision');

# Each failure is logged with the rollout and agent, and the state changes
# the worker made are logged too.
ok( $node->log_contains(
		qr/ERROR:  decision store of agent broken is unavailable\n[^\n]*CONTEXT:(?:[^\n]*\n\t)+canary worker evaluating rollout $rollout{broken} of agent "broken"\n/,
		$log_offset),
	'evaluation error logged with rollout id and agent');
ok( $node->log_contains(
		qr/LOG:  rollout $rollout{good} of agent "good": progress, now at stage 2 with 50% canary traffic/,
		$log_offset),
	'progress logged');
ok( $node->log_contains(
		qr/LOG:  rollout $rollout{good} of agent "good": promote/, $log_offset),
	'promotion logged');
ok( $node->log_contains(
		qr/LOG:  rollout $rollout{bad} of agent "bad": rollback/, $log_offset),
	'rollback logged');

# A failure that repeats its message at every tick is logged once, and the
# rollout's recovery is logged when its evaluation works again.
my $failures = () =
  slurp_file($node->logfile, $log_offset) =~
  /ERROR:  decision store of agent broken is unavailable/g;
is($failures, 1, 'repeated evaluation error logged once');
$node->safe_psql('postgres',
	'DROP TRIGGER reject_broken_decision ON canary.decisions');
ok( $node->wait_for_log(
		qr/LOG:  rollout $rollout{broken} of agent "broken" evaluated again after \d+ failed evaluations/,
		$log_offset),
	'recovery after repeated failures logged');
my ($failed_ticks) =
  slurp_file($node->logfile, $log_offset) =~ /evaluated again after (\d+) failed/;
cmp_ok($failed_ticks, '>', 1, 'the logged error repeated at several ticks');

# Turning the worker off stops it; turning it on again starts it.
$log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "canary.worker_enabled = off\n");
$node->reload;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'canary worker'"
	),
	'worker stops when disabled');
ok( $node->log_contains(
		qr/stopping canary worker for database "postgres" because "canary.worker_enabled" is off/,
		$log_offset),
	'stop logged with its reason');

$node->append_conf('postgresql.conf', "canary.worker_enabled = on\n");
$node->reload;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'canary worker'"
	),
	'worker starts again when enabled');

$node->stop;
ok( $node->log_contains(qr/LOG:  canary worker for database "postgres" stopped/),
	'worker logs its stop at shutdown');

done_testing();
