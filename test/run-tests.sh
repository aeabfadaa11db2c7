#!/usr/bin/env bash
#
# Build and install canary, then run every test suite against real
# PostgreSQL 15 servers: pg_regress and isolation tests against a throwaway
# cluster started here, TAP tests against the clusters they start themselves.
#
# Run as root on a fresh Debian 12 machine: missing packages are installed
# with apt-get, and the servers run as the unprivileged user "postgres"
# because PostgreSQL refuses to run as root.  Exits non-zero when any test
# fails.
#
# Environment:
#   CANARY_VECTORS_DIR  reference vectors (default: ../shared/vectors)
#   CANARY_TEST_PORT    port of the throwaway cluster (default: 55432)
#   CANARY_SUITES       suites to run (default: "regress isolation tap")
#   CANARY_REGRESS, CANARY_ISOLATION, CANARY_PROVE_TESTS
#                       run only these tests of a suite (default: all)
#
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib.sh"

canary_ensure_packages "${CANARY_BUILD_PACKAGES[@]}"
export PATH="$(canary_pg_bindir):$PATH"

vectors=${CANARY_VECTORS_DIR:-$repo/../shared/vectors}
if [ ! -f "$vectors/routing_buckets.csv" ]; then
	echo "reference vectors not found in $vectors; set CANARY_VECTORS_DIR" >&2
	exit 1
fi
export CANARY_VECTORS_DIR=$(cd "$vectors" && pwd)

port=${CANARY_TEST_PORT:-55432}
suites=${CANARY_SUITES:-regress isolation tap}

# Build and install as the invoking user (root on CI).
make -C "$repo" -s
make -C "$repo" -s install

# Work in a copy owned by the server user, so that the test programs can
# write their results next to the test files.
work=$(mktemp -d /tmp/canary-test.XXXXXX)
chmod 755 "$work"
rsync -a --exclude .git --exclude results --exclude tmp_check "$repo/" "$work/tree/"
chown -R "$(canary_server_user)" "$work"

cleanup() {
	if [ -f "$work/data/postmaster.pid" ]; then
		canary_as_server_user pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [ -n "${CANARY_KEEP_TEST_DIR:-}" ]; then
		echo "test files kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# Start the throwaway cluster for pg_regress and isolation tests.
canary_as_server_user initdb -D "$work/data" -A trust -U postgres --no-sync >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
shared_preload_libraries = 'canary'
max_connections = 40
fsync = off
CONF
canary_as_server_user pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null

failed=()
passed=()
run_suite() {
	local name=$1
	shift
	echo "=== $name ==="
	if canary_as_server_user env PGHOST="$work" PGPORT="$port" PGUSER=postgres \
		CANARY_VECTORS_DIR="$CANARY_VECTORS_DIR" \
		make -C "$work/tree" -s "$@"; then
		passed+=("$name")
	else
		failed+=("$name")
		find "$work/tree" -name regression.diffs -exec cat {} + 2>/dev/null | head -300 || true
		find "$work/tree/tmp_check" -name '*.log' -newer "$work/tree/Makefile" 2>/dev/null |
			head -20 | while read -r log; do echo "--- $log"; tail -40 "$log"; done || true
	fi
}

for suite in $suites; do
	case $suite in
		regress)
			args=(installcheck ISOLATION= TAP_TESTS=)
			[ -n "${CANARY_REGRESS:-}" ] && args+=("REGRESS=$CANARY_REGRESS")
			run_suite regress "${args[@]}" ;;
		isolation)
			args=(installcheck REGRESS= TAP_TESTS=)
			[ -n "${CANARY_ISOLATION:-}" ] && args+=("ISOLATION=$CANARY_ISOLATION")
			run_suite isolation "${args[@]}" ;;
		tap)
			args=(installcheck REGRESS= ISOLATION=)
			[ -n "${CANARY_PROVE_TESTS:-}" ] && args+=("PROVE_TESTS=$CANARY_PROVE_TESTS")
			run_suite tap "${args[@]}" ;;
		*) echo "unrecognized suite \"$suite\"" >&2; exit 2 ;;
	esac
done

echo
echo "suites: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
