#!/bin/sh
# Entrypoint of the contend stand-in for the official `postgres` image.
#
# It follows the interface of docker-library/postgres' docker-entrypoint.sh
# (POSTGRES_PASSWORD[_FILE], POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS,
# POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD, PGDATA,
# /docker-entrypoint-initdb.d) but is plain POSIX sh, because the image only
# carries dash, a few coreutils and setpriv (instead of bash and gosu).
set -eu

err() { printf '%s\n' "$*" >&2; }

# VAR_FILE support (docker secrets), as in the official image.
file_env() {
	_var=$1 _def=${2:-}
	eval "_val=\${$_var:-} _fval=\${${_var}_FILE:-}"
	if [ -n "$_val" ] && [ -n "$_fval" ]; then
		err "error: both $_var and ${_var}_FILE are set (but are exclusive)"
		exit 1
	fi
	if [ -n "$_fval" ]; then
		_val=$(cat "$_fval")
	elif [ -z "$_val" ]; then
		_val=$_def
	fi
	eval "$_var=\$_val"
	export "$_var"
	unset "${_var}_FILE"
}

# Quote arguments for `pg_ctl -o`, which hands them to /bin/sh (dash has no printf %q).
shquote() {
	_out=
	for _a; do
		_q=
		while :; do
			case $_a in
			*\'*) _q="$_q${_a%%\'*}'\\''"; _a=${_a#*\'} ;;
			*) _q="$_q$_a"; break ;;
			esac
		done
		_out="$_out '$_q'"
	done
	printf '%s' "$_out"
}

# Asking postgres for help/version must not initialise anything.
wants_help() {
	for _a; do
		case $_a in
		'-?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	PGDATA=${PGDATA:-/var/lib/postgresql/data}
	export PGDATA
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then DATABASE_ALREADY_EXISTS=true; fi
}

# Failures are tolerated when not root: the directories may be pre-made volumes.
create_dirs() {
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$(id -u)" = 0 ]; then chown -R 999:999 "$POSTGRES_INITDB_WALDIR"; fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi
	if [ "$(id -u)" = 0 ]; then
		chown -R 999:999 "$PGDATA" /var/run/postgresql
	fi
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ trust != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.

			       See PostgreSQL documentation about "trust":
			       https://www.postgresql.org/docs/current/auth-trust.html
		EOE
		exit 1
	fi
	if [ trust = "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOWARN'
			********************************************************************************
			WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow
			         anyone with access to the Postgres port to access your database without
			         a password, even if POSTGRES_PASSWORD is set.
			         See https://www.postgresql.org/docs/current/auth-trust.html
			********************************************************************************
		EOWARN
	fi
}

init_database_dir() {
	set --
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then set -- --waldir "$POSTGRES_INITDB_WALDIR"; fi
	# The password goes through a pipe so it never lands on disk; initdb wants
	# a line even for an empty password (docker-library/postgres#1025).
	printf '%s\n' "$POSTGRES_PASSWORD" |
		eval 'initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin '"$POSTGRES_INITDB_ARGS"' "$@"'
}

# Like the official image: local connections stay "trust" (initdb's default),
# everything else uses the configured password_encryption unless overridden.
setup_hba() {
	if [ "${1:-}" = postgres ]; then shift; fi
	_auth=$(postgres -C password_encryption "$@" 2>/dev/null) || _auth=scram-sha-256
	: "${POSTGRES_HOST_AUTH_METHOD:=$_auth}"
	{
		printf '\n'
		if [ trust = "$POSTGRES_HOST_AUTH_METHOD" ]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

# $1 is the database ("" = psql's default), the rest goes to psql.
process_sql() {
	_db=$1
	shift
	if [ -n "$_db" ]; then set -- --dbname "$_db" "$@"; fi
	PGHOST= PGHOSTADDR= psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

# Socket-only server for the setup steps. pg_ctl sends its log to stdout, which
# is where the first "ready to accept connections" line is expected (the
# testcontainers postgres module waits for it on stdout *and* stderr).
temp_server_start() {
	if [ "${1:-}" = postgres ]; then shift; fi
	set -- "$@" -c listen_addresses= -p "${PGPORT:-5432}"
	NOTIFY_SOCKET= PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(shquote "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

setup_db() {
	_exists=$(process_sql postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)
	if [ -z "$_exists" ]; then
		process_sql postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		printf '\n'
	fi
}

# No gzip/xz/zstd in the image, so only plain .sql and .sh files are supported.
process_init_files() {
	printf '\n'
	for _f; do
		[ -e "$_f" ] || continue
		case $_f in
		*.sh)
			if [ -x "$_f" ]; then
				printf '%s: running %s\n' "$0" "$_f"
				"$_f"
			else
				printf '%s: sourcing %s\n' "$0" "$_f"
				. "$_f"
			fi
			;;
		*.sql)
			printf '%s: running %s\n' "$0" "$_f"
			process_sql "$POSTGRES_DB" -f "$_f"
			printf '\n'
			;;
		*) printf '%s: ignoring %s (unsupported by the stand-in image)\n' "$0" "$_f" ;;
		esac
	done
}

# "docker run IMG -c foo=bar" means "postgres -c foo=bar", as in the official image.
if [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi

if [ "${1:-}" = postgres ] && ! wants_help "$@"; then
	setup_env
	create_dirs
	if [ "$(id -u)" = 0 ]; then
		# Drop to the postgres user (uid 999) the way gosu would, then start over.
		HOME=/var/lib/postgresql
		export HOME
		exec setpriv --reuid=999 --regid=999 --clear-groups "$0" "$@"
	fi

	if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
		verify_minimum_env
		init_database_dir
		setup_hba "$@"
		PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
		export PGPASSWORD
		temp_server_start "$@"
		setup_db
		process_init_files /docker-entrypoint-initdb.d/*
		temp_server_stop
		unset PGPASSWORD
		printf '\nPostgreSQL init process complete; ready for start up.\n\n'
	else
		printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
	fi
fi

exec "$@"
