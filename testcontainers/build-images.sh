#!/usr/bin/env bash
# Build local stand-ins for the official `postgres` and `redis` docker images
# from this machine's own binaries, for hosts where no image registry is
# reachable (see README.md next to this script).
#
#   build-images.sh [--force] [postgres] [redis]     (default: both)
#
# Images: contend-standin/postgres:<major>, contend-standin/redis:<major>.
# A build is skipped when the image's contend.standin.fingerprint label
# matches what would be built now; --force rebuilds anyway.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"

die() { echo "build-images.sh: error: $*" >&2; exit 1; }

force=0
want_pg=0
want_redis=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	postgres) want_pg=1 ;;
	redis) want_redis=1 ;;
	-h | --help) sed -n '2,10p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$arg' (usage: build-images.sh [--force] [postgres] [redis])" ;;
	esac
done
if [ $want_pg = 0 ] && [ $want_redis = 0 ]; then want_pg=1 want_redis=1; fi

command -v docker >/dev/null 2>&1 || die "docker CLI not found on PATH"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "docker daemon not reachable (docker version failed; is dockerd running / DOCKER_HOST right?)"

# Tools copied into both images: a shell for the entrypoints, the few commands
# they call, and setpriv to drop root the way gosu does in the official images.
base_tools=(/bin/dash id chown chmod mkdir cat rm ls env setpriv)

if [ $want_pg = 1 ]; then
	# Newest installed server, Debian layout (/usr/lib/postgresql/<major>/bin).
	pg_bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
	[ -n "$pg_bindir" ] && [ -x "$pg_bindir/postgres" ] && [ -x "$pg_bindir/initdb" ] ||
		die "PostgreSQL server binaries not found (expected /usr/lib/postgresql/<major>/bin/postgres; set PG_BINDIR)"
	pg_version_line=$("$pg_bindir/postgres" --version) # postgres (PostgreSQL) 15.18 (Debian ...)
	pg_version=$(awk '{print $3}' <<<"$pg_version_line")
	pg_major=${pg_version%%.*}
	pg_libdir=$(cd "$pg_bindir/../lib" && pwd)
	pg_sharedir=/usr/share/postgresql/$pg_major
	[ -f "$pg_sharedir/postgres.bki" ] || die "PostgreSQL share files not found in $pg_sharedir"
	[ -d /usr/share/zoneinfo ] || die "/usr/share/zoneinfo missing (Debian's postgres uses the system tzdata; install tzdata)"
fi
if [ $want_redis = 1 ]; then
	redis_server=$(command -v redis-server || true)
	[ -n "$redis_server" ] || die "redis-server not found on PATH (apt-get install redis-server, or run scripts/setup.sh)"
	redis_version_line=$("$redis_server" --version) # Redis server v=7.0.15 sha=... malloc=...
	redis_version=$(sed -n 's/.* v=\([^ ]*\).*/\1/p' <<<"$redis_version_line")
	[ -n "$redis_version" ] || die "cannot parse redis-server --version: $redis_version_line"
	redis_major=${redis_version%%.*}
fi
for t in "${base_tools[@]}"; do
	command -v "$t" >/dev/null 2>&1 || die "'$t' not found on PATH (needed inside the images)"
done

# Concurrent callers (e.g. parallel setup runs) would only build the same thing twice.
exec 8>/tmp/contend-standin-build.lock
flock 8

work=$(mktemp -d /tmp/contend-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What an image is made of; a change here means a rebuild.
fingerprint() { # fingerprint MAIN_BINARY VERSION_LINE ENTRYPOINT
	{
		printf '%s\n' "$2"
		sha256sum "$1" "$3" "$self" | awk '{print $1}'
	} | sha256sum | awk '{print $1}'
}

current_fingerprint() {
	docker image inspect --format '{{ index .Config.Labels "contend.standin.fingerprint" }}' "$1" 2>/dev/null || true
}

# ---- root filesystem assembly -------------------------------------------------

declare -A copied

# Canonical directory of PATH on this host, so libraries land where the
# loader's default search path finds them (/lib may be a symlink to usr/lib).
canon() { printf '%s/%s\n' "$(readlink -m "$(dirname "$1")")" "$(basename "$1")"; }

# Copy SRC into the rootfs at DEST (default: same path), as a real file:
# sonames such as libfoo.so.1 are usually symlinks on the host.
put() {
	local src=$1 dest
	dest=$(canon "${2:-$1}")
	[ -z "${copied[$dest]:-}" ] || return 0
	copied[$dest]=1
	mkdir -p "$root$(dirname "$dest")"
	cp -L --preserve=mode "$src" "$root$dest"
}

# Copy binaries/shared objects plus every library ldd resolves for them, and
# the dynamic loader.
put_with_libs() {
	local f libs
	for f in "$@"; do
		put "$f"
		libs=$(ldd "$f" 2>&1) || continue # static or not ELF: nothing to add
		if grep -q 'not found' <<<"$libs"; then
			die "ldd $f: $(grep 'not found' <<<"$libs" | head -n 1 | xargs)"
		fi
		while read -r lib; do
			put "$lib"
		done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$libs")
	done
}

new_root() {
	root=$1
	copied=()
	mkdir -p "$root"/{etc,tmp,usr/bin,usr/local/bin}
	chmod 1777 "$root/tmp"
	# Mirror a merged-/usr host (/bin -> usr/bin, /lib64 -> usr/lib64, ...).
	local d
	for d in bin sbin lib lib32 lib64 libx32; do
		if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
	done
	local t
	for t in "${base_tools[@]}"; do put_with_libs "$(command -v "$t")"; done
	# The entrypoints and pg_ctl/initdb (popen) need /bin/sh.
	put "$(command -v dash)" /bin/sh
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# Pack ROOT (owned by root) into CTX/rootfs.tar, then append the given paths
# of ROOT999 (and their contents, but not their parents) owned by uid/gid 999.
# ADD keeps tar ownership, and a FROM scratch build has no chown to RUN.
pack() { # pack CTX ROOT ROOT999 PATH...
	local ctx=$1 r=$2 r999=$3
	shift 3
	tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$ctx/rootfs.tar" .
	tar --numeric-owner --owner=999 --group=999 -C "$r999" -rf "$ctx/rootfs.tar" "$@"
}

build() { # build TAG CTX
	local log="$work/build-$(tr -c 'a-z0-9' _ <<<"$1").log" old new
	old=$(docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)
	# The classic builder needs no buildx plugin (none installed here) and
	# loads the result straight into the local image store.
	if ! DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build --no-cache -t "$1" "$2" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "docker build of $1 failed"
	fi
	# Don't let rebuilds pile up dangling images; one still used by a
	# container stays (docker refuses), which is fine.
	new=$(docker image inspect --format '{{.Id}}' "$1")
	if [ -n "$old" ] && [ "$old" != "$new" ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
}

# ---- postgres -----------------------------------------------------------------

build_postgres() {
	local tag=contend-standin/postgres:$pg_major
	local entry="$here/postgres/docker-entrypoint.sh"
	local fp
	fp=$(fingerprint "$pg_bindir/postgres" "$pg_version_line" "$entry")
	if [ $force = 0 ] && [ "$(current_fingerprint "$tag")" = "$fp" ]; then
		echo "$tag: up to date (PostgreSQL $pg_version)"
		return
	fi

	local ctx="$work/postgres" r="$work/postgres/root" r999="$work/postgres/root999"
	mkdir -p "$ctx" "$r999"
	new_root "$r"
	put_with_libs "$pg_bindir"/{postgres,initdb,pg_ctl,pg_isready,psql}
	# initdb runs `locale -a` to fill pg_collation.
	if command -v locale >/dev/null 2>&1; then put_with_libs "$(command -v locale)"; fi
	# The JIT provider is left out: it drags in libLLVM (~110 MB) and the
	# bitcode tree, and postgres quietly runs without JIT when it is absent.
	local so
	for so in "$pg_libdir"/*.so; do
		case $(basename "$so") in llvmjit*) continue ;; esac
		put_with_libs "$so"
	done
	mkdir -p "$r$pg_sharedir"
	tar -C "$pg_sharedir" --exclude=./man -cf - . | tar -C "$r$pg_sharedir" -xf -
	# Listen on all interfaces by default, exactly as the official image does.
	sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$r$pg_sharedir/postgresql.conf.sample"
	grep -qF "listen_addresses = '*'" "$r$pg_sharedir/postgresql.conf.sample" ||
		die "could not set listen_addresses in postgresql.conf.sample"
	# Debian's postgres uses the system tzdata; the right/ (leap second) zones are unused.
	mkdir -p "$r/usr/share"
	tar -C /usr/share --exclude=zoneinfo/right -cf - zoneinfo | tar -C "$r/usr/share" -xf -
	ln -sf /usr/share/zoneinfo/Etc/UTC "$r/etc/localtime"
	# glibc's C.UTF-8 lives in files, not in libc; it gives initdb UTF8 + C.UTF-8.
	if [ -d /usr/lib/locale/C.utf8 ]; then
		mkdir -p "$r/usr/lib/locale"
		cp -a /usr/lib/locale/C.utf8 "$r/usr/lib/locale/"
		lang=C.UTF-8
	else
		lang=C
	fi
	cat >"$r/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
	EOF
	printf 'root:x:0:\npostgres:x:999:\nnogroup:x:65534:\n' >"$r/etc/group"
	mkdir -p "$r/docker-entrypoint-initdb.d" "$r/var/lib" "$r/var/run" "$r/root"
	cp "$entry" "$r/usr/local/bin/docker-entrypoint.sh"
	chmod 755 "$r/usr/local/bin/docker-entrypoint.sh"
	# Same modes as the official image.
	mkdir -p "$r999/var/lib/postgresql/data" "$r999/var/run/postgresql"
	chmod 1777 "$r999/var/lib/postgresql/data"
	chmod 3777 "$r999/var/run/postgresql"
	pack "$ctx" "$r" "$r999" var/lib/postgresql var/run/postgresql

	cat >"$ctx/Dockerfile" <<-EOF
		FROM scratch
		ADD rootfs.tar /
		ENV PATH=$pg_bindir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
		    LANG=$lang \\
		    PG_MAJOR=$pg_major \\
		    PG_VERSION=$pg_version \\
		    PGDATA=/var/lib/postgresql/data
		LABEL org.opencontainers.image.title="contend stand-in for postgres" \\
		      org.opencontainers.image.version="$pg_version" \\
		      contend.standin="true" \\
		      contend.standin.version="$pg_version" \\
		      contend.standin.fingerprint="$fp"
		VOLUME /var/lib/postgresql/data
		ENTRYPOINT ["docker-entrypoint.sh"]
		STOPSIGNAL SIGINT
		EXPOSE 5432
		CMD ["postgres"]
	EOF
	build "$tag" "$ctx"
	echo "$tag: built (PostgreSQL $pg_version, $(image_size "$tag"))"
}

# ---- redis --------------------------------------------------------------------

build_redis() {
	local tag=contend-standin/redis:$redis_major
	local entry="$here/redis/docker-entrypoint.sh"
	local fp
	fp=$(fingerprint "$redis_server" "$redis_version_line" "$entry")
	if [ $force = 0 ] && [ "$(current_fingerprint "$tag")" = "$fp" ]; then
		echo "$tag: up to date (Redis $redis_version)"
		return
	fi

	local ctx="$work/redis" r="$work/redis/root" r999="$work/redis/root999"
	mkdir -p "$ctx" "$r999"
	new_root "$r"
	# Debian's redis-server is a symlink to redis-check-rdb (the binary picks
	# its mode from argv[0]), so copy it under its own name.
	put_with_libs "$redis_server"
	if command -v redis-cli >/dev/null 2>&1; then put_with_libs "$(command -v redis-cli)"; fi
	cat >"$r/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		redis:x:999:999::/data:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
	EOF
	printf 'root:x:0:\nredis:x:999:\nnogroup:x:65534:\n' >"$r/etc/group"
	mkdir -p "$r/root"
	cp "$entry" "$r/usr/local/bin/docker-entrypoint.sh"
	chmod 755 "$r/usr/local/bin/docker-entrypoint.sh"
	mkdir -p "$r999/data"
	pack "$ctx" "$r" "$r999" data

	cat >"$ctx/Dockerfile" <<-EOF
		FROM scratch
		ADD rootfs.tar /
		ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
		    REDIS_VERSION=$redis_version
		LABEL org.opencontainers.image.title="contend stand-in for redis" \\
		      org.opencontainers.image.version="$redis_version" \\
		      contend.standin="true" \\
		      contend.standin.version="$redis_version" \\
		      contend.standin.fingerprint="$fp"
		VOLUME /data
		WORKDIR /data
		ENTRYPOINT ["docker-entrypoint.sh"]
		EXPOSE 6379
		CMD ["redis-server"]
	EOF
	build "$tag" "$ctx"
	echo "$tag: built (Redis $redis_version, $(image_size "$tag"))"
}

image_size() {
	docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'
}

if [ $want_pg = 1 ]; then build_postgres; fi
if [ $want_redis = 1 ]; then build_redis; fi
