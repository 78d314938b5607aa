# shellcheck shell=bash
# Shared shell functions for azblobfs scripts. Source it; do not run it.
#
#   source "$(dirname "$0")/lib.sh"
#   ensure_prereqs          # fuse3, Azurite (pinned, under .tools/), /dev/fuse, cargo
#   setup_run_dir           # per-run scratch dir $RUN_DIR + cleanup trap (EXIT/INT/TERM)
#   start_azurite [PORT]    # exports AZURITE_PORT AZURITE_PID AZBLOBFS_TEST_ENDPOINT
#   stop_azurite
#
# Cleanup on exit (success, failure or Ctrl-C): every mount under $RUN_DIR is lazily unmounted,
# processes we started that still name $RUN_DIR are ended, Azurite is stopped, functions listed
# in CLEANUP_HOOKS run first. $RUN_DIR is removed on success, kept (with its logs) on failure
# unless KEEP_RUN_DIR=0; KEEP_RUN_DIR=1 always keeps it.

# Repository root (this file lives in ROOT/scripts).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

AZURITE_VERSION="3.37.0"
AZURITE_DIR="$ROOT/.tools/azurite"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"
# The well-known development account of the Azure storage emulator (public, not a secret).
AZURITE_ACCOUNT="devstoreaccount1"

CLEANUP_HOOKS=()
RUN_DIR="${RUN_DIR:-}"
AZURITE_PID="${AZURITE_PID:-}"

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run a command as root (directly when we are root, else through sudo if there is one).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (no sudo found)"
    fi
}

# apt-get install -y PKG..., running 'apt-get update' only when the package lists are missing
# or the install fails with the lists we have.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        say "apt-get update"
        as_root apt-get update -qq || die "apt-get update failed"
    fi
    say "apt-get install $*"
    if ! as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        say "apt-get update (install failed with the current package lists)"
        as_root apt-get update -qq || die "apt-get update failed"
        as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
            die "apt-get install $* failed"
    fi
}

# True when the pinned Azurite is installed under .tools and starts.
azurite_installed() {
    [ -x "$AZURITE_BIN" ] &&
        [ "$("$AZURITE_BIN" --version 2>/dev/null)" = "$AZURITE_VERSION" ]
}

# Idempotent: installs only what is missing. Prints one line per step it takes.
ensure_prereqs() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust (https://rustup.rs) and make sure ~/.cargo/bin is on PATH"

    if ! command -v fusermount3 >/dev/null 2>&1; then
        apt_install fuse3
    fi

    if [ ! -e /dev/fuse ]; then
        say "loading the fuse kernel module"
        as_root modprobe fuse 2>/dev/null || true
        [ -e /dev/fuse ] || warn "/dev/fuse is missing: mounts will fail (is this a container without FUSE?)"
    fi

    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    command -v python3 >/dev/null 2>&1 || apt_install python3

    if ! azurite_installed; then
        command -v npm >/dev/null 2>&1 || apt_install nodejs npm
        local node_major
        node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
        [ "$node_major" -ge 20 ] ||
            warn "Node.js $(node --version 2>/dev/null) is old: Azurite $AZURITE_VERSION asks for Node 22 (works with 20)"
        mkdir -p "$ROOT/.tools"
        # One install at a time (several scripts may start at once in the same tree). Install into
        # a staging directory and move it in place, so an interrupted install never looks done.
        (
            flock -w 900 9 || die "timed out waiting for another Azurite install"
            azurite_installed && exit 0
            local stage="$AZURITE_DIR.stage.$$"
            rm -rf "$stage"
            say "installing azurite@$AZURITE_VERSION into ${AZURITE_DIR#"$ROOT"/} (npm)"
            npm install --prefix "$stage" --no-audit --no-fund --loglevel=error \
                "azurite@$AZURITE_VERSION" >"$ROOT/.tools/azurite-npm-install.log" 2>&1 || {
                tail -n 30 "$ROOT/.tools/azurite-npm-install.log" >&2
                rm -rf "$stage"
                die "npm install azurite@$AZURITE_VERSION failed (log: .tools/azurite-npm-install.log)"
            }
            rm -rf "$AZURITE_DIR"
            mv "$stage" "$AZURITE_DIR"
            azurite_installed || die "azurite@$AZURITE_VERSION installed but does not run"
        ) 9>"$ROOT/.tools/azurite.lock" || exit 1
    fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local port tries=0
    while [ $tries -lt 200 ]; do
        port=$((20000 + RANDOM % 40000))
        # A refused connection means the port is free.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
        tries=$((tries + 1))
    done
    die "could not find a free local port"
}

# Creates the per-run scratch directory $RUN_DIR (under ROOT/.run, which git ignores) and installs
# the cleanup trap. Safe to call twice.
setup_run_dir() {
    if [ -z "$RUN_DIR" ] || [ ! -d "$RUN_DIR" ]; then
        mkdir -p "$ROOT/.run"
        RUN_DIR="$(mktemp -d "$ROOT/.run/run.XXXXXX")"
        export RUN_DIR
    fi
    trap '_on_exit' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# Mount points (decoded from /proc/mounts' octal escapes) that lie under directory $1.
mounts_under() {
    local dir="$1" mnt rest
    [ -n "$dir" ] || return 0
    dir="$(cd "$dir" 2>/dev/null && pwd -P || echo "$dir")"
    while read -r _ mnt rest; do
        mnt="$(printf '%b' "${mnt//\\/\\0}")"
        case "$mnt" in
        "$dir" | "$dir"/*) printf '%s\n' "$mnt" ;;
        esac
    done </proc/mounts
}

# PIDs of processes (other than this shell) with a command-line argument containing $1.
pids_with_arg() {
    local needle="$1" p pid
    [ -n "$needle" ] || return 0
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [ "$pid" = "$$" ] && continue
        [ "$pid" = "${BASHPID:-$$}" ] && continue
        if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$needle"; then
            echo "$pid"
        fi
    done
}

# Waits until none of the PIDs given exists, up to $1 seconds. Returns 1 on timeout.
wait_pids_gone() {
    local timeout="$1" pid alive deadline
    shift
    deadline=$((SECONDS + timeout))
    while :; do
        alive=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                alive=1
            fi
        done
        [ $alive -eq 0 ] && return 0
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}

# Unmounts $1 (umount, then fusermount3 -u) and waits for the azblobfs daemon serving it to exit.
unmount_and_wait() {
    local mnt="$1" pids
    pids="$(pids_with_arg "$mnt")"
    if ! umount "$mnt" 2>/dev/null && ! fusermount3 -u "$mnt"; then
        warn "could not unmount $mnt"
        return 1
    fi
    # shellcheck disable=SC2086
    if [ -n "$pids" ] && ! wait_pids_gone 60 $pids; then
        warn "the azblobfs daemon for $mnt did not exit within 60 s"
        return 1
    fi
}

# Starts Azurite's blob service on 127.0.0.1:PORT (a free port if none given), in-memory, with
# its log under $RUN_DIR, and waits until it answers.
# shellcheck disable=SC2120 # the port argument is optional
start_azurite() {
    local port="${1:-}"
    [ -n "$RUN_DIR" ] || setup_run_dir
    [ -x "$AZURITE_BIN" ] || die "azurite is not installed: call ensure_prereqs first"
    [ -n "$port" ] || port="$(free_port)"
    local dir="$RUN_DIR/azurite"
    local log="$RUN_DIR/azurite.log"
    mkdir -p "$dir"
    say "starting Azurite on 127.0.0.1:$port (log: ${log#"$ROOT"/})"
    # Data in memory by default (fast, nothing left behind); AZURITE_IN_MEMORY=0 keeps it on disk
    # under $RUN_DIR/azurite instead (Azurite refuses --location together with in-memory mode).
    local persist=(--inMemoryPersistence)
    [ "${AZURITE_IN_MEMORY:-1}" = 0 ] && persist=(--location "$dir")
    # --loose: the SDK's ranged GETs ask for CRC64, which strict mode rejects.
    # --disableTelemetry: no traffic off this machine.
    # setsid: its own process group, so a terminal's Ctrl-C reaches our trap, which stops it.
    (cd "$dir" && exec setsid "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" \
        "${persist[@]}" --loose --skipApiVersionCheck --disableTelemetry \
        </dev/null >"$log" 2>&1) &
    AZURITE_PID=$!
    AZURITE_PORT="$port"
    AZBLOBFS_TEST_ENDPOINT="http://127.0.0.1:$port/$AZURITE_ACCOUNT"
    export AZURITE_PID AZURITE_PORT AZBLOBFS_TEST_ENDPOINT

    local deadline=$((SECONDS + 30)) code
    while :; do
        if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
            tail -n 20 "$log" >&2
            AZURITE_PID=""
            die "Azurite exited during startup (port $port in use?); log above"
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
            "$AZBLOBFS_TEST_ENDPOINT?comp=list" 2>/dev/null || true)"
        if [ -n "$code" ] && [ "$code" != "000" ]; then
            break
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$log" >&2
            die "Azurite did not answer on $AZBLOBFS_TEST_ENDPOINT within 30 s; log above"
        fi
        sleep 0.2
    done
    say "Azurite is up: $AZBLOBFS_TEST_ENDPOINT (pid $AZURITE_PID)"
}

stop_azurite() {
    [ -n "$AZURITE_PID" ] || return 0
    if kill -0 "$AZURITE_PID" 2>/dev/null; then
        # Its own process group (setsid): end node and anything it started.
        kill -TERM -- "-$AZURITE_PID" 2>/dev/null || kill -TERM "$AZURITE_PID" 2>/dev/null || true
        if ! wait_pids_gone 10 "$AZURITE_PID"; then
            kill -KILL -- "-$AZURITE_PID" 2>/dev/null || kill -KILL "$AZURITE_PID" 2>/dev/null || true
        fi
        wait "$AZURITE_PID" 2>/dev/null || true
        say "Azurite stopped"
    fi
    AZURITE_PID=""
}

# Lazily unmounts every mount under $RUN_DIR and ends leftover processes that name $RUN_DIR
# (azblobfs daemons of those mounts, a hung test binary's children). Only processes we started
# can name our freshly made run directory.
cleanup_run_dir_mounts() {
    [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ] || return 0
    local mnt pids
    while IFS= read -r mnt; do
        [ -n "$mnt" ] || continue
        warn "lazily unmounting leftover mount $mnt"
        fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done < <(mounts_under "$RUN_DIR" | sort -r)
    pids="$(pids_with_arg "$RUN_DIR" | grep -vx "${AZURITE_PID:-none}" || true)"
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        if ! wait_pids_gone 10 $pids; then
            warn "ending leftover processes: ${pids//$'\n'/ }"
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            # shellcheck disable=SC2086
            wait_pids_gone 5 $pids || kill -KILL $pids 2>/dev/null || true
        fi
    fi
}

_on_exit() {
    local status=$?
    trap - EXIT INT TERM HUP
    set +e
    local hook
    for hook in "${CLEANUP_HOOKS[@]}"; do
        "$hook"
    done
    cleanup_run_dir_mounts
    stop_azurite
    if [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ]; then
        if [ -n "$(mounts_under "$RUN_DIR")" ]; then
            warn "mounts remain under $RUN_DIR; not removing it"
        elif [ "${KEEP_RUN_DIR:-}" = 1 ] || { [ $status -ne 0 ] && [ "${KEEP_RUN_DIR:-}" != 0 ]; }; then
            say "run directory kept for inspection: $RUN_DIR"
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit $status
}
