# Run a shortened rollout demo (demo/run.sh) against a cluster started here
# and check the outcome of each of its four scenarios in the database.

use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $repo = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $min_samples = 100;

# No shared_preload_libraries: the background worker would evaluate the
# rollouts with the wall-clock time while the demo uses simulated times.
my $node = PostgreSQL::Test::Cluster->new('demo');
$node->init;
$node->start;

# The demo recreates database canary_demo and leaves its rollouts there.
my ($stdout, $stderr) = ('', '');
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{CANARY_DEMO_SEED} = '1';
	local $ENV{CANARY_DEMO_REQUESTS} = '8000';
	local $ENV{CANARY_DEMO_REPLAYS} = '3';
	local $ENV{CANARY_DEMO_MIN_SAMPLES} = $min_samples;
	local $ENV{CANARY_DEMO_QUIET} = '1';
	local $ENV{CANARY_DEMO_ASSERT} = '1';
	IPC::Run::run([ 'bash', "$repo/demo/run.sh" ],
		'>', \$stdout, '2>', \$stderr);
}
note "demo output:\n$stdout";
note "demo errors:\n$stderr" if $stderr ne '';
like($stdout, qr/^loaded 8000 requests/m, 'demo loads the shortened trace');
like($stdout, qr/^demo finished in \d+ s$/m, 'demo runs to the end');

# Return the value of a one-row, one-column query on the demo database.
sub query
{
	my ($sql) = @_;
	return $node->safe_psql('canary_demo', $sql);
}

# Return a column of the rollout of a scenario.
sub rollout
{
	my ($scenario, $column) = @_;
	return query(
		"SELECT d.$column FROM canary.deployments d
		 JOIN demo.scenarios s ON s.rollout_id = d.id
		 WHERE s.scenario = $scenario");
}

# Scenario 1: a healthy version goes through every stage.
is(rollout(1, 'status'), 'promoted', 'healthy version promoted');
is(rollout(1, 'current_stage'), '5', 'healthy version reached the last stage');
is( query(
		"SELECT stable_version FROM canary.agents WHERE agent_id = 'support-agent-1'"),
	'v2-fast',
	'stable version changed to the healthy version');

# Scenario 2: a regressed version is rolled back early, for a reason with
# numbers in it, and every user returns to the baseline.
is(rollout(2, 'status'), 'rolled_back', 'regressed version rolled back');
cmp_ok(rollout(2, 'current_stage'), '<=', 2,
	'regressed version rolled back in stage 1 or 2');
like(rollout(2, 'status_reason'), qr/\d+\.\d+ ms|\d+\.\d+%/,
	'rollback reason quotes the measured numbers');
is( query(
		"SELECT count(*) FILTER (WHERE rt.version = 'v1' AND NOT rt.is_canary)
		 || ' of ' || count(*)
		 FROM demo.users u,
			  canary_route('support-agent-2', 'test-' || u.user_rank, u.user_id) rt"),
	'3000 of 3000',
	'every user routed to the baseline after the rollback');
cmp_ok(
	query(
		"SELECT count(DISTINCT user_id) FROM demo.routed
		 WHERE agent_id = 'support-agent-2' AND is_canary"),
	'>', 0,
	'some users had the regressed version before the rollback');

# Scenario 3: a version that fails every request is rolled back no later
# than the first evaluation whose window has min_samples canary requests:
# the sequential tests may catch it with fewer.
is(rollout(3, 'status'), 'rolled_back', 'broken version rolled back');
is( query(
		"SELECT count(*) FROM canary.decisions x
		 JOIN demo.scenarios s ON s.rollout_id = x.deployment_id
		 JOIN canary.metrics m ON m.id = x.metrics_id
		 WHERE s.scenario = 3 AND m.canary_requests >= $min_samples
		   AND x.decision <> 'rollback'"),
	'0',
	'broken version rolled back by the first evaluation with min_samples');
cmp_ok(
	query(
		"SELECT extract(epoch FROM d.completed_at - d.started_at) / 60
		 FROM canary.deployments d JOIN demo.scenarios s ON s.rollout_id = d.id
		 WHERE s.scenario = 3"),
	'<=', 15,
	'broken version rolled back within 15 simulated minutes');

# Scenario 4: an operator pauses and resumes; the rollout then goes on.
my $history = "FROM canary.transitions t
	JOIN demo.scenarios s ON s.rollout_id = t.deployment_id
	WHERE s.scenario = 4 AND NOT t.automatic";
is(query("SELECT count(*) $history AND t.event = 'paused'"),
	'1', 'operator paused the rollout');
is(query("SELECT count(*) $history AND t.event = 'resumed'"),
	'1', 'operator resumed the rollout');
is( query(
		"SELECT count(DISTINCT x.percentage) FROM canary.decisions x
		 JOIN demo.scenarios s ON s.rollout_id = x.deployment_id
		 WHERE s.scenario = 4 AND x.automatic
		   AND x.reason LIKE 'rollout is paused%'"),
	'1',
	'split stayed frozen while paused');
ok( query(
		"SELECT EXISTS (SELECT FROM canary.decisions x
		 JOIN demo.scenarios s ON s.rollout_id = x.deployment_id
		 WHERE s.scenario = 4 AND x.automatic
		   AND x.decision IN ('progress', 'promote')
		   AND x.id > (SELECT max(t.id) $history AND t.event = 'resumed'))") eq
	  't',
	'rollout progressed after the resume');

$node->stop;
done_testing();
