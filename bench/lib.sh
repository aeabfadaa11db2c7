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
