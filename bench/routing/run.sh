#!/usr/bin/env bash
#
# Routing benchmark.  Builds and installs canary, starts a throwaway
# PostgreSQL 15 cluster that preloads it, and measures:
#
# - throughput with pgbench (-M prepared -c 2 -j 2) of four workloads, run
#   interleaved in rounds: SELECT 1, a three-parameter statement that does no
#   work (the round-trip floor), canary_route, and a PL/pgSQL reference
#   router with the same bucket formula;
# - the in-backend cost of a canary_route cache hit: a loop of calls inside
#   one statement minus the same loop over the builtin textlen();
# - as a diagnostic, the backend CPU time per execution of canary_route in
#   several statement forms, to show where a gap to the floor comes from;
# - that canary_route and the PL/pgSQL router choose the same version for a
#   sample of requests.  The script fails when they disagree.
#
# Targets (reported, never a reason to fail): canary_route reaches at least
# 0.95 of the floor's throughput and 2 times the PL/pgSQL router's, and a
# cache hit costs at most 0.5 microseconds.
#
# Run as root on Debian 12; missing packages are installed with apt-get and
# the server runs as the unprivileged user "postgres".  The server listens
# only on a unix socket in a temporary directory, and is stopped and removed
# on exit, including on failure and Ctrl-C.  Raw outputs go to
# bench/out/routing; the summary replaces the generated part of the
# "## Routing" section of bench/RESULTS.md.
#
# Environment:
#   CANARY_BENCH_DURATION    seconds per workload per round (default: 10)
#   CANARY_BENCH_ROUNDS      rounds (default: 5)
#   CANARY_BENCH_LOOP_CALLS  calls per in-backend loop (default: 1000000)
#   CANARY_BENCH_LOOP_RUNS   runs of the in-backend loops (default: 5)
#   CANARY_BENCH_PORT        port number of the server's socket (default: 55450)
#   CANARY_BENCH_RESULTS     file that receives the section (default:
#                            bench/RESULTS.md; empty: write none)
#
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/test/lib.sh"
. "$repo/bench/lib.sh"

duration=${CANARY_BENCH_DURATION:-10}
rounds=${CANARY_BENCH_ROUNDS:-5}
loop_calls=${CANARY_BENCH_LOOP_CALLS:-1000000}
loop_runs=${CANARY_BENCH_LOOP_RUNS:-5}
port=${CANARY_BENCH_PORT:-55450}
results=${CANARY_BENCH_RESULTS-$repo/bench/RESULTS.md}
out=$repo/bench/out/routing
workloads=(select_1 params_floor canary_route plpgsql_route)

for setting in duration rounds loop_calls loop_runs port; do
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
work=$(canary_bench_make_workdir routing)

# Stop the server and remove its directory, whatever ended the script.
cleanup() {
	canary_bench_remove_server "$work" "" 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start the throwaway cluster: unix socket only, no TCP listener.
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

# Create the agents, rollouts and reference router.
psql_run -f "$here/setup.sql" >"$out/setup.log"

# Check agreement before measuring, so a wrong router fails fast.
psql_run -f "$here/check.sql" >"$out/check.log" || {
	cat "$out/check.log" >&2
	echo "correctness check failed" >&2
	exit 1
}
IFS='|' read -r _ check_keys check_disagreements check_share < <(grep '^agreement|' "$out/check.log")
echo "correctness: $check_keys requests, $check_disagreements disagreements," \
	"canary share $check_share"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Throughput: every round runs each workload once, and each round starts at
# the next workload, so that no workload always runs first.
for ((round = 1; round <= rounds; round++)); do
	for ((i = 0; i < ${#workloads[@]}; i++)); do
		workload=${workloads[(i + round - 1) % ${#workloads[@]}]}
		log=$out/pgbench_${workload}_round$round.log
		pgbench -n -M prepared -c 2 -j 2 -T "$duration" \
			-f "$here/workloads/$workload.sql" >"$log" 2>&1 || {
			cat "$log" >&2
			echo "pgbench failed on workload $workload" >&2
			exit 1
		}
		tps=$(awk '$1 == "tps" { print $3; exit }' "$log")
		failed=$(awk '/number of failed transactions/ { print $5; exit }' "$log")
		if [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then
			cat "$log" >&2
			echo "pgbench reported no throughput or failed transactions on workload $workload" >&2
			exit 1
		fi
		echo "$tps" >>"$out/tps_$workload.txt"
		printf 'round %d/%d  %-14s %12.0f tps\n' "$round" "$rounds" "$workload" "$tps"
	done
	cut -d' ' -f1 /proc/loadavg >>"$out/load_after_round.txt"
done

# In-backend cost of a cache hit.
psql_run -v runs="$loop_runs" -v calls="$loop_calls" \
	-f "$here/cache_hit.sql" >"$out/cache_hit.log"
if [ "$(awk -F'|' '$1 == "loop" && NF == 7' "$out/cache_hit.log" | wc -l)" -ne "$loop_runs" ]; then
	cat "$out/cache_hit.log" >&2
	echo "cache_hit.sql did not print a \"loop\" line of 7 fields for each of the $loop_runs runs" >&2
	exit 1
fi
IFS='|' read -r _ miss_scans < <(grep '^miss_scans|' "$out/cache_hit.log")
IFS='|' read -r _ loop_share < <(grep '^loop_canary_share|' "$out/cache_hit.log")
if [ "$miss_scans" -le 0 ]; then
	echo "a cache miss made no table scan: the scan counter cannot show cache hits" >&2
	exit 1
fi

# A hit reads no table.  One reload after an invalidation (for example from
# autovacuum analyzing canary.agents) reads each of the two tables once, so
# more than two scans in a loop means calls missed the cache.
max_loop_scans=$(awk -F'|' '$1 == "loop" { if ($7 > m) m = $7 } END { print m + 0 }' "$out/cache_hit.log")
if [ "$max_loop_scans" -gt 2 ]; then
	cat "$out/cache_hit.log" >&2
	echo "the cache-hit loop scanned the routing tables $max_loop_scans times: calls missed the cache" >&2
	exit 1
fi

# Backend CPU time by statement form.
form_calls=100000
psql_run -v runs="$loop_runs" -v calls="$form_calls" \
	-f "$here/call_forms.sql" >"$out/call_forms.log"
if [ "$(awk -F'|' '$1 == "form" && NF == 5' "$out/call_forms.log" | wc -l)" -ne 5 ]; then
	cat "$out/call_forms.log" >&2
	echo "call_forms.sql did not print a \"form\" line of 5 fields for each of the 5 forms" >&2
	exit 1
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
worker_count=$(psql_run -c "SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'canary worker'")

# The rollouts must still be running at 25%, or the numbers above mix setups.
running=$(psql_run -c "SELECT count(*) FROM canary.deployments
	WHERE status = 'running' AND current_percentage = 25")
if [ "$running" != 100 ]; then
	echo "only $running of 100 rollouts are still running at 25% after the benchmark" >&2
	exit 1
fi

# Print the median, minimum and maximum of the numbers in a file.
summarize() {
	sort -g "$1" | awk '{ v[NR] = $1 }
		END {
			if (NR % 2) median = v[(NR + 1) / 2]
			else median = (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.3f %.3f %.3f\n", median, v[1], v[NR]
		}'
}

for workload in "${workloads[@]}"; do
	read -r median min max < <(summarize "$out/tps_$workload.txt")
	declare "median_$workload=$median" "min_$workload=$min" "max_$workload=$max"
done

# Print the median, minimum and maximum per-call microseconds of an awk
# expression over the fields of the "loop" lines, and keep the per-run
# values in bench/out/routing/NAME.txt.  The fields are: label, run,
# baseline wall ms, route wall ms, baseline CPU ms, route CPU ms, scans.
loop_column() {
	awk -F'|' -v calls="$loop_calls" "\$1 == \"loop\" { print ($1) * 1000 / calls }" \
		"$out/cache_hit.log" >"$out/$2.txt"
	summarize "$out/$2.txt"
}
read -r hit_us hit_min hit_max < <(loop_column '$4 - $3' hit_wall_us)
read -r route_loop_us _ _ < <(loop_column '$4' route_wall_us)
read -r baseline_loop_us _ _ < <(loop_column '$3' baseline_wall_us)
if grep -q '^loop|.*||' "$out/cache_hit.log"; then
	echo "/proc/self/schedstat is not readable by the server: no CPU times" >&2
	hit_cpu_us=NaN hit_cpu_min=NaN hit_cpu_max=NaN met_hit_cpu=unknown
else
	read -r hit_cpu_us hit_cpu_min hit_cpu_max < <(loop_column '$6 - $5' hit_cpu_us)
fi

ratio_floor=$(awk -v a="$median_canary_route" -v b="$median_params_floor" 'BEGIN { printf "%.6f", a / b }')
ratio_plpgsql=$(awk -v a="$median_canary_route" -v b="$median_plpgsql_route" 'BEGIN { printf "%.6f", a / b }')

# Print "yes" when value op target holds, with op ">=" or "<=", else "no".
target_met() {
	awk -v v="$1" -v t="$3" -v op="$2" \
		'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "yes" : "no" }'
}
met_floor=$(target_met "$ratio_floor" ">=" 0.95)
met_plpgsql=$(target_met "$ratio_plpgsql" ">=" 2)
met_hit=$(target_met "$hit_us" "<=" 0.5)
[ "$hit_cpu_us" = NaN ] || met_hit_cpu=$(target_met "$hit_cpu_us" "<=" 0.5)

# Write the report section.
command="bench/routing/run.sh"
for variable in CANARY_BENCH_LOOP_RUNS CANARY_BENCH_LOOP_CALLS CANARY_BENCH_ROUNDS CANARY_BENCH_DURATION; do
	if [ -n "${!variable:-}" ]; then
		command="$variable=${!variable} $command"
	fi
done
memory_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)

section=$out/section.md
{
	echo "<!-- begin routing results: generated by bench/routing/run.sh, replaced on every run -->"
	echo
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- Machine: $(nproc) CPUs ($cpu_model), $memory_gib GiB RAM; load average (1, 5, 15 min) $load_start at the start, $load_end at the end"
	echo "- PostgreSQL $server_version; canary built from commit $commit plus any uncommitted changes in the working tree"
	echo "- Command, from the repository root: \`$command\`"
	echo "- Server: default settings plus \`shared_preload_libraries = 'canary'\`, \`canary.worker_enabled = off\`, \`fsync = off\`, \`max_connections = 20\` and no TCP listener; canary background workers running at the end: $worker_count"
	echo "- Throughput: pgbench -M prepared -c 2 -j 2 over a unix socket, $rounds rounds of $duration s per workload, interleaved; server and pgbench share the machine"
	echo "- Data: 100 agents, each with a rollout running at 25%; random agent, request id and user id per transaction"
	echo
	echo "| Workload | Median TPS | Min TPS | Max TPS |"
	echo "|---|---:|---:|---:|"
	for workload in "${workloads[@]}"; do
		case $workload in
			select_1) label='`SELECT 1`' ;;
			params_floor) label='params-only floor `SELECT $1::text, $2::text, $3::text`' ;;
			canary_route) label='`SELECT * FROM canary_route($1, $2, $3)`' ;;
			plpgsql_route) label='PL/pgSQL router `canary_bench.plpgsql_route($1, $2, $3)`' ;;
		esac
		median=median_$workload min=min_$workload max=max_$workload
		printf '| %s | %.0f | %.0f | %.0f |\n' "$label" "${!median}" "${!min}" "${!max}"
	done
	echo
	echo "| Measure | Value | Target | Met |"
	echo "|---|---:|---:|---|"
	printf '| canary_route / params-only floor (median TPS) | %.3f | >= 0.95 | %s |\n' "$ratio_floor" "$met_floor"
	printf '| canary_route / PL/pgSQL router (median TPS) | %.2f | >= 2 | %s |\n' "$ratio_plpgsql" "$met_plpgsql"
	printf '| cache-hit cost per call, backend CPU time, median of %d runs (min %.3f, max %.3f) | %.3f us | <= 0.5 us | %s |\n' \
		"$loop_runs" "$hit_cpu_min" "$hit_cpu_max" "$hit_cpu_us" "$met_hit_cpu"
	printf '| cache-hit cost per call, wall clock, median of %d runs (min %.3f, max %.3f) | %.3f us | <= 0.5 us | %s |\n' \
		"$loop_runs" "$hit_min" "$hit_max" "$hit_us" "$met_hit"
	echo
	echo "Cache-hit cost: one statement computes \`count(canary_route('1', 'r', g::text))\`"
	echo "over \`generate_series(1, $loop_calls) g\`; the baseline is the same statement over the"
	echo "builtin \`textlen(g::text)\`. The cost is the difference divided by $loop_calls. The"
	echo "baseline keeps the loop, the integer-to-text conversion of the key and one call"
	echo "of an internal function, so the difference is what canary_route adds. JIT and"
	echo "parallel query are off. CPU time is the backend's time on a CPU from"
	echo "/proc/self/schedstat, which leaves out time the backend waited for a CPU while"
	echo "other processes ran; wall clock includes it."
	printf 'Median wall-clock loop time per call: canary_route %.3f us, baseline %.3f us.\n' \
		"$route_loop_us" "$baseline_loop_us"
	echo "Agent \"1\" has a running rollout, so every call hashes (canary share of the"
	echo "loop's keys: $loop_share). The cache is filled before timing. The loops made at"
	echo "most $max_loop_scans scans of canary.agents and canary.deployments, while a single miss makes $miss_scans."
	echo
	echo "Backend CPU time per execution by statement form (diagnostic): each form runs"
	echo "$form_calls times in a PL/pgSQL loop, with arguments computed from the loop counter."
	echo "The loop's static statements use cached plans as pgbench -M prepared does. Values"
	echo "are the median (min, max) of $loop_runs runs. The loop adds its own per-statement"
	echo "cost to every form, so only the differences mean something."
	echo
	echo "| Statement form | CPU per execution | Minus floor |"
	echo "|---|---:|---:|"
	awk -F'|' '$1 == "form" {
		if ($2 == "params_floor") {
			floor = $3
			label = "params-only floor `SELECT $1::text, $2::text, $3::text`"
		} else if ($2 == "builtin_from")
			label = "builtin function in FROM `SELECT * FROM replace($1, $2, $3)`"
		else if ($2 == "route_select_list")
			label = "`SELECT canary_route($1, $2, $3)` (one record column)"
		else if ($2 == "route_from")
			label = "`SELECT * FROM canary_route($1, $2, $3)` (the form of the throughput workload)"
		else
			label = "the same C function declared `RETURNS canary_bench.route_result` (a named composite type) instead of OUT parameters, in FROM"
		printf "| %s | %.3f us (%.3f, %.3f) | %.3f us |\n", label, $3, $4, $5, $3 - floor
	}' "$out/call_forms.log"
	echo
	echo "Correctness: canary_route and the PL/pgSQL router chose the same version for"
	echo "all $check_keys sampled requests (101 agents, 100 requests each, including empty,"
	echo "missing and non-ASCII user ids). The canary share was $check_share for the agents with a rollout."
	if [ "$met_floor" != yes ] || [ "$met_plpgsql" != yes ] ||
		[ "$met_hit_cpu" != yes ] || [ "$met_hit" != yes ]; then
		echo
		echo "Targets not met in this run:"
		if [ "$met_floor" != yes ]; then
			printf -- '- canary_route reached %.3f of the params-only floor, below 0.95.\n' "$ratio_floor"
		fi
		if [ "$met_plpgsql" != yes ]; then
			printf -- '- canary_route reached %.2f times the PL/pgSQL router, below 2.\n' "$ratio_plpgsql"
		fi
		if [ "$met_hit_cpu" != yes ]; then
			printf -- '- a cache hit cost %s us of backend CPU time, above 0.5 us or not measured.\n' "$hit_cpu_us"
		fi
		if [ "$met_hit" != yes ]; then
			printf -- '- a cache hit cost %.3f us of wall-clock time, above 0.5 us.\n' "$hit_us"
		fi
	fi
	echo
	echo "TPS per round, with the 1-minute load average after each round:"
	echo
	printf '| Round |'
	printf ' %s |' "${workloads[@]}"
	echo ' Load |'
	printf '|---|'
	printf -- '---:|%.0s' "${workloads[@]}"
	printf '%s\n' '---:|'
	for ((round = 1; round <= rounds; round++)); do
		printf '| %d |' "$round"
		for workload in "${workloads[@]}"; do
			printf ' %.0f |' "$(sed -n "${round}p" "$out/tps_$workload.txt")"
		done
		echo " $(sed -n "${round}p" "$out/load_after_round.txt") |"
	done
	echo
	echo "<!-- end routing results -->"
} >"$section"

echo
cat "$section"

# Replace the generated block in the results file.
if [ -n "$results" ]; then
	canary_bench_write_section "$results" "Routing" routing "$section"
fi
