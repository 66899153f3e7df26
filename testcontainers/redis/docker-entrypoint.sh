#!/bin/sh
# Entrypoint of the contend stand-in for the official `redis` image; mirrors
# docker-library/redis' docker-entrypoint.sh, using setpriv instead of gosu.
set -eu

# "docker run IMG --maxclients 10" or "docker run IMG /x/redis.conf" mean
# "redis-server <args>", as in the official image.
if [ $# -gt 0 ] && { [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; }; then
	set -- redis-server "$@"
fi

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
	# Let the redis user (uid 999) write /data even when it is a fresh volume.
	chown -R 999:999 . || :
	HOME=/data
	export HOME
	exec setpriv --reuid=999 --regid=999 --clear-groups "$0" "$@"
fi

if [ "${1:-}" = redis-server ]; then
	shift
	if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
		# A config file decides for itself, like with the official image.
		set -- redis-server "$@"
	else
		# The official image compiles protected-mode off so the port published
		# by docker is usable without a config; Debian's binary defaults to on.
		# Put it first so a user's own --protected-mode still wins.
		set -- redis-server --protected-mode no "$@"
	fi
fi

# Same umask policy as the official image.
if [ "$(umask)" = 0022 ]; then
	umask 0077
fi

exec "$@"
