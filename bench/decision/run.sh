#!/usr/bin/env bash
#
# Decision-quality benchmark.  Builds and installs canary, starts a
# throwaway PostgreSQL 15 cluster, and simulates many canary rollouts
# through the real canary_create, canary_start, canary_route and
# canary_evaluate, with the simulated clock passed as "at":
#
# - stage plan 5/25/50/75/100% of 30 minutes each and every other
#   canary_create default, analysis 'threshold' or 'sequential';
# - one evaluation at the end of every simulated minute;
# - synthetic traffic: Poisson arrivals at the batch's rate (requests per
#   minute across both versions).  Each request is routed by canary_route,
#   so the split is the product's own.  Latency is log-normal (median
#   800 ms, sigma 0.6) with a Pareto tail on 1% of requests.  Errors are 1%,
#   and 3% during error bursts that both versions share (start probability
#   1/120 per minute, mean length 2 minutes);
# - scenarios: A/A, canary errors x1.5, x2, x5, canary latency +10% and
#   +25%, and a tail-only regression (a calibrated share of the requests
#   above the median take 3 times as long: p95 +25%, median within 1%);
# - A/A replays of the Azure LLM inference trace (data/README.md): real
#   arrivals, latency from the token counts.
#
# Runs with the same seed see the same arrivals and per-request draws under
# both judges.  Rollouts that ended get no more traffic; a rollout still
# running after CANARY_BENCH_MAX_MINUTES counts as undecided.
#
# Run as root on Debian 12; missing packages are installed with apt-get and
# the server runs as the unprivileged user "postgres".  The server listens
# only on a unix socket in a temporary directory, does not preload canary
# (so no background worker evaluates at the wall-clock time), and is
# stopped and removed on exit, including on failure and Ctrl-C.  Raw
# outputs go to bench/out/decision; the summary replaces the generated
# part of the "## Decision quality" section of bench/RESULTS.md.
#
# Environment:
#   CANARY_BENCH_RUNS         rollouts per scenario, rate and judge (default: 300)
#   CANARY_BENCH_RATES        requests per minute, space-separated (default: "100 1000")
#   CANARY_BENCH_SCENARIOS    synthetic scenarios (default: all of
#                             "aa errors_x1.5 errors_x2 errors_x5 latency_10 latency_25 tail_p95_25")
#   CANARY_BENCH_JUDGES       analyses (default: "threshold sequential")
#   CANARY_BENCH_REPLAYS      trace replays per judge; 0 skips them (default: 50)
#   CANARY_BENCH_SEED         seed of all draws (default: 1)
#   CANARY_BENCH_MAX_MINUTES  simulated minutes before a rollout counts as
#                             undecided (default: 210)
#   CANARY_BENCH_WORKERS      concurrent simulation sessions (default: 2)
#   CANARY_BENCH_CHUNK        most rollouts simulated together in one batch (default: 50)
#   CANARY_BENCH_PORT         port number of the server's socket (default: 55460)
#   CANARY_BENCH_RESULTS      file that receives the section (default:
#                             bench/RESULTS.md; empty: write none)
#
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/test/lib.sh"
. "$repo/bench/lib.sh"

all_scenarios="aa errors_x1.5 errors_x2 errors_x5 latency_10 latency_25 tail_p95_25"
runs=${CANARY_BENCH_RUNS:-300}
rates=${CANARY_BENCH_RATES:-100 1000}
scenarios=${CANARY_BENCH_SCENARIOS:-$all_scenarios}
judges=${CANARY_BENCH_JUDGES:-threshold sequential}
replays=${CANARY_BENCH_REPLAYS:-50}
seed=${CANARY_BENCH_SEED:-1}
max_minutes=${CANARY_BENCH_MAX_MINUTES:-210}
workers=${CANARY_BENCH_WORKERS:-2}
chunk=${CANARY_BENCH_CHUNK:-50}
port=${CANARY_BENCH_PORT:-55460}
results=${CANARY_BENCH_RESULTS-$repo/bench/RESULTS.md}
out=$repo/bench/out/decision

for setting in runs seed max_minutes workers chunk port; do
	if ! [[ ${!setting} =~ ^[1-9][0-9]*$ ]]; then
		echo "invalid $setting \"${!setting}\": expected a positive integer" >&2
		exit 2
	fi
done
if ! [[ $replays =~ ^[0-9]+$ ]]; then
	echo "invalid replays \"$replays\": expected a non-negative integer" >&2
	exit 2
fi
for rate in $rates; do
	if ! [[ $rate =~ ^[1-9][0-9]*$ ]]; then
		echo "invalid rate \"$rate\" in CANARY_BENCH_RATES: expected positive integers" >&2
		exit 2
	fi
done
for scenario in $scenarios; do
	if ! [[ " $all_scenarios " == *" $scenario "* ]]; then
		echo "unrecognized scenario \"$scenario\" in CANARY_BENCH_SCENARIOS; expected some of: $all_scenarios" >&2
		exit 2
	fi
done
for judge in $judges; do
	if [ "$judge" != threshold ] && [ "$judge" != sequential ]; then
		echo "unrecognized judge \"$judge\" in CANARY_BENCH_JUDGES; expected threshold or sequential" >&2
		exit 2
	fi
done

canary_ensure_packages "${CANARY_BUILD_PACKAGES[@]}"
export PATH="$(canary_pg_bindir):$PATH"

# Build and install as the invoking user (root on CI).
make -C "$repo" -s
make -C "$repo" -s install

rm -rf "$out"
mkdir -p "$out"
work=$(canary_bench_make_workdir decision)
worker_pids=()

# Stop the workers and the server and remove its directory, whatever ended
# the script.
cleanup() {
	for pid in "${worker_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	canary_bench_remove_server "$work" "" 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start the throwaway cluster: unix socket only, no TCP listener, nothing
# preloaded.  Durability is off because the data is thrown away.
canary_bench_start_server "$work" "$port" <<CONF || exit 1
max_connections = 20
shared_buffers = 2GB
work_mem = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 8GB
checkpoint_timeout = 30min
jit = off
timezone = 'UTC'
CONF

export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql_run() {
	psql -X -q -v ON_ERROR_STOP=1 -At -F '|' "$@"
}

server_version=$(psql_run -c 'SHOW server_version')
echo "server: PostgreSQL $server_version, socket $work port $port"

# Load the simulation and the trace.
psql_run -f "$here/setup.sql" >"$out/setup.log"
psql_run <<SQL
CREATE TEMP TABLE trace_csv (ts timestamp, context_tokens integer, generated_tokens integer);
\copy trace_csv FROM '$here/data/conversation.csv' WITH (FORMAT csv, HEADER true)
INSERT INTO canary_bench.trace (id, offset_s, context_tokens, generated_tokens)
SELECT row_number() OVER (ORDER BY ts), extract(epoch FROM ts - min(ts) OVER ()),
	   context_tokens, generated_tokens
FROM trace_csv;
SQL
psql_run -f "$here/calibrate.sql" >"$out/calibration.log"
IFS='|' read -r _ slow_fraction base_p50 base_p95 tail_p50 tail_p95 p50_change p95_change \
	< <(grep '^calibration|' "$out/calibration.log")
echo "tail scenario: $slow_fraction of the requests above the median take 3x;" \
	"median $base_p50 -> $tail_p50 ms ($p50_change%), p95 $base_p95 -> $tail_p95 ms ($p95_change%)"

# Queue the batches: one per rate, judge, scenario and chunk of at most
# $chunk runs.  The costliest come first so that the workers finish
# together: the higher rate, then the sequential judge, whose healthy
# rollouts run longest.
first_seed=$((seed * 1000000 + 1))
{
	echo "CALL canary_bench.make_bursts($first_seed, $((first_seed + (runs > replays ? runs : replays) - 1)), $max_minutes);"
	batch=0
	queue_batches() {
		local rate=$1 judge=$2 scenario=$3 count=$4 start
		for ((start = 0; start < count; start += chunk)); do
			batch=$((batch + 1))
			echo "INSERT INTO canary_bench.batches (id, rate, judge, scenarios, runs, first_seed)
				VALUES ($batch, $rate, '$judge', '{$scenario}',
						$((count - start < chunk ? count - start : chunk)), $((first_seed + start)));"
		done
	}
	for rate in $(echo $rates | tr ' ' '\n' | sort -rn); do
		for judge in $(echo $judges | tr ' ' '\n' | sort -u); do
			for scenario in $scenarios; do
				queue_batches "$rate" "$judge" "$scenario" "$runs"
			done
		done
	done
	if [ "$replays" -gt 0 ]; then
		for judge in $(echo $judges | tr ' ' '\n' | sort -u); do
			queue_batches 0 "$judge" trace_aa "$replays"
		done
	fi
} | psql_run

# Simulate: each worker session claims batches until none is left.
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((w = 1; w <= workers; w++)); do
	psql_run -c "CALL canary_bench.create_log('log_$w')"
	psql_run -c "LOAD 'canary'" -c "SET canary.execution_log_table = 'canary_bench.log_$w'" \
		-c "CALL canary_bench.work($w, $max_minutes)" >"$out/worker_$w.log" 2>&1 &
	worker_pids+=($!)
done
failed=0
for pid in "${worker_pids[@]}"; do
	wait "$pid" || failed=1
done
worker_pids=()
if [ "$failed" -ne 0 ]; then
	tail -n 20 "$out"/worker_*.log >&2
	echo "a simulation worker failed; see $out/worker_*.log" >&2
	exit 1
fi
elapsed=$(($(date +%s) - started))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
echo "simulation took $elapsed s"

psql_run -c "SELECT id, rate, judge, runs, worker, round(extract(epoch FROM finished_at - started_at)), log_rows, evaluations
	FROM canary_bench.batches ORDER BY id" >"$out/batches.txt"
psql_run -c "COPY (SELECT * FROM canary_bench.runs ORDER BY run_id) TO STDOUT WITH (FORMAT csv, HEADER true)" \
	>"$out/runs.csv"

# Write the report section.
command="bash bench/decision/run.sh"
for variable in CANARY_BENCH_CHUNK CANARY_BENCH_WORKERS CANARY_BENCH_MAX_MINUTES CANARY_BENCH_SEED \
	CANARY_BENCH_REPLAYS CANARY_BENCH_JUDGES CANARY_BENCH_SCENARIOS CANARY_BENCH_RATES CANARY_BENCH_RUNS; do
	if [ -n "${!variable:-}" ]; then
		command="$variable=\"${!variable}\" $command"
	fi
done
memory_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
seed_list="$first_seed to $((first_seed + runs - 1))"
source_sum=$(cat "$repo"/src/*.c "$repo"/src/*.h "$repo"/sql/install/*.sql | sha256sum | cut -c1-12)
IFS='|' read -r total_rows total_evaluations < <(psql_run -c "SELECT sum(log_rows), sum(evaluations) FROM canary_bench.batches")

section=$out/section.md
{
	echo "<!-- begin decision results: generated by bench/decision/run.sh, replaced on every run -->"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); wall time of the simulation $((elapsed / 60)) min $((elapsed % 60)) s"
	echo "- Machine: $(nproc) CPUs ($cpu_model), $memory_gib GiB RAM; load average (1, 5, 15 min) $load_start at the start, $load_end at the end"
	echo "- PostgreSQL $server_version; canary built from commit $commit plus any uncommitted changes in the working tree (SHA-256 of src/*.c, src/*.h and sql/install/*.sql: $source_sum)"
	echo "- Command, from the repository root: \`$command\`"
	echo "- Runs per row: $runs (seeds $seed_list, the same for every scenario, rate and judge); trace replays per judge: $replays (seeds from $first_seed); $workers worker sessions; a rollout still running after $max_minutes simulated minutes counts as undecided"
	echo "- Work: $total_rows execution log rows written and $total_evaluations evaluations by canary_evaluate; every request routed by canary_route"
	echo "- Tail scenario: $slow_fraction of the canary requests above the log-normal median take 3 times as long; measured on 1,000,000 draws: median $base_p50 -> $tail_p50 ms ($p50_change%), p95 $base_p95 -> $tail_p95 ms ($p95_change%)"
	echo
	psql_run -f "$here/report.sql"
	echo
	echo "<!-- end decision results -->"
} >"$section"

echo
cat "$section"

# Replace the generated block in the results file.
if [ -n "$results" ]; then
	canary_bench_write_section "$results" "Decision quality" decision "$section"
fi
