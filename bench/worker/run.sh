#!/usr/bin/env bash
#
# Worker tick benchmark.  Builds and installs canary, starts a throwaway
# PostgreSQL 15 cluster that preloads it, creates 1,000 running rollouts
# whose agents share one execution log table with 1,000 rows per agent in
# the last 10 minutes (the evaluation window), and measures:
#
# - the wall-clock time of one tick done by SQL: SELECT canary_evaluate_all()
#   from psql, several times;
# - the background worker's own ticks: the time in its DEBUG1 tick line and
#   the worker's CPU time (user + system, from /proc/PID/stat) per tick.
#
# Target (reported, never a reason to fail): one tick under 2 s.
#
# Rollouts have one-hour stages and loose limits (p95 latency ratio 2,
# success rate ratio 0.9, error rate 10%).  Canary and baseline rows come
# from the same distribution, so nearly every evaluation decides "continue".
# Each tick then does the same work: read the window, store a canary.metrics
# row and a canary.decisions row per rollout.
#
# Run as root on Debian 12; missing packages are installed with apt-get and
# the server runs as the unprivileged user "postgres".  The server listens
# only on a unix socket in a temporary directory and is removed on exit.
# Raw outputs go to bench/out/worker; the summary replaces the generated
# part of the "## Worker tick" section of bench/RESULTS.md.
#
# Environment:
#   CANARY_BENCH_ROLLOUTS      running rollouts (default: 1000)
#   CANARY_BENCH_ROWS          log rows per agent in the window (default: 1000)
#   CANARY_BENCH_SQL_TICKS     canary_evaluate_all() runs (default: 5)
#   CANARY_BENCH_WORKER_TICKS  worker ticks measured (default: 3)
#   CANARY_BENCH_PORT          port number of the server's socket (default: 55451)
#   CANARY_BENCH_RESULTS       file that receives the section (default:
#                              bench/RESULTS.md; empty: write none)
#
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/test/lib.sh"
. "$repo/bench/lib.sh"

rollouts=${CANARY_BENCH_ROLLOUTS:-1000}
rows=${CANARY_BENCH_ROWS:-1000}
sql_ticks=${CANARY_BENCH_SQL_TICKS:-5}
worker_ticks=${CANARY_BENCH_WORKER_TICKS:-3}
port=${CANARY_BENCH_PORT:-55451}
results=${CANARY_BENCH_RESULTS-$repo/bench/RESULTS.md}
out=$repo/bench/out/worker

for setting in rollouts rows sql_ticks worker_ticks port; do
	if ! [[ ${!setting} =~ ^[1-9][0-9]*$ ]]; then
		echo "invalid $setting \"${!setting}\": expected a positive integer" >&2
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
work=$(canary_bench_make_workdir worker)

# Stop the server and remove its directory, whatever ended the script.
# After a failure its log is kept in bench/out/worker.
cleanup() {
	canary_bench_remove_server "$work" "$out" $?
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start the throwaway cluster: unix socket only, worker off until the data
# is loaded.
canary_bench_start_server "$work" "$port" <<CONF || exit 1
shared_preload_libraries = 'canary'
canary.worker_enabled = off
max_connections = 20
fsync = off
CONF

export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql_run() {
	psql -X -q -v ON_ERROR_STOP=1 -At -F '|' "$@"
}

server_version=$(psql_run -c 'SHOW server_version')
echo "server: PostgreSQL $server_version, socket $work port $port"

# Agents a1..aN, each with a rollout at 25% started 11 minutes ago, and
# N * rows log rows spread over the last 10 minutes: 25% canary, 1% errors,
# log-normal latency around 180 ms.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
setup_start=$(date +%s.%N)
psql_run -v rollouts="$rollouts" -v rows="$rows" >"$out/setup.log" <<'SQL'
CREATE EXTENSION canary;
SELECT canary_create_execution_log_table();
SELECT count(canary_register_agent('a' || i, 'v1')) FROM generate_series(1, :rollouts) i;
SELECT count(canary_start(canary_create('a' || i, 'v2', stages => '{25,50,75}',
		stage_duration => '1 hour', min_samples => 100,
		success_rate_ratio => 0.9, p95_latency_ratio => 2, max_error_rate => 0.1),
		now() - interval '11 minutes'))
FROM generate_series(1, :rollouts) i;
INSERT INTO agent_execution_logs (agent_id, version, status, latency_ms, "timestamp")
SELECT 'a' || i, CASE WHEN random() < 0.25 THEN 'v2' ELSE 'v1' END,
	   CASE WHEN random() < 0.01 THEN 'error' ELSE 'success' END,
	   round(180 * exp(0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::integer,
	   now() - random() * interval '10 minutes'
FROM generate_series(1, :rollouts) i, generate_series(1, :rows) j;
VACUUM ANALYZE agent_execution_logs;
SELECT count(*) FROM agent_execution_logs;
SQL
setup_seconds=$(awk -v s="$setup_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
echo "setup: $rollouts rollouts, $(tail -1 "$out/setup.log") log rows in $setup_seconds s"

# Ticks by SQL: each run evaluates every rollout at a new time.
for ((i = 1; i <= sql_ticks; i++)); do
	psql_run <<'SQL' | awk '/^Time:/ { print $2 }' >>"$out/sql_tick_ms.txt"
\timing on
SELECT count(*) FILTER (WHERE error IS NOT NULL) AS failed FROM canary_evaluate_all() \g /dev/null
SQL
	printf 'canary_evaluate_all() run %d/%d: %s ms\n' "$i" "$sql_ticks" "$(tail -1 "$out/sql_tick_ms.txt")"
done
failed=$(psql_run -c "SELECT count(*) FILTER (WHERE error IS NOT NULL) FROM canary_evaluate_all()")
if [ "$failed" != 0 ]; then
	echo "$failed evaluations failed in canary_evaluate_all(); see $out/server.log" >&2
	exit 1
fi

# A chance breach (for example a sample ratio mismatch test with p < 0.001)
# may stop a few rollouts; the report states how many still run.
running=$(psql_run -c "SELECT count(*) FROM canary.deployments WHERE status = 'running'")
echo "rollouts still running after the SQL ticks: $running of $rollouts"

# Ticks by the worker: every 20 s, with DEBUG1 tick lines in the log.
log_offset=$(stat -c %s "$work/server.log")
psql_run <<'SQL'
ALTER SYSTEM SET canary.worker_enabled = on;
ALTER SYSTEM SET canary.evaluation_interval = '20s';
ALTER SYSTEM SET log_min_messages = debug1;
SELECT pg_reload_conf() \g /dev/null
SQL

# Print the number of worker tick lines written since the offset.
tick_lines() {
	tail -c +"$((log_offset + 1))" "$work/server.log" | grep -c 'canary worker tick in database "postgres"' || true
}

# Wait until the log has at least $1 tick lines, for at most 10 minutes.
wait_ticks() {
	local deadline=$((SECONDS + 600))
	while [ "$(tick_lines)" -lt "$1" ]; do
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out waiting for worker tick $1" >&2
			exit 1
		fi
		sleep 0.2
	done
}

# Print the CPU time of a process in milliseconds: utime + stime.
cpu_ms() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}

wait_ticks 1
worker_pid=$(psql_run -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'canary worker'")
for ((i = 1; i <= worker_ticks; i++)); do
	before=$(cpu_ms "$worker_pid")
	wait_ticks $((i + 1))
	after=$(cpu_ms "$worker_pid")
	awk -v a="$after" -v b="$before" 'BEGIN { print a - b }' >>"$out/worker_cpu_ms.txt"
done
tail -c +"$((log_offset + 1))" "$work/server.log" | grep 'canary worker tick in database "postgres"' |
	sed -n "2,$((worker_ticks + 1))p" >"$out/worker_ticks.log"
sed -E 's/.* in ([0-9]+) ms$/\1/' "$out/worker_ticks.log" >"$out/worker_tick_ms.txt"
cat "$out/worker_ticks.log"
if grep -qv " 0 failed in [0-9]* ms$" "$out/worker_ticks.log"; then
	echo "an evaluation failed in a worker tick; see $out/server.log" >&2
	exit 1
fi
worker_evaluated=$(sed -E 's/.*: ([0-9]+) rollouts evaluated.*/\1/' "$out/worker_ticks.log" | sort -n | head -1)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# Print the median, minimum and maximum of the numbers in a file.
summarize() {
	sort -g "$1" | awk '{ v[NR] = $1 }
		END {
			if (NR % 2) median = v[(NR + 1) / 2]
			else median = (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.0f %.0f %.0f\n", median, v[1], v[NR]
		}'
}
read -r sql_median sql_min sql_max < <(summarize "$out/sql_tick_ms.txt")
read -r worker_median worker_min worker_max < <(summarize "$out/worker_tick_ms.txt")
read -r cpu_median cpu_min cpu_max < <(summarize "$out/worker_cpu_ms.txt")
met_sql=$(awk -v v="$sql_median" 'BEGIN { print (v < 2000) ? "yes" : "no" }')
met_worker=$(awk -v v="$worker_median" 'BEGIN { print (v < 2000) ? "yes" : "no" }')

command="bench/worker/run.sh"
for variable in CANARY_BENCH_WORKER_TICKS CANARY_BENCH_SQL_TICKS CANARY_BENCH_ROWS CANARY_BENCH_ROLLOUTS; do
	if [ -n "${!variable:-}" ]; then
		command="$variable=${!variable} $command"
	fi
done
memory_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)

section=$out/section.md
{
	echo "<!-- begin worker results: generated by bench/worker/run.sh, replaced on every run -->"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- Machine: $(nproc) CPUs ($cpu_model), $memory_gib GiB RAM; load average (1, 5, 15 min) $load_start at the start, $load_end at the end"
	echo "- PostgreSQL $server_version; canary built from commit $commit plus any uncommitted changes in the working tree"
	echo "- Command, from the repository root: \`$command\`"
	echo "- Server: default settings plus \`shared_preload_libraries = 'canary'\` and \`fsync = off\`"
	echo "- Data: $rollouts running rollouts at 25%, one agent each, over one execution log table"
	echo "  made by \`canary_create_execution_log_table()\` with $rows rows per agent in the last 10 minutes"
	echo "  (the default evaluation window); evaluations decide \"continue\" unless a check fails by chance:"
	echo "  $running rollouts still ran after the SQL ticks, and each worker tick evaluated at least $worker_evaluated"
	echo
	echo "| Tick | Median | Min | Max | Target | Met |"
	echo "|---|---:|---:|---:|---:|---|"
	printf '| `SELECT canary_evaluate_all()`, wall clock, %d runs | %s ms | %s ms | %s ms | < 2000 ms | %s |\n' \
		"$sql_ticks" "$sql_median" "$sql_min" "$sql_max" "$met_sql"
	printf '| worker tick, wall clock from its DEBUG1 line, %d ticks | %s ms | %s ms | %s ms | < 2000 ms | %s |\n' \
		"$worker_ticks" "$worker_median" "$worker_min" "$worker_max" "$met_worker"
	printf '| worker CPU time (user + system) per tick, %d ticks | %s ms | %s ms | %s ms | | |\n' \
		"$worker_ticks" "$cpu_median" "$cpu_min" "$cpu_max"
	echo
	echo "The worker's CPU time is measured over a whole 20 s interval, which holds one"
	echo "tick and the idle wait after it. A worker tick commits one transaction per"
	echo "rollout, where canary_evaluate_all() uses one subtransaction per rollout."
	if [ "$met_sql" != yes ] || [ "$met_worker" != yes ]; then
		echo
		echo "Targets not met in this run:"
		if [ "$met_sql" != yes ]; then
			echo "- canary_evaluate_all() took a median $sql_median ms, not under 2000 ms."
		fi
		if [ "$met_worker" != yes ]; then
			echo "- a worker tick took a median $worker_median ms, not under 2000 ms."
		fi
	fi
	echo
	echo "<!-- end worker results -->"
} >"$section"

echo
cat "$section"

# Replace the generated block in the results file.
if [ -n "$results" ]; then
	canary_bench_write_section "$results" "Worker tick" worker "$section"
fi
