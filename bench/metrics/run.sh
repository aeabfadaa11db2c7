#!/usr/bin/env bash
#
# Metrics collection benchmark.  Builds and installs canary, starts a
# throwaway PostgreSQL 15 cluster that preloads it, loads an execution log
# of CANARY_BENCH_ROWS rows over 24 hours for 100 agents (see generate.sql),
# and times three ways of reading every agent's rollout window:
#
# - naive: the straightforward SQL, per agent one query over both versions
#   with GROUP BY version, COUNT(*) FILTER for successes and errors and
#   percentile_cont(0.95), written as one statement with a LATERAL subquery
#   per agent;
# - floor: sum(latency_ms) over the same rows, one index range scan per
#   agent and version, the least work that reads them;
# - canary_collect_metrics for every agent, once per analysis.  Rollouts
#   with analysis 'threshold' read the window only.  Rollouts with the
#   default analysis 'sequential' started their attempt at the window start,
#   so their sequential tests judge every bucket of the same rows
#   (setup.sql explains how).
#
# Windows: 10 minutes, 1 hour and 6 hours, all starting at the same time,
# and 10 minutes in a second table that holds the same day plus the day
# before, so twice the rows.  Every round runs every statement once, in an
# order that rotates between rounds; the report gives the median, minimum
# and maximum of the measured rounds after one warm-up round.  Each time is
# psql's \timing of one statement over a unix socket.
#
# The script fails when a measured query does not read through the
# evaluation index, or when canary_collect_metrics and the straightforward
# SQL disagree on any count (or on a p95 that canary computed exactly)
# in any stored canary.metrics row.
#
# Targets (reported, never a reason to fail): canary_collect_metrics at
# least 3 times faster than the straightforward SQL, at most 2 times the
# floor, and no more than 20% slower in the table twice as large.
#
# Run as root on Debian 12; missing packages are installed with apt-get and
# the server runs as the unprivileged user "postgres".  The server listens
# only on a unix socket in a temporary directory and is removed on exit.
# Raw outputs go to bench/out/metrics; the summary replaces the generated
# part of the "## Metrics collection" section of bench/RESULTS.md.
#
# Environment:
#   CANARY_BENCH_ROWS            log rows per day (default: 10000000); the
#                                second table holds twice as many
#   CANARY_BENCH_ROUNDS          measured rounds (default: 5)
#   CANARY_BENCH_SHARED_BUFFERS  the server's shared_buffers (default: 4GB),
#                                enough to keep both indexes cached
#   CANARY_BENCH_PORT            port number of the server's socket (default: 55470)
#   CANARY_BENCH_RESULTS         file that receives the section (default:
#                                bench/RESULTS.md; empty: write none)
#
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/test/lib.sh"
. "$repo/bench/lib.sh"

rows=${CANARY_BENCH_ROWS:-10000000}
rounds=${CANARY_BENCH_ROUNDS:-5}
shared_buffers=${CANARY_BENCH_SHARED_BUFFERS:-4GB}
port=${CANARY_BENCH_PORT:-55470}
results=${CANARY_BENCH_RESULTS-$repo/bench/RESULTS.md}
out=$repo/bench/out/metrics

for setting in rows rounds port; do
	if ! [[ ${!setting} =~ ^[1-9][0-9]*$ ]]; then
		echo "invalid $setting \"${!setting}\": expected a positive integer" >&2
		exit 2
	fi
done
if ! [[ $shared_buffers =~ ^[1-9][0-9]*(kB|MB|GB)$ ]]; then
	echo "invalid shared_buffers \"$shared_buffers\": expected a size such as 4GB" >&2
	exit 2
fi

canary_ensure_packages "${CANARY_BUILD_PACKAGES[@]}"
export PATH="$(canary_pg_bindir):$PATH"

# Build and install as the invoking user (root on CI).
make -C "$repo" -s
make -C "$repo" -s install

rm -rf "$out"
mkdir -p "$out"
work=$(canary_bench_make_workdir metrics)

# Stop the server and remove its directory, whatever ended the script.
# After a failure its log is kept in bench/out/metrics.
cleanup() {
	canary_bench_remove_server "$work" "$out" $?
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start the throwaway cluster: unix socket only, no background worker, no
# JIT (its compile time would add a fixed cost to the straightforward SQL
# only) and no parallel query, so every statement runs in one process.
canary_bench_start_server "$work" "$port" <<CONF || exit 1
shared_preload_libraries = 'canary'
canary.worker_enabled = off
max_connections = 20
fsync = off
shared_buffers = '$shared_buffers'
maintenance_work_mem = '512MB'
max_wal_size = '8GB'
jit = off
max_parallel_workers_per_gather = 0
timezone = 'UTC'
CONF

export PGHOST=$work PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql_run() {
	psql -X -q -v ON_ERROR_STOP=1 -At -F '|' "$@"
}

server_version=$(psql_run -c 'SHOW server_version')
echo "server: PostgreSQL $server_version, socket $work port $port"

# Times: the newer day of data ends at data_end, and every window starts at
# attempt_start, 6 hours earlier.  The empty window ends before any row.
data_end=$(psql_run -c "SELECT date_trunc('minute', now())")
attempt_start=$(psql_run -c "SELECT '$data_end'::timestamptz - interval '6 hours'")
empty_at=$(psql_run -c "SELECT '$data_end'::timestamptz - interval '3 days'")
window_end() {
	psql_run -c "SELECT '$attempt_start'::timestamptz + interval '$1'"
}

psql_run -v attempt_start="$attempt_start" -f "$here/setup.sql" >"$out/setup.log"

# Generate each day once and load it with COPY: the newer day into both
# tables, the older day into the second table first, in timestamp order as
# an application appends rows.
load_start_seconds=$SECONDS
generate() {
	psql_run -v rows="$rows" -v first="$1" -v span_seconds=86400 -v seed="$2" \
		-f "$here/generate.sql" >"$3"
}
generate "$(psql_run -c "SELECT '$data_end'::timestamptz - interval '1 day'")" 0.25 "$work/newer_day.copy"
generate "$(psql_run -c "SELECT '$data_end'::timestamptz - interval '2 days'")" 0.75 "$work/older_day.copy"
generate_seconds=$((SECONDS - load_start_seconds))
psql_run -c "COPY public.agent_execution_logs FROM STDIN" <"$work/newer_day.copy"
psql_run -c "COPY public.agent_execution_logs_2x FROM STDIN" <"$work/older_day.copy"
psql_run -c "COPY public.agent_execution_logs_2x FROM STDIN" <"$work/newer_day.copy"
rm -f "$work/newer_day.copy" "$work/older_day.copy"
psql_run -c "VACUUM (ANALYZE) public.agent_execution_logs" \
	-c "VACUUM (ANALYZE) public.agent_execution_logs_2x" -c "CHECKPOINT"
load_seconds=$((SECONDS - load_start_seconds))
psql_run >"$out/sizes.txt" <<'SQL'
SELECT c.relname, c.reltuples::bigint, pg_size_pretty(pg_relation_size(c.oid))
FROM pg_class c
WHERE c.relname IN ('agent_execution_logs', 'agent_execution_logs_evaluation',
					'agent_execution_logs_2x', 'agent_execution_logs_2x_evaluation')
ORDER BY c.relname;
SQL
echo "loaded $rows + $((2 * rows)) rows in $load_seconds s (generation $generate_seconds s):"
cat "$out/sizes.txt"

# Configurations: name, log table, window.
configs=(
	"10m|public.agent_execution_logs|10 minutes"
	"1h|public.agent_execution_logs|1 hour"
	"6h|public.agent_execution_logs|6 hours"
	"10m_2x|public.agent_execution_logs_2x|10 minutes"
)
queries=(naive floor threshold sequential)

# Print the SQL of one measured query: query name, log table, window.
query_sql() {
	local end
	end=$(window_end "$3")
	case $1 in
		naive)
			cat <<SQL
SELECT a.agent_id, s.*
FROM canary_bench.agents a
CROSS JOIN LATERAL (
	SELECT l.version, count(*) AS requests,
		   count(*) FILTER (WHERE l.status = 'success') AS successes,
		   count(*) FILTER (WHERE l.status IN ('failed', 'error', 'timeout')) AS errors,
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms) AS p95
	FROM $2 l
	WHERE l.agent_id = a.agent_id
	  AND l."timestamp" > '$attempt_start' AND l."timestamp" <= '$end'
	GROUP BY l.version) s
SQL
			;;
		floor)
			cat <<SQL
SELECT sum(s.total)
FROM canary_bench.agents a
CROSS JOIN (VALUES ('v1'), ('v2')) v (version)
CROSS JOIN LATERAL (
	SELECT sum(l.latency_ms) AS total
	FROM $2 l
	WHERE l.agent_id = a.agent_id AND l.version = v.version
	  AND l."timestamp" > '$attempt_start' AND l."timestamp" <= '$end') s
SQL
			;;
		threshold | sequential)
			echo "SELECT count(canary_collect_metrics(${1}_rollout, '$3', '$end')) FROM canary_bench.agents"
			;;
		empty)
			echo "SELECT count(canary_collect_metrics(threshold_rollout, '10 minutes', '$empty_at')) FROM canary_bench.agents"
			;;
	esac
}

# Store the straightforward SQL's results for the agreement check, and
# print each query's plan with EXPLAIN ANALYZE.
for config in "${configs[@]}"; do
	IFS='|' read -r name table window <<<"$config"
	end=$(window_end "$window")
	psql_run -c "INSERT INTO canary_bench.expected
		SELECT '$name', '$attempt_start', '$end', q.* FROM ($(query_sql naive "$table" "$window")) q"
	for query in naive floor; do
		psql_run -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $(query_sql "$query" "$table" "$window")" \
			>"$out/explain_${name}_$query.txt"
	done
done

# canary_collect_metrics reads a plain log table through the evaluation
# index directly, so it has no plan to print.  Count its scans instead: one
# collection of every agent must scan the evaluation index once per version
# and never scan the table.  The statistics views count a backend's scans
# once they are flushed after its statement.
echo
echo "plans (scan nodes; full plans in bench/out/metrics/explain_*.txt):"
for config in "${configs[@]}"; do
	IFS='|' read -r name table window <<<"$config"
	end=$(window_end "$window")
	index="${table#public.}_evaluation"
	for mode in threshold sequential; do
		scans=$(psql_run <<SQL
SET canary.execution_log_table = '$table';
SELECT pg_stat_force_next_flush();
SELECT i.idx_scan, t.seq_scan FROM pg_stat_user_indexes i, pg_stat_user_tables t
WHERE i.indexrelname = '$index' AND t.relid = i.relid \\gset before_
SELECT count(canary_collect_metrics(${mode}_rollout, '$window', '$end'))
FROM canary_bench.agents \\g /dev/null
SELECT pg_stat_force_next_flush();
SELECT (i.idx_scan - :before_idx_scan) || ' index scans, ' ||
	   (t.seq_scan - :before_seq_scan) || ' table scans'
FROM pg_stat_user_indexes i, pg_stat_user_tables t
WHERE i.indexrelname = '$index' AND t.relid = i.relid;
SQL
		)
		scans=$(echo "$scans" | tail -n 1)
		echo "$scans" >"$out/explain_${name}_$mode.txt"
		echo "$name $mode: $scans of ${table#public.} for 100 agents"
		if [ "$scans" != "200 index scans, 0 table scans" ]; then
			echo "$name $mode does not read ${table#public.} through index $index alone" >&2
			exit 1
		fi
	done
done

# Every straightforward query must read the log through its evaluation
# index and never scan the table.
for config in "${configs[@]}"; do
	IFS='|' read -r name table window <<<"$config"
	index="${table#public.}_evaluation"
	for query in naive floor; do
		file=$out/explain_${name}_$query.txt
		echo "$name $query:"
		grep -E 'Scan|Heap Fetches' "$file" | grep -v 'canary_bench\|deployments\|Values Scan\|transitions\|metrics' |
			sed 's/^[^A-Za-z]*/    /' | sort | uniq -c
		if ! grep -q "Index Only Scan using $index on" "$file" ||
			grep -Eq "(Seq|Bitmap Heap) Scan on ${table#public.}( |$)" "$file"; then
			echo "$name $query does not read ${table#public.} through index $index; see $file" >&2
			exit 1
		fi
	done
done

# Warm the cache: the indexes and the tables' visibility maps, then one
# unmeasured round.
psql_run >/dev/null <<'SQL'
SELECT pg_prewarm('public.agent_execution_logs_evaluation');
SELECT pg_prewarm('public.agent_execution_logs_2x_evaluation');
SELECT pg_prewarm('public.agent_execution_logs', 'buffer', 'vm');
SELECT pg_prewarm('public.agent_execution_logs_2x', 'buffer', 'vm');
SQL

# Print the psql script of one round.  Configurations and queries start one
# later each round, so that none always runs first.
round_script() {
	local round=$1 i j
	echo '\timing on'
	for ((i = 0; i < ${#configs[@]}; i++)); do
		IFS='|' read -r name table window <<<"${configs[(i + round) % ${#configs[@]}]}"
		echo "SET canary.execution_log_table = '$table';"
		for ((j = 0; j < ${#queries[@]}; j++)); do
			query=${queries[(j + round) % ${#queries[@]}]}
			echo "\\echo @$name|$query"
			echo "$(query_sql "$query" "$table" "$window") \\g /dev/null"
		done
	done
	echo "\\echo @empty|empty"
	echo "$(query_sql empty public.agent_execution_logs '10 minutes') \\g /dev/null"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 0; round <= rounds; round++)); do
	round_script "$round" >"$out/round$round.sql"
	psql_run -f "$out/round$round.sql" | awk -v round="$round" '
		/^@/ { label = substr($0, 2); next }
		/^Time: / && label != "" { print round "|" label "|" $2; label = "" }' >>"$out/times.txt"
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "$round|$load" >>"$out/load_after_round.txt"
	if [ "$round" -eq 0 ]; then
		echo "warm-up round done, load $load"
	else
		printf 'round %d/%d:' "$round" "$rounds"
		awk -F'|' -v r="$round" '$1 == r { printf " %s/%s %.0f ms", $2, $3, $4 }' "$out/times.txt"
		echo ", load $load"
	fi
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
expected_times=$(((rounds + 1) * (${#configs[@]} * ${#queries[@]} + 1)))
if [ "$(wc -l <"$out/times.txt")" -ne "$expected_times" ]; then
	echo "expected $expected_times timings in $out/times.txt, found $(wc -l <"$out/times.txt")" >&2
	exit 1
fi

# Agreement: every stored canary.metrics row of a measured window must have
# the straightforward SQL's counts for both versions, and its p95 where it
# was computed from all latencies rather than a sample.
psql_run -v empty_at="$empty_at" >"$out/check.txt" <<'SQL'
WITH m AS (
	SELECT m.*, a.agent_id
	FROM canary.metrics m
	JOIN canary_bench.agents a ON m.deployment_id IN (a.threshold_rollout, a.sequential_rollout)
	WHERE m.window_end <> :'empty_at'
), expected AS (
	-- The straightforward SQL returns no row for a version without rows.
	SELECT w.config, w.window_start, w.window_end, a.agent_id, v.version,
		   coalesce(e.requests, 0) AS requests,
		   coalesce(e.successes, 0) AS successes,
		   coalesce(e.errors, 0) AS errors, e.p95
	FROM (SELECT DISTINCT config, window_start, window_end FROM canary_bench.expected) w
	CROSS JOIN canary_bench.agents a
	CROSS JOIN (VALUES ('v1'), ('v2')) v (version)
	LEFT JOIN canary_bench.expected e USING (config, agent_id, version)
), compared AS (
	SELECT m.id,
		   (m.baseline_requests, m.baseline_successes, m.baseline_errors) =
		   (b.requests, b.successes, b.errors) AND
		   (m.canary_requests, m.canary_successes, m.canary_errors) =
		   (c.requests, c.successes, c.errors) AS counts_agree,
		   (m.baseline_latency_sampled OR m.baseline_p95 IS NOT DISTINCT FROM b.p95 OR
			abs(m.baseline_p95 - b.p95) <= 1e-9 * b.p95) AND
		   (m.canary_latency_sampled OR m.canary_p95 IS NOT DISTINCT FROM c.p95 OR
			abs(m.canary_p95 - c.p95) <= 1e-9 * c.p95) AS p95_agree,
		   m.baseline_latency_sampled OR m.canary_latency_sampled AS sampled
	FROM m
	JOIN expected b ON b.agent_id = m.agent_id AND b.version = 'v1'
		AND b.window_start = m.window_start AND b.window_end = m.window_end
	JOIN expected c ON c.agent_id = m.agent_id AND c.version = 'v2'
		AND c.config = b.config
)
SELECT 'agreement', (SELECT count(*) FROM m), count(DISTINCT id),
	   count(*) FILTER (WHERE NOT counts_agree),
	   count(*) FILTER (WHERE NOT p95_agree),
	   count(*) FILTER (WHERE sampled),
	   (SELECT count(*) FROM canary.metrics WHERE window_end = :'empty_at'
		AND baseline_requests + canary_requests <> 0)
FROM compared;
SELECT 'rows', config, sum(requests), sum(requests) FILTER (WHERE version = 'v2'),
	   round(sum(errors)::numeric / sum(requests), 4)
FROM canary_bench.expected GROUP BY config ORDER BY config;
SQL
IFS='|' read -r _ check_rows check_matched check_count_bad check_p95_bad check_sampled check_empty_bad \
	< <(grep '^agreement|' "$out/check.txt")
echo
echo "agreement: $check_rows canary.metrics rows, $check_matched matched a window of the" \
	"straightforward SQL, $check_count_bad comparisons with other counts, $check_p95_bad with" \
	"another exact p95; $check_empty_bad empty-window rows with requests"
if [ "$check_matched" != "$check_rows" ] || [ "$check_count_bad" != 0 ] ||
	[ "$check_p95_bad" != 0 ] || [ "$check_empty_bad" != 0 ]; then
	echo "canary_collect_metrics and the straightforward SQL disagree; see $out/check.txt" >&2
	exit 1
fi

# Print the median, minimum and maximum of the measured times of a query.
summarize() {
	awk -F'|' -v label="$1" '$1 > 0 && $2 "|" $3 == label { print $4 }' "$out/times.txt" |
		sort -g | awk '{ v[NR] = $1 }
		END {
			if (NR % 2) median = v[(NR + 1) / 2]
			else median = (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.1f %.1f %.1f\n", median, v[1], v[NR]
		}'
}

# Print a / b with the given number of decimals.
ratio() {
	awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.*f", d, a / b }'
}

# Print "yes" when value op target holds, with op ">=" or "<=", else "no".
target_met() {
	awk -v v="$1" -v t="$3" -v op="$2" \
		'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "yes" : "no" }'
}

for config in "${configs[@]}" "empty||"; do
	IFS='|' read -r name _ _ <<<"$config"
	for query in "${queries[@]}" empty; do
		if grep -q "^[0-9]*|$name|$query|" "$out/times.txt"; then
			read -r median min max < <(summarize "$name|$query")
			declare "median_${name}_$query=$median" "min_${name}_$query=$min" "max_${name}_$query=$max"
		fi
	done
done

# Write the report section.
command="bench/metrics/run.sh"
for variable in CANARY_BENCH_SHARED_BUFFERS CANARY_BENCH_ROUNDS CANARY_BENCH_ROWS; do
	if [ -n "${!variable:-}" ]; then
		command="$variable=${!variable} $command"
	fi
done
memory_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
misses=()

section=$out/section.md
{
	echo "<!-- begin metrics results: generated by bench/metrics/run.sh, replaced on every run -->"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- Machine: $(nproc) CPUs ($cpu_model), $memory_gib GiB RAM; load average (1, 5, 15 min) $load_start at the start of the rounds, $load_end at the end"
	echo "- PostgreSQL $server_version; canary built from commit $commit plus any uncommitted changes in the working tree"
	echo "- Command, from the repository root: \`$command\`"
	echo "- Server: default settings plus \`shared_preload_libraries = 'canary'\`, \`canary.worker_enabled = off\`, \`fsync = off\`, \`shared_buffers = '$shared_buffers'\`, \`jit = off\`, \`max_parallel_workers_per_gather = 0\`"
	echo "- Data: 100 agents; \`agent_execution_logs\` holds $rows rows over 24 hours and"
	echo "  \`agent_execution_logs_2x\` the same rows plus $rows over the 24 hours before, both made by"
	echo "  \`canary_create_execution_log_table()\`; 5% of the rows are the canary v2, 1% to 3% fail"
	echo "  per agent, latency is log-normal (bench/metrics/generate.sql). Generating and loading"
	echo "  all $((3 * rows)) rows with COPY, then VACUUM ANALYZE, took $load_seconds s."
	echo "- Timing: psql \`\\timing\` of one statement that evaluates all 100 agents, $rounds rounds"
	echo "  after one warm-up round, the order of configurations and queries rotating between rounds;"
	echo "  indexes prewarmed with pg_prewarm. Every window starts at the same time."
	echo
	echo "| Table rows | Window | Rows in window | Straightforward SQL | Bare sum (floor) | collect, threshold | collect, sequential |"
	echo "|---:|---|---:|---:|---:|---:|---:|"
	for config in "${configs[@]}"; do
		IFS='|' read -r name table window <<<"$config"
		window_rows=$(awk -F'|' -v c="$name" '$1 == "rows" && $2 == c { print $3 }' "$out/check.txt")
		table_rows=$rows
		[ "$name" = 10m_2x ] && table_rows=$((2 * rows))
		printf '| %s | %s | %s |' "$table_rows" "$window" "$window_rows"
		for query in "${queries[@]}"; do
			median=median_${name}_$query min=min_${name}_$query max=max_${name}_$query
			printf ' %s ms (%s-%s) |' "${!median}" "${!min}" "${!max}"
		done
		echo
	done
	echo
	echo "Cells: median (min-max) in ms. canary_collect_metrics for all 100 agents over a"
	echo "window with no rows, which shows its fixed cost per call: $median_empty_empty ms"
	echo "($min_empty_empty-$max_empty_empty)."
	echo
	echo "What each reads, per agent and version: the straightforward SQL scans the index"
	echo "range of the agent (both versions, the whole table's time range) and filters on"
	echo "\"timestamp\", because version, the index's second column, has no condition. The"
	echo "floor reads the window's index range. collect with analysis 'threshold' reads"
	echo "the window's index range once. collect with analysis 'sequential' reads the same"
	echo "range once too, for the window's figures and for the sequential tests since the"
	echo "attempt start, which is the window start here, and with no stored evidence (only"
	echo "canary_evaluate stores it) it judges every bucket of the window. All read the"
	echo "evaluation index only, the table's visibility map saying every page is"
	echo "all-visible: the straightforward SQL and the floor through index-only scans,"
	echo "canary_collect_metrics through the index access method directly, without a"
	echo "query (each collection of all agents scanned the index 200 times and the table"
	echo "never)."
	echo
	echo "| Window, table | naive / threshold | naive / sequential | threshold / floor | sequential / floor |"
	echo "|---|---:|---:|---:|---:|"
	for config in "${configs[@]}"; do
		IFS='|' read -r name table window <<<"$config"
		naive=median_${name}_naive floor=median_${name}_floor
		threshold=median_${name}_threshold sequential=median_${name}_sequential
		speed_threshold=$(ratio "${!naive}" "${!threshold}" 2)
		speed_sequential=$(ratio "${!naive}" "${!sequential}" 2)
		floor_threshold=$(ratio "${!threshold}" "${!floor}" 2)
		floor_sequential=$(ratio "${!sequential}" "${!floor}" 2)
		printf '| %s, %s | %s | %s | %s | %s |\n' "$window" "${table#public.}" \
			"$speed_threshold" "$speed_sequential" "$floor_threshold" "$floor_sequential"
		for mode in threshold sequential; do
			speed=speed_$mode
			to_floor=floor_$mode
			if [ "$(target_met "${!speed}" ">=" 3)" != yes ]; then
				misses+=("$window, ${table#public.}, $mode: ${!speed} times faster than the straightforward SQL, not 3")
			fi
			if [ "$(target_met "${!to_floor}" "<=" 2)" != yes ]; then
				misses+=("$window, ${table#public.}, $mode: ${!to_floor} times the floor, not at most 2")
			fi
		done
	done
	echo
	growth_threshold=$(ratio "$median_10m_2x_threshold" "$median_10m_threshold" 2)
	growth_sequential=$(ratio "$median_10m_2x_sequential" "$median_10m_sequential" 2)
	echo "Table twice as large, same 10-minute window: collect takes $growth_threshold times as"
	echo "long with threshold and $growth_sequential times with sequential analysis."
	for mode in threshold sequential; do
		growth=growth_$mode
		if [ "$(target_met "${!growth}" "<=" 1.2)" != yes ]; then
			misses+=("$mode: ${!growth} times as long in the table twice as large, not at most 1.2")
		fi
	done
	echo
	echo "Agreement: all $check_rows stored canary.metrics rows of measured windows had the"
	echo "straightforward SQL's request, success and error counts for both versions; p95 was"
	echo "compared where canary computed it exactly ($check_sampled rows used a sample)."
	echo
	if [ ${#misses[@]} -eq 0 ]; then
		echo "All targets met: at least 3 times faster than the straightforward SQL, at most"
		echo "2 times the floor, and at most 1.2 times as long in the table twice as large."
	else
		echo "Targets not met in this run (targets: at least 3 times faster than the"
		echo "straightforward SQL, at most 2 times the floor, at most 1.2 times as long in"
		echo "the table twice as large):"
		for miss in "${misses[@]}"; do
			echo "- $miss"
		done
	fi
	echo
	echo "Per round, ms, with the 1-minute load average after the round:"
	echo
	printf '| Round |'
	for config in "${configs[@]}"; do
		IFS='|' read -r name _ _ <<<"$config"
		for query in "${queries[@]}"; do
			printf ' %s %s |' "$name" "$query"
		done
	done
	echo ' empty | Load |'
	printf '|---|'
	for ((i = 0; i < ${#configs[@]} * ${#queries[@]} + 2; i++)); do
		printf -- '---:|'
	done
	echo
	for ((round = 1; round <= rounds; round++)); do
		printf '| %d |' "$round"
		for config in "${configs[@]}" "empty||"; do
			IFS='|' read -r name _ _ <<<"$config"
			for query in "${queries[@]}" empty; do
				awk -F'|' -v r="$round" -v c="$name" -v q="$query" \
					'$1 == r && $2 == c && $3 == q { printf " %.0f |", $4 }' "$out/times.txt"
			done
		done
		awk -F'|' -v r="$round" '$1 == r { printf " %s |\n", $2 }' "$out/load_after_round.txt"
	done
	echo
	echo "<!-- end metrics results -->"
} >"$section"

echo
cat "$section"

# Replace the generated block in the results file.
if [ -n "$results" ]; then
	canary_bench_write_section "$results" "Metrics collection" metrics "$section"
fi
