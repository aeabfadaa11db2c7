# Hot standby: while the primary's worker moves a rollout through its stages,
# a standby streaming from the primary routes every request the same way as
# the primary after each state change, both in new sessions and in one
# session that stays open and keeps its routing cache.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'canary'
canary.evaluation_interval = '1s'
});
$primary->start;

$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();
SELECT canary_register_agent('agent', 'v1');

-- Write 40 healthy executions routed by canary_route(), with log-normal
-- latency around 180 ms and 1% errors, at now().  Then return whether the
-- rollout's status, stage or percentage differs from "state".
CREATE FUNCTION write_traffic_until_changed(state text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
	SELECT 'agent', r.version,
		   CASE WHEN random() < 0.01 THEN 'error' ELSE 'success' END,
		   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
		   now()
	FROM generate_series(1, 40) g,
		 LATERAL canary_route('agent', 'request-' || g || '-' || random()) r;
	RETURN (SELECT status || ' ' || current_stage || ' ' || current_percentage
			FROM canary.deployments WHERE agent_id = 'agent') <> state;
END
$$;
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

is( $standby->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'canary worker'"),
	'0',
	'no worker runs on the standby');

my $state_sql = q{
SELECT status || ' ' || current_stage || ' ' || current_percentage
FROM canary.deployments WHERE agent_id = 'agent'};

# Versions that 500 fixed request ids get, as one string.
my $routes_sql = q{
SELECT string_agg(r.version, ',' ORDER BY g)
FROM generate_series(1, 500) g,
	 LATERAL canary_route('agent', 'request-' || g) r};

my $standby_session = $standby->background_psql('postgres');

# The default sequential judge uses buckets of a tenth of the stage duration,
# at least one second, so stages of a few seconds are decided within seconds.
# alpha 0.001 makes a false rollback of the healthy rollout a 1-in-1000 event.
my $rollout = $primary->safe_psql(
	'postgres', q{
SELECT canary_create('agent', 'v2', stages => '{20,50}',
	stage_duration => '2 seconds', min_samples => 30,
	success_rate_ratio => 0.9, p95_latency_ratio => 1.5, max_error_rate => 0.1,
	alpha => 0.001)});
$primary->safe_psql('postgres', "SELECT canary_start('$rollout')");

# Compare routing after every state change until the rollout ends.
my @states;
my $state = $primary->safe_psql('postgres', $state_sql);
while (1)
{
	$primary->wait_for_catchup($standby);
	push @states, $state;

	is($standby->safe_psql('postgres', $state_sql),
		$state, "standby sees state \"$state\"");
	my $primary_routes = $primary->safe_psql('postgres', $routes_sql);
	is($standby->safe_psql('postgres', $routes_sql),
		$primary_routes, "new standby session routes as the primary in \"$state\"");
	is($standby_session->query_safe($routes_sql),
		$primary_routes, "open standby session routes as the primary in \"$state\"");

	last if $state !~ /^running /;
	ok( $primary->poll_query_until(
			'postgres', "SELECT write_traffic_until_changed('$state')"),
		"primary leaves state \"$state\"");
	$state = $primary->safe_psql('postgres', $state_sql);
}
$standby_session->quit;

is($states[-1], 'promoted 2 100.00', 'rollout ends promoted');
cmp_ok(scalar @states, '>=', 3, 'routing compared in every stage');

my $canary_share = $standby->safe_psql(
	'postgres', q{
SELECT count(*) FILTER (WHERE r.version = 'v2')
FROM generate_series(1, 500) g,
	 LATERAL canary_route('agent', 'request-' || g) r});
is($canary_share, '500', 'standby routes everything to the promoted version');

done_testing();
