#!/usr/bin/env bash
# Prepare this machine for contend's tests and benches. Idempotent, and safe to
# run concurrently (runs are serialised with a lock):
#   - makes sure redis-server is on PATH (installs Debian's package when root),
#   - makes sure pgbouncer is installed (Debian's package, binary in /usr/sbin;
#     the pooler tests start their own, so the packaged service is stopped),
#   - builds the local stand-in docker images (testcontainers/build-images.sh)
#     when a docker daemon answers, since no image registry may be reachable,
#   - with --with-chromium, makes sure chromium-headless-shell is on PATH (the
#     report test renders index.html in it).
# Prints a one-line summary; exits non-zero with a message on failure.
set -euo pipefail

with_chromium=0
for arg in "$@"; do
	case "$arg" in
	--with-chromium) with_chromium=1 ;;
	*) echo "setup.sh: error: unknown argument $arg (known: --with-chromium)" >&2; exit 2 ;;
	esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
lock=/tmp/contend-setup.lock

die() { echo "setup.sh: error: $*" >&2; exit 1; }

command -v flock >/dev/null 2>&1 || die "flock not found (install util-linux)"
# Read-only fallback: the lock file may belong to another user, and flock
# works on any open descriptor.
{ exec 9>>"$lock"; } 2>/dev/null || exec 9<"$lock"
chmod 0666 "$lock" 2>/dev/null || true
if ! flock -n 9; then
	echo "setup.sh: waiting for another setup.sh run to finish..." >&2
	flock 9
fi

summary=()
log=$(mktemp /tmp/contend-setup.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
	rm -f "$log"
	if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

redis_version() { redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 "$1" >>"$log" 2>&1
}

# The package may start a system-wide redis on 127.0.0.1:6379 (init script or
# systemd unit). Tests start their own servers, so don't leave that one around.
stop_packaged_redis() {
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl stop redis-server >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/redis-server ] && command -v service >/dev/null 2>&1; then
		service redis-server stop >/dev/null 2>&1 || true
	fi
	# Only the packaged daemon (its pidfile), never redis servers started by tests.
	local pidfile=/run/redis/redis-server.pid pid i
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server; then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		summary+=("stopped the packaged redis-server daemon (pid $pid)")
	fi
}

# install_package PACKAGE COMMAND: installs Debian's PACKAGE so that COMMAND is on PATH.
install_package() {
	local package=$1 command=$2
	[ "$(id -u)" = 0 ] ||
		die "$command is not installed and we are not root; run: sudo apt-get install -y $package (or rerun this script as root)"
	command -v apt-get >/dev/null 2>&1 ||
		die "$command is not installed and apt-get is not available; install $package by hand"
	# Standard Debian hook that tells maintainer scripts not to start services.
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		added_policy=1
	fi
	# Refresh package lists only when they are missing (fresh containers) or
	# the install fails on stale ones; keeps repeated runs fast.
	local have_lists=0
	if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then have_lists=1; fi
	if [ $have_lists = 0 ] || ! apt_install "$package"; then
		if ! apt-get update -qq >>"$log" 2>&1; then
			tail -n 20 "$log" >&2
			die "apt-get update failed (is a Debian mirror reachable?)"
		fi
		if ! apt_install "$package"; then
			tail -n 20 "$log" >&2
			die "apt-get install $package failed"
		fi
	fi
	if [ "$added_policy" = 1 ]; then
		rm -f "$policy"
		added_policy=0
	fi
	hash -r
	command -v "$command" >/dev/null 2>&1 || die "$command still not on PATH after installing $package"
}

if command -v redis-server >/dev/null 2>&1; then
	summary+=("redis-server $(redis_version) present")
else
	install_package redis-server redis-server
	stop_packaged_redis
	summary+=("installed redis-server $(redis_version)")
fi

# Like redis: the package's own pgbouncer (127.0.0.1:6432) is not ours to keep.
stop_packaged_pgbouncer() {
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl stop pgbouncer >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/pgbouncer ] && command -v service >/dev/null 2>&1; then
		service pgbouncer stop >/dev/null 2>&1 || true
	fi
	local pidfile=/run/postgresql/pgbouncer.pid pid i
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q pgbouncer; then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		summary+=("stopped the packaged pgbouncer daemon (pid $pid)")
	fi
}

pgbouncer_version() { "$1" --version | sed -n 's/^[Pp][Gg][Bb]ouncer \([^ ]*\).*/\1/p' | head -n 1; }

# /usr/sbin is not on every user's PATH; contend looks there too.
pgbouncer_bin=$(command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true)
if [ -n "$pgbouncer_bin" ]; then
	summary+=("pgbouncer $(pgbouncer_version "$pgbouncer_bin") present")
else
	PATH="$PATH:/usr/sbin" install_package pgbouncer pgbouncer
	stop_packaged_pgbouncer
	summary+=("installed pgbouncer $(pgbouncer_version /usr/sbin/pgbouncer)")
fi

if [ "$with_chromium" = 1 ]; then
	if command -v chromium-headless-shell >/dev/null 2>&1; then
		summary+=("chromium-headless-shell present")
	else
		install_package chromium-headless-shell chromium-headless-shell
		summary+=("installed chromium-headless-shell")
	fi
fi

# The docker backend is optional: without a daemon there is nothing to build.
if command -v docker >/dev/null 2>&1 && timeout 30 docker info >/dev/null 2>&1; then
	out=$("$repo/testcontainers/build-images.sh") ||
		die "testcontainers/build-images.sh failed (see message above)"
	# "contend-standin/postgres:15: up to date (PostgreSQL 15.18)" -> "contend-standin/postgres:15 up to date"
	images=$(sed 's/: \([^(]*[^ (]\) *(.*$/ \1/' <<<"$out" | paste -sd, - | sed 's/,/, /g')
	summary+=("docker images: $images")
else
	summary+=("docker not reachable, stand-in images skipped")
fi

joined=$(printf '%s; ' "${summary[@]}")
echo "setup.sh: ${joined%; }"
