#!/usr/bin/env bash
#
# Canary rollout demo over real LLM traffic.
#
# Replays a one-hour trace of a production LLM conversation service as the
# traffic of an AI support agent.  The trace, demo/data/conversation.csv,
# has the arrival time, context tokens and generated tokens of 19,366
# requests; demo/data/README.md gives its source and licence.  Four rollouts
# of new versions of that agent run through canary:
#
#   1. a healthy version (same error rate, 5% faster) is promoted;
#   2. a regressed version (error rate 1% -> 3%, latency +30%) is rolled
#      back automatically in an early stage;
#   3. a version that fails every request is rolled back at the first
#      evaluation with min_samples canary requests;
#   4. an operator pauses a healthy rollout with canary_pause(), the split
#      stays frozen, then canary_resume() lets it go on to promotion.
#
# Traffic model.  All draws come from the MD5 of a key made of the seed and
# the request or slot number, so a fixed seed gives the same users, latency
# and failures.
# Each rollout's id is derived from the seed and the scenario number, and
# canary's bucket hashes the rollout id, so the same users land in the
# canary in every run with the same seed.
#
# - Users: each request belongs to one of 3,000 users, drawn from a Zipf
#   distribution with exponent 0.8 (user k sends a share proportional to
#   1/k^0.8; the busiest user sends about 5% of all requests).  Every
#   request is routed with canary_route(agent, request id, user id), so the
#   split shown is canary's real per-user split, not the nominal percentage.
# - Latency in ms = factor * (150 + 0.1 * context tokens + 25 * generated
#   tokens) * exp(0.35 * Z), with Z standard normal (Box-Muller): a time to
#   first token that grows with the prompt, a per-token generation time and
#   log-normal noise.  A failed request ends after its time to first token.
#   The noise of a request is the same whichever version serves it.
# - Failures: each version has a two-state Markov chain over 10-second
#   slots (normal, burst; a burst starts with probability 0.02 and ends with
#   probability 0.30 per slot, so 1/16 of the time is burst time and a burst
#   lasts 33 s on average).  A request fails with the version's rate in the
#   current state, so failures cluster:
#     v1 (baseline)    0.8% normal,   4% burst: 1.0% overall, factor 1.00
#     v2-fast          0.8% normal,   4% burst: 1.0% overall, factor 0.95
#     v2-slow          2.4% normal,  12% burst: 3.0% overall, factor 1.30
#     v2-broken        100% of requests fail,                 factor 1.00
#
# Time: trace timestamps are rebased so that the trace starts on
# 2024-03-04 09:00 UTC, and one simulated minute is replayed per step: its
# requests are routed and logged with their trace timestamps in one INSERT,
# then canary_evaluate(rollout, end of the minute) decides.  The whole hour
# replays in seconds.  A rollout that is still running at the end of the
# trace goes on with the trace replayed again, up to CANARY_DEMO_REPLAYS
# times.  Manual actions (canary_pause, canary_resume) take no time
# argument, so they are stamped with the wall-clock time.
#
# Rollout settings: stages 5, 25, 50, 75 and 100%, 5 minutes per stage, an
# evaluation window of 10 minutes (about 150 canary requests at 5%), at
# least 100 canary and baseline requests in the window, and max_error_rate
# 5%.  The baseline itself runs at 1% with bursts to 4%, and canary pauses a
# rollout whose baseline breaks max_error_rate, so the default of 2% would
# pause rollouts during baseline bursts.  Every other setting keeps canary's
# default: p95 ratio 1.10, success rate ratio 0.95, and rollback at the
# first unhealthy evaluation.
#
# Server: without PGHOST and PGPORT, the script installs missing Debian
# packages (as root), builds and installs canary, and starts a throwaway
# cluster as the unprivileged user "postgres" on a unix socket in a
# temporary directory, removed on exit, also on failure and Ctrl-C.  With
# PGHOST or PGPORT set, it uses that server and skips all of that; the
# server must have canary installed.  Run as root, PGUSER then defaults to
# "postgres", because a role named root rarely exists.  Either way it
# recreates the database CANARY_DEMO_DATABASE and does everything there.
# The background worker is not needed: the demo evaluates with simulated
# times, and a worker that evaluates with the wall-clock time would disturb
# it.
#
# Environment:
#   CANARY_DEMO_SEED      seed of every random draw (default: 1)
#   CANARY_DEMO_REQUESTS  trace requests to use, from the first (default: all)
#   CANARY_DEMO_REPLAYS   most replays of the trace per scenario (default: 2)
#   CANARY_DEMO_MIN_SAMPLES  min_samples of every rollout (default: 100)
#   CANARY_DEMO_DATABASE  database to recreate and use (default: canary_demo)
#   CANARY_DEMO_PORT      port of the throwaway cluster (default: 55460)
#   CANARY_DEMO_QUIET     1: print only each scenario's outcome, not the
#                         minute-by-minute timeline
#   CANARY_DEMO_ASSERT    1: check each scenario's expected outcome, print
#                         "ok" or "not ok" per check, exit 1 if any fails
#
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$repo/test/lib.sh"

seed=${CANARY_DEMO_SEED:-1}
requests=${CANARY_DEMO_REQUESTS:-0}
replays=${CANARY_DEMO_REPLAYS:-2}
database=${CANARY_DEMO_DATABASE:-canary_demo}
port=${CANARY_DEMO_PORT:-55460}
quiet=${CANARY_DEMO_QUIET:-0}
assert=${CANARY_DEMO_ASSERT:-0}

for setting in requests replays port; do
	if ! [[ ${!setting} =~ ^[0-9]+$ ]]; then
		echo "invalid $setting \"${!setting}\": expected a non-negative integer" >&2
		exit 2
	fi
done
if [ "$replays" -lt 1 ]; then
	echo "invalid replays \"$replays\": expected at least 1" >&2
	exit 2
fi
if ! [[ $database =~ ^[a-z_][a-z0-9_]*$ ]]; then
	echo "invalid database name \"$database\": expected lower-case letters, digits and _" >&2
	exit 2
fi
[ "$requests" -eq 0 ] && requests=$(($(wc -l <"$here/data/conversation.csv") + 1))

# Print a line unless quiet.
say() {
	[ "$quiet" = 1 ] || printf '%s\n' "$*"
}

#
# Server
#

work=
cleanup() {
	if [ -n "$work" ]; then
		if [ -f "$work/data/postmaster.pid" ]; then
			canary_as_server_user pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
		fi
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${PGHOST:-}" ] || [ -n "${PGPORT:-}" ]; then
	[ "$(id -u)" -eq 0 ] && export PGUSER=${PGUSER:-$(canary_server_user)}
	echo "using the server at ${PGHOST:-default socket} port ${PGPORT:-5432}"
	command -v pg_config >/dev/null && export PATH="$(canary_pg_bindir):$PATH"
else
	canary_ensure_packages "${CANARY_BUILD_PACKAGES[@]}"
	export PATH="$(canary_pg_bindir):$PATH"

	echo "building and installing canary"
	make -C "$repo" -s
	make -C "$repo" -s install

	work=$(mktemp -d /tmp/canary-demo.XXXXXX)
	chmod 755 "$work"
	chown "$(canary_server_user)" "$work"
	canary_as_server_user initdb -D "$work/data" -A trust -U postgres \
		--encoding=UTF8 --locale=C --no-sync >/dev/null
	cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
fsync = off
CONF
	if ! canary_as_server_user pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null; then
		echo "could not start the demo server; its log follows" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	export PGHOST=$work PGPORT=$port PGUSER=postgres
	echo "started a throwaway PostgreSQL server in $work"
fi

# JIT compilation costs more than it saves on the demo's small queries.
# Warnings and errors are enough; notices would interleave with the timeline.
export PGOPTIONS="${PGOPTIONS:-} -c jit=off -c client_min_messages=warning"
psql_run() {
	psql -X -q -v ON_ERROR_STOP=1 -At "$@"
}

#
# Database, extension, log table and trace
#

psql_run -d postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
export PGDATABASE=$database
psql_run -c "CREATE EXTENSION canary" \
	-c "SELECT canary_create_execution_log_table('public.agent_execution_logs', false)"

started=$SECONDS
psql_run -v seed="$seed" -v requests="$requests" -v replays="$replays" \
	-v csv="$here/data/conversation.csv" -f "$here/demo.sql"
IFS='|' read -r trace_requests trace_minutes < <(psql_run -c \
	"SELECT count(*), max(replay_minutes) FROM demo.trace, demo.settings")
echo "loaded $trace_requests requests spanning $trace_minutes minutes of the" \
	"Azure LLM inference trace (conversation service); seed $seed"
max_minutes=$((trace_minutes * replays))

#
# Scenarios
#

failures=0

# Rollout settings of every scenario; the other settings keep their defaults.
stage_duration='5 minutes'
evaluation_window='10 minutes'
min_samples=${CANARY_DEMO_MIN_SAMPLES:-100}
max_error_rate=0.05

# Print "ok" or "not ok" for a check whose SQL query returns true or false.
check() {
	local description=$1 query=$2 result
	[ "$assert" = 1 ] || return 0
	result=$(psql_run -c "$query")
	if [ "$result" = t ]; then
		echo "ok - $description"
	else
		echo "not ok - $description"
		failures=$((failures + 1))
	fi
}

# Print the operator's command, then run it.
operator() {
	say "     operator> psql -c \"$1\""
	psql_run -c "$1" >/dev/null || say "     (the command failed; the demo goes on)"
}

# Create and start a rollout of a canary version of a new agent whose stable
# version is v1, then replay minute by minute until it is promoted or rolled
# back.  Optional: the minutes before which an operator pauses and resumes it.
run_scenario() {
	local number=$1 agent=$2 version=$3 title=$4 pause_before=${5:-0} resume_before=${6:-0}
	local minute line status

	echo
	echo "=== Scenario $number: $title"
	psql_run -c "SELECT canary_register_agent('$agent', 'v1')" >/dev/null
	rollout=$(psql_run -c "
		INSERT INTO demo.scenarios
		SELECT $number, '$agent', '$version',
			   canary_create('$agent', '$version',
							 stage_duration => '$stage_duration',
							 evaluation_window => '$evaluation_window',
							 min_samples => $min_samples,
							 max_error_rate => $max_error_rate,
							 id => md5('canary demo $seed:$number')::uuid)
		RETURNING rollout_id")
	psql_run -c "SELECT canary_start('$rollout', base_time) FROM demo.settings" >/dev/null
	say "agent $agent: stable v1, canary $version, rollout $rollout"
	say "stages 5/25/50/75/100%, $stage_duration each, window $evaluation_window," \
		"min_samples $min_samples, max_error_rate $max_error_rate"
	say ""
	say " min  stage   pct  --- baseline v1 ---  ----- canary -----  decision"
	say "                   req/min  err%  p95ms  req/min  err%  p95ms"

	for ((minute = 1; minute <= max_minutes; minute++)); do
		[ "$minute" -eq "$pause_before" ] &&
			operator "SELECT canary_pause('$rollout', 'operator: checking a customer complaint')"
		[ "$minute" -eq "$resume_before" ] &&
			operator "SELECT canary_resume('$rollout')"
		IFS=$'\t' read -r line status < <(psql_run -F $'\t' -c \
			"SELECT line, rollout_status FROM demo.step($number, $minute)")
		say "$line"
		case $status in
			promoted | rolled_back) break ;;
			paused/manual) ;;
			paused/*)
				say "     paused by canary itself; only an operator's canary_resume() can continue it"
				break ;;
		esac
	done

	print_outcome "$rollout"
}

# Print the rollout's row of canary.rollouts and its transitions.
print_outcome() {
	local rollout=$1

	psql_run -F ' ' -c "
		SELECT format('outcome: %s after %s simulated minutes, highest stage %s of %s, stable version of %s now %s',
					  r.outcome, coalesce(round(extract(epoch FROM r.duration) / 60)::text, '-'),
					  r.max_stage_reached, r.stage_count, r.agent_id, a.stable_version)
		FROM canary.rollouts r JOIN canary.agents a USING (agent_id)
		WHERE r.deployment_id = '$rollout'"
	say "reason: $(psql_run -c "SELECT final_reason FROM canary.rollouts WHERE deployment_id = '$rollout'")"
	say "transitions (canary_history):"
	[ "$quiet" = 1 ] || psql_run -F ' ' -c "
		SELECT format('  %-9s %-12s stage %s at %s%%  %s',
					  CASE WHEN h.automatic
						   THEN 'min ' || round(extract(epoch FROM h.at - s.base_time) / 60)
						   ELSE 'operator' END,
					  h.action, h.stage, trim_scale(h.percentage), h.reason)
		FROM canary_history('$rollout') h, demo.settings s
		WHERE h.kind = 'transition' ORDER BY h.id"
}

run_scenario 1 support-agent-1 v2-fast "healthy version, same error rate, 5% faster"
check "scenario 1: rollout promoted" \
	"SELECT status = 'promoted' FROM canary.deployments d JOIN demo.scenarios s ON s.rollout_id = d.id WHERE s.scenario = 1"
check "scenario 1: stable version is now v2-fast" \
	"SELECT stable_version = 'v2-fast' FROM canary.agents WHERE agent_id = 'support-agent-1'"

run_scenario 2 support-agent-2 v2-slow "regressed version, error rate 1% -> 3%, latency +30%"
echo "routing after the rollback, for every user of the population:"
psql_run -F ' ' -c "
	WITH had_canary AS (
		SELECT DISTINCT user_id FROM demo.routed WHERE agent_id = 'support-agent-2' AND is_canary
	), now_routed AS (
		SELECT u.user_id, rt.version, rt.is_canary
		FROM demo.users u,
			 canary_route('support-agent-2', 'after-rollback-' || u.user_rank, u.user_id) rt
	)
	SELECT format('  %s users: %s routed to %s, %s to the canary; %s of them had v2-slow during the rollout',
				  count(*), count(*) FILTER (WHERE version = 'v1'), 'v1',
				  count(*) FILTER (WHERE is_canary),
				  count(*) FILTER (WHERE user_id IN (SELECT user_id FROM had_canary)))
	FROM now_routed"
check "scenario 2: rollout rolled back" \
	"SELECT status = 'rolled_back' FROM canary.deployments d JOIN demo.scenarios s ON s.rollout_id = d.id WHERE s.scenario = 2"
check "scenario 2: rolled back in stage 1 or 2" \
	"SELECT current_stage <= 2 FROM canary.deployments d JOIN demo.scenarios s ON s.rollout_id = d.id WHERE s.scenario = 2"
check "scenario 2: every user routed to v1 after the rollback" \
	"SELECT bool_and(rt.version = 'v1' AND NOT rt.is_canary) FROM demo.users u, canary_route('support-agent-2', 'check-' || u.user_rank, u.user_id) rt"

run_scenario 3 support-agent-3 v2-broken "broken version, every request fails"
check "scenario 3: rollout rolled back" \
	"SELECT status = 'rolled_back' FROM canary.deployments d JOIN demo.scenarios s ON s.rollout_id = d.id WHERE s.scenario = 3"
check "scenario 3: rolled back no later than the first evaluation with min_samples canary requests" \
	"SELECT count(*) = 0
	 FROM canary.decisions x JOIN demo.scenarios s ON s.rollout_id = x.deployment_id
	 JOIN canary.metrics m ON m.id = x.metrics_id
	 WHERE s.scenario = 3 AND m.canary_requests >= $min_samples
	   AND x.decision <> 'rollback'"

run_scenario 4 support-agent-4 v2-fast "operator pauses and resumes a healthy rollout" 12 17
check "scenario 4: paused by the operator" \
	"SELECT count(*) = 1 FROM canary.transitions t JOIN demo.scenarios s ON s.rollout_id = t.deployment_id WHERE s.scenario = 4 AND t.event = 'paused' AND NOT t.automatic"
check "scenario 4: resumed by the operator" \
	"SELECT count(*) = 1 FROM canary.transitions t JOIN demo.scenarios s ON s.rollout_id = t.deployment_id WHERE s.scenario = 4 AND t.event = 'resumed' AND NOT t.automatic"
check "scenario 4: continued after the resume" \
	"SELECT EXISTS (SELECT FROM canary.decisions x JOIN demo.scenarios s ON s.rollout_id = x.deployment_id
					WHERE s.scenario = 4 AND x.automatic AND x.decision IN ('progress', 'promote')
					  AND x.id > (SELECT max(t.id) FROM canary.transitions t
								  WHERE t.deployment_id = x.deployment_id AND t.event = 'resumed'))"

echo
echo "all rollouts (canary.rollouts):"
psql_run -F ' ' -c "
	SELECT format('  %-16s %-10s %-12s stage %s of %s  %s', agent_id, canary_version,
				  outcome, max_stage_reached, stage_count, final_reason)
	FROM canary.rollouts ORDER BY agent_id"
echo "demo finished in $((SECONDS - started)) s"

if [ "$failures" -gt 0 ]; then
	echo "$failures checks failed" >&2
	exit 1
fi
