# Shell helpers shared by the benchmark scripts.  Source this file after
# test/lib.sh; it defines functions only.

# Put a benchmark's generated block into the results file, keeping every
# other section and any notes written by hand under the same heading.
#   $1  results file (created with a title when missing)
#   $2  heading of the benchmark's section, without "## "
#   $3  marker word of the generated block: "<!-- begin WORD results ..."
#       through "<!-- end WORD results -->"
#   $4  file holding the new block, markers included
canary_bench_write_section() {
	local results=$1 heading=$2 word=$3 section=$4
	local merged

	[ -f "$results" ] || printf '# Benchmark results\n' >"$results"
	merged=$(mktemp)
	if grep -q "^<!-- begin $word results" "$results"; then
		awk -v section="$section" -v begin="^<!-- begin $word results" \
			-v end="^<!-- end $word results -->" '
			$0 ~ begin { while ((getline line < section) > 0) print line; skip = 1; next }
			$0 ~ end { skip = 0; next }
			!skip { print }' "$results" >"$merged"
	elif grep -qx "## $heading" "$results"; then
		awk -v section="$section" -v heading="## $heading" '
			{ print }
			$0 == heading { print ""; while ((getline line < section) > 0) print line }' "$results" >"$merged"
	else
		{ cat "$results"; printf '\n## %s\n\n' "$heading"; cat "$section"; } >"$merged"
	fi
	cat "$merged" >"$results"
	rm -f "$merged"
	echo "results written to $results"
}

# Create the directory of a throwaway cluster, owned by the server user,
# and print its path.
#   $1  name used in the directory name
canary_bench_make_workdir() {
	local work
	work=$(mktemp -d "/tmp/canary-bench-$1.XXXXXX")
	chmod 755 "$work"
	chown "$(canary_server_user)" "$work"
	echo "$work"
}

# Initialize and start a throwaway cluster in a directory made by
# canary_bench_make_workdir.  It listens only on a unix socket in that
# directory; settings read from standard input are appended to its
# configuration.  Prints the server log and returns 1 when it cannot start.
#   $1  directory   $2  port number of the socket
canary_bench_start_server() {
	local work=$1 port=$2

	canary_as_server_user initdb -D "$work/data" -A trust -U postgres \
		--encoding=UTF8 --locale=C --no-sync >/dev/null
	{
		printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\n" \
			"$port" "$work"
		cat
	} >>"$work/data/postgresql.conf"
	if ! canary_as_server_user pg_ctl -D "$work/data" -l "$work/server.log" -w start >/dev/null; then
		echo "could not start the benchmark server; its log follows" >&2
		cat "$work/server.log" >&2
		return 1
	fi
}

# Stop a throwaway cluster if it runs and remove its directory.  With a
# non-zero exit status, the server log is kept in the output directory.
#   $1  directory   $2  output directory   $3  exit status of the script
canary_bench_remove_server() {
	local work=$1 out=$2 status=${3:-0}

	if [ "$status" -ne 0 ] && [ -n "$out" ]; then
		cp "$work/server.log" "$out/server.log" 2>/dev/null || true
	fi
	if [ -f "$work/data/postmaster.pid" ]; then
		canary_as_server_user pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
