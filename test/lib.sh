# Shell helpers shared by the test runner, the demo and the benchmarks.
# Source this file; it defines functions only.

# Install the Debian packages named as arguments that are not installed yet.
canary_ensure_packages() {
	local missing=()
	local package
	for package in "$@"; do
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$package")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]}; run as root or install them first" >&2
		return 1
	fi
	echo "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Packages needed to build, install and test the extension.
CANARY_BUILD_PACKAGES=(make gcc postgresql-15 postgresql-server-dev-15 libssl-dev
	libipc-run-perl postgresql-15-cron rsync)

# The unprivileged user that runs PostgreSQL when the caller is root.
canary_server_user() {
	if [ "$(id -u)" -eq 0 ]; then
		echo postgres
	else
		id -un
	fi
}

# Run a command as the server user, keeping the environment that matters.
canary_as_server_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$(canary_server_user)" -- env PATH="$PATH" "$@"
	else
		"$@"
	fi
}

# PostgreSQL's binary directory, from pg_config.
canary_pg_bindir() {
	pg_config --bindir
}
