#!/usr/bin/env bash
# Benchmarks of azblobfs against the wire limit, local disk and rclone mount, on Azurite.
#
#   scripts/bench.sh read     sequential / first-byte / random reads of one big blob (issue #3)
#   scripts/bench.sh meta     listing and tree walks over many small blobs (issue #4)
#   scripts/bench.sh all      both, one after the other (one Azurite)
#
#   quick smoke run:  BENCH_MB=64 BENCH_META_FILES=500 BENCH_RUNS=1 scripts/bench.sh all
#
# Each invocation is self-contained: it installs what is missing (fuse3, Azurite under .tools/,
# rclone, fio), builds the release binaries, starts its own Azurite on a free port, uploads the
# data, runs every case BENCH_RUNS times, prints the results and stops everything. Needs root
# (drop_caches, mounts). However it ends (success, failure, Ctrl-C), the exit trap lazily unmounts
# every mount it made, ends the azblobfs/rclone daemons and Azurite, and deletes the data (blob
# copies, caches, Azurite's store); on failure the logs are kept under .run/run.*/ (the path is
# printed), on success everything is removed (KEEP_RUN_DIR=1 keeps the logs anyway).
#
# Output: progress on stderr; on stdout one `name: value` line per figure, the MEDIAN over the
# runs, then the ratios of those medians (`grep '^azblobfs_cold_s:'` works). Times are wall-clock
# seconds (`_s`) or milliseconds (`_ms`). "Drop caches" = `sync; echo 3 > /proc/sys/vm/drop_caches`.
#
# read (a random blob of BENCH_MB MiB, uploaded once in 8 MiB blocks):
#   direct_get_s               curl GET of the blob to /dev/null: the wire limit (caches dropped)
#   local_s                    cat of the same bytes from a local file, caches dropped
#   azblobfs_cold_s            fresh mount, empty --cache-dir, caches dropped: cat MNT/blob >/dev/null
#   azblobfs_warm_s            same mount, caches dropped again, second cat (content on the local
#                              cache disk, kernel page cache empty)
#   azblobfs_warm_pagecache_s  same mount, third cat, without dropping caches
#   azblobfs_peak_rss_mib      VmHWM (peak RSS) of the azblobfs daemon, read right after the cold cat
#   azblobfs_cold_cpu_s        CPU seconds (user + system) the daemon used during the cold cat;
#   azblobfs_cold_azurite_cpu_s  and Azurite during it; direct_get_azurite_cpu_s: Azurite during
#                              the curl GET. On a 2-core machine the cold cat cannot take less
#                              than (daemon + Azurite + cat + kernel CPU) / 2: these show where the
#                              gap to direct_get_s goes. rclone_cold_cpu_s: the same for rclone.
#   rclone_cold_s/_warm_s      rclone mount --vfs-cache-mode full, fresh --cache-dir: first cat
#                              (cold) and second cat after dropping caches (warm)
#   rclone_peak_rss_mib        VmHWM of the rclone daemon after its cold cat
#   first_byte_ms              fresh mount and cache, caches dropped: open + read of the first 4 KiB
#   random_4k_ms               fresh mount and cache: 10 reads of 4 KiB at random (seeded) offsets
#   random_4k_downloaded_mib   bytes azblobfs downloaded for those 10 reads (get_bytes of the
#                              request counts the daemon logs at unmount), in MiB
#   random_4k_requests_get     number of GET requests for them
#   ratios: cold_vs_direct = azblobfs_cold_s / direct_get_s, warm_vs_local = azblobfs_warm_s /
#           local_s, cold_vs_rclone = azblobfs_cold_s / rclone_cold_s, warm_vs_rclone =
#           azblobfs_warm_s / rclone_warm_s (lower is better; 1.00 = as fast as the reference)
#
# meta (flat/f00000.. : BENCH_META_FILES blobs of 100 B; tree/dNNN/fNNN: BENCH_TREE_DIRS x
# BENCH_TREE_FILES blobs of 100 B, by default sqrt(BENCH_META_FILES) x sqrt(..): 100 x 100 for
# the default 10,000 files, 22 x 22 for a smoke run's 500):
#   list_raw_s                 the raw paged listing of flat/ with curl (delimiter=/,
#                              maxresults=5000, following NextMarker): the limit for `ls -l flat`
#   {azblobfs,rclone}_ls_l_cold_s    fresh mount: ls -l flat >/dev/null
#   {azblobfs,rclone}_ls_l_warm_s    the same again on the same mount
#   {azblobfs,rclone}_find_cold_s    fresh mount: find tree -type f | wc -l (the count is checked)
#   {azblobfs,rclone}_du_cold_s      fresh mount: du -s tree
#   {azblobfs,rclone}_walk_cold_s    fresh mount: python os.walk + os.stat of every file of tree
#   {..}_find_warm_s, _du_warm_s, _walk_warm_s: the same again on the same mount
#   rclone mounts with --vfs-cache-mode off and its defaults (--dir-cache-time 5m, so its warm
#   runs are served from memory).
#   ls_l_requests_list, ls_l_requests_properties, ls_l_requests_total: azblobfs requests for
#                              mount + cold `ls -l flat` + unmount (from the daemon's count line)
#   requests_per_entry         ls_l_requests_total / BENCH_META_FILES
#   ratios: ls_l_cold_vs_list = azblobfs_ls_l_cold_s / list_raw_s; ls_l_cold_vs_rclone,
#           ls_l_warm_vs_rclone, find_cold_vs_rclone, du_cold_vs_rclone, walk_cold_vs_rclone =
#           the azblobfs figure / the rclone one
#
# Also printed: bench_runs, bench_mb / bench_meta_files, azurite_storage (memory or disk),
# upload_s, meta_upload_s (set-up costs, one run each).
#
# Checks: a benchmark fails (exit 1, partial results on stderr) rather than report a figure for
# wrong work: curl must get 200 and every byte, the first run's azblobfs mount must return the
# uploaded bytes (cmp), ls/find/os.walk must see every entry, any read error stops the run.
# WARN/ERROR lines of the azblobfs and rclone logs are copied to stderr at the end.
#
# Azurite runs in memory (not --location on disk) unless memory is short: see start_bench_azurite.
#
# Environment:
#   BENCH_MB=1024            size of the read benchmark's blob, MiB
#   BENCH_META_FILES=10000   number of blobs in flat/
#   BENCH_TREE_DIRS, BENCH_TREE_FILES   shape of tree/ (default: both sqrt(BENCH_META_FILES))
#   BENCH_RUNS=3             runs per case (the median is reported)
#   BENCH_AZURITE_DISK=1     keep Azurite's data on disk instead of in memory (see start_bench_azurite)
#   BENCH_NO_BUILD=1         use the binaries already in target/release (no cargo build)
#   AZBLOBFS_BIN=PATH        benchmark this azblobfs binary instead of target/release/azblobfs
#                            (e.g. another build, to compare; seed still comes from target/release)
#   KEEP_RUN_DIR=1           keep the run directory (logs) even on success
#
# Files: scripts/bench/blobtool.py (uploads, timed reads, os.walk, log parsing; stdlib only) and
# scripts/bench/stats.py (medians and ratios).
set -Eeuo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
BENCH_TOOLS="$ROOT/scripts/bench"
export LC_ALL=C # EPOCHREALTIME with a '.', plain sort/ls

# Name the command that failed (set -e alone exits silently).
trap '[ "$BASH_SUBSHELL" != 0 ] || printf "error: bench.sh line %s: %s failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

usage() {
    sed -n '2,/^set -/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

MODE="${1:-}"
case "$MODE" in
read | meta | all) ;;
-h | --help | help | "") usage ;;
*)
    printf 'bench.sh: unknown benchmark %s\n' "$MODE" >&2
    usage
    ;;
esac

BENCH_MB="${BENCH_MB:-1024}"
BENCH_META_FILES="${BENCH_META_FILES:-10000}"
# The tree is about as big as flat/ (sqrt x sqrt: 100 x 100 for the default 10,000), so a smoke
# run with few files stays quick.
_tree_side="$(awk -v n="${BENCH_META_FILES}" 'BEGIN { s = int(sqrt(n) + 0.5); print (s < 1 ? 1 : s) }' 2>/dev/null || echo 100)"
BENCH_TREE_DIRS="${BENCH_TREE_DIRS:-$_tree_side}"
BENCH_TREE_FILES="${BENCH_TREE_FILES:-$_tree_side}"
BENCH_RUNS="${BENCH_RUNS:-3}"
for v in BENCH_MB BENCH_META_FILES BENCH_TREE_DIRS BENCH_TREE_FILES BENCH_RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
if [ "$BENCH_TREE_DIRS" -gt 1000 ] || [ "$BENCH_TREE_FILES" -gt 1000 ]; then
    die "BENCH_TREE_DIRS and BENCH_TREE_FILES are at most 1000 (names are dNNN/fNNN)"
fi
[ "$BENCH_META_FILES" -le 100000 ] || die "BENCH_META_FILES is at most 100000 (names are fNNNNN)"
[ "$(id -u)" -eq 0 ] || die "run as root (drop_caches and mounts need it)"

# ---------------------------------------------------------------------------------------------
# Helpers

BENCH_DONE=0
RESULTS=""
W="" # work directory: $RUN_DIR/bench

# Exit hook (runs before lib.sh's own cleanup): partial results on failure, then unmount and end
# the daemons ourselves so that the bulky data can go before lib.sh decides whether to keep the
# run directory (it keeps it on failure, for the logs).
bench_cleanup() {
    if [ "$BENCH_DONE" != 1 ] && [ -n "$RESULTS" ] && [ -s "$RESULTS" ]; then
        printf '\n==> partial results (the run did not finish):\n' >&2
        python3 "$BENCH_TOOLS/stats.py" --partial "$RESULTS" >&2 || true
    fi
    if [ -n "$BG_PID" ]; then
        kill -TERM "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
    cleanup_run_dir_mounts
    stop_azurite
    if [ -n "$W" ] && [ -d "$W" ] && [ -z "$(mounts_under "$W")" ]; then
        rm -rf "${W:?}/data" "${W:?}/cache" "${W:?}/mnt" "${RUN_DIR:?}/azurite"
    fi
}

# `in_background CMD...`: runs a long untimed step (data generation, uploads) as a background
# job and waits for it, so that a SIGTERM (not only a terminal's Ctrl-C, which reaches the
# whole process group) stops the benchmark at once; the exit hook ends the job.
BG_PID=""
in_background() {
    "$@" &
    BG_PID=$!
    local status=0
    wait "$BG_PID" || status=$?
    BG_PID=""
    [ $status -eq 0 ] || die "failed (exit $status): $*"
}

# Records one measurement: `rec NAME VALUE` (stats.py takes the median per name).
rec() {
    printf '%s %s\n' "$1" "$2" >>"$RESULTS"
    printf '    %-28s %s\n' "$1" "$2" >&2
}

# Seconds since $1 (an $EPOCHREALTIME value), with microseconds.
seconds_since() {
    local t1=$EPOCHREALTIME us
    us=$((${t1/./} - ${1/./}))
    printf '%d.%06d' $((us / 1000000)) $((us % 1000000))
}

# `timed CMD...`: runs CMD, stdout captured in OUT, wall time in seconds in ELAPSED.
timed() {
    local t0=$EPOCHREALTIME
    if ! OUT="$("$@")"; then
        die "failed: $*"
    fi
    ELAPSED="$(seconds_since "$t0")"
}

DROP_WARNED=0
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        if [ $DROP_WARNED -eq 0 ]; then
            warn "cannot write /proc/sys/vm/drop_caches: cold figures include the page cache"
            DROP_WARNED=1
        fi
    fi
}

ensure_bench_prereqs() {
    ensure_prereqs
    local missing=()
    command -v rclone >/dev/null 2>&1 || missing+=(rclone)
    command -v fio >/dev/null 2>&1 || missing+=(fio)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    command -v mountpoint >/dev/null 2>&1 || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# Builds the release binaries and copies them into the run directory, so that a rebuild by
# someone else in the same tree cannot swap the binary in the middle of a benchmark.
build() {
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        say "cargo build --release --bin azblobfs --example seed"
        cargo build --release --bin azblobfs --example seed
    fi
    mkdir -p "$W/bin"
    if [ -n "${AZBLOBFS_BIN:-}" ]; then
        [ -x "$AZBLOBFS_BIN" ] || die "AZBLOBFS_BIN=$AZBLOBFS_BIN is not an executable"
        cp "$AZBLOBFS_BIN" "$W/bin/azblobfs"
    else
        cp target/release/azblobfs "$W/bin/azblobfs"
    fi
    cp target/release/examples/seed "$W/bin/seed"
    AZBLOBFS="$W/bin/azblobfs"
    SEED="$W/bin/seed"
}

# Azurite keeps its data in memory unless BENCH_AZURITE_DISK=1 or memory is short.
# Why memory: real Azure serves blobs from remote servers, not from our disk. With --location
# on disk, every "cold" read (drop_caches evicts Azurite's extent files too) would also re-read
# the whole blob from the same local disk that azblobfs/rclone write their cache to, so the cold
# figures would mostly measure disk contention (measured here, 1 GiB: curl GET 2.6-4.2 s from
# memory, 5.4-6.9 s from disk after drop_caches; local disk read 0.5-3.3 s on a busy machine).
# In memory, direct_get_s is the network path only and drop_caches touches only the client side.
# The cost is RAM: Azurite's RSS grows by about the blob size (1.2 GiB for a 1 GiB blob), so we
# fall back to disk when MemAvailable is under 3 x BENCH_MB + 1 GiB.
start_bench_azurite() {
    local avail_mib need_mib
    avail_mib=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024))
    need_mib=$((BENCH_MB * 3 + 1024))
    [ "$MODE" = meta ] && need_mib=1024
    if [ "${BENCH_AZURITE_DISK:-0}" = 1 ]; then
        AZURITE_IN_MEMORY=0
    elif [ "$avail_mib" -lt "$need_mib" ]; then
        warn "only ${avail_mib} MiB of memory available (< ${need_mib}): Azurite keeps its data on disk"
        AZURITE_IN_MEMORY=0
    else
        AZURITE_IN_MEMORY=1
    fi
    export AZURITE_IN_MEMORY
    start_azurite
    if [ "$AZURITE_IN_MEMORY" = 1 ]; then
        rec azurite_storage memory
    else
        rec azurite_storage disk
    fi
}

# Creates container $1 and prints its SAS URL.
make_container() {
    "$SEED" --endpoint "$AZBLOBFS_TEST_ENDPOINT" --container "$1" --sas-url 2>>"$W/logs/seed.log" ||
        die "could not create container $1 (log: $W/logs/seed.log)"
}

# Writes the rclone config for container SAS URL $1 (Debian's rclone 1.60 reaches Azurite only
# through a container SAS URL).
write_rclone_conf() {
    RCLONE_CONF="$W/rclone.conf"
    printf '[az]\ntype = azureblob\nsas_url = %s\n' "$1" >"$RCLONE_CONF"
    chmod 600 "$RCLONE_CONF"
}

wait_mounted() {
    local mnt="$1" what="$2" log="$3" deadline=$((SECONDS + 60))
    until mountpoint -q "$mnt"; do
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$log" >&2 || true
            die "$what did not mount on $mnt within 60 s (log: $log)"
        fi
        sleep 0.1
    done
}

# `mount_azblobfs TAG`: fresh mount of $CONTAINER with an empty cache dir. Sets MNT, LOG.
mount_azblobfs() {
    local tag="$1" cache
    MNT="$W/mnt/az-$tag"
    cache="$W/cache/az-$tag"
    LOG="$W/logs/azblobfs-$tag.log"
    rm -rf "$cache"
    mkdir -p "$MNT" "$cache"
    if ! "$AZBLOBFS" --emulator --endpoint "$AZBLOBFS_TEST_ENDPOINT" --cache-dir "$cache" \
        --cache-size "$CACHE_SIZE" --log-file "$LOG" "$CONTAINER" "$MNT"; then
        tail -n 20 "$LOG" >&2 || true
        die "azblobfs failed to mount $CONTAINER on $MNT (log: $LOG)"
    fi
    wait_mounted "$MNT" azblobfs "$LOG"
}

# `mount_rclone TAG CACHE_MODE`: fresh rclone mount of $CONTAINER. Sets MNT, LOG.
mount_rclone() {
    local tag="$1" mode="$2" cache
    MNT="$W/mnt/rc-$tag"
    cache="$W/cache/rc-$tag"
    LOG="$W/logs/rclone-$tag.log"
    rm -rf "$cache"
    mkdir -p "$MNT" "$cache"
    if ! rclone mount "az:$CONTAINER" "$MNT" --config "$RCLONE_CONF" --cache-dir "$cache" \
        --vfs-cache-mode "$mode" --daemon --log-file "$LOG" --log-level NOTICE; then
        tail -n 20 "$LOG" >&2 || true
        die "rclone failed to mount $CONTAINER on $MNT (log: $LOG)"
    fi
    wait_mounted "$MNT" rclone "$LOG"
}

# Unmounts $MNT, waits for its daemon to exit (it then logs its request counts), and deletes
# its cache dir.
unmount_current() {
    unmount_and_wait "$MNT" || die "could not unmount $MNT"
    rm -rf "$W/cache/$(basename "$MNT")"
}

# PID of the daemon (named $2) serving mount point $1.
daemon_pid() {
    local pid
    for pid in $(pgrep -f -- "$1" || true); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
            echo "$pid"
            return 0
        fi
    done
    die "no $2 process found for $1"
}

# VmHWM (peak resident set) of PID $1, in MiB.
peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# CPU time (user + system, all threads) process $1 has used so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# `rec_cpu NAME PID TICKS_BEFORE`: records the CPU seconds PID used since TICKS_BEFORE.
rec_cpu() {
    rec "$1" "$(awk -v a="$3" -v b="$(cpu_ticks "$2")" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", (b - a) / hz }')"
}

# `cat_file PATH`: sequential read to /dev/null (what the read figures time).
cat_file() {
    cat "$1" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# read (issue #3)

read_bench() {
    CONTAINER="bench-read"
    local url base sas blob="blob.bin" local_file run size pid daemon_before azurite_before
    say "read benchmark: ${BENCH_MB} MiB blob, $BENCH_RUNS run(s)"
    rec bench_mb "$BENCH_MB"
    url="$(make_container "$CONTAINER")"
    base="${url%%\?*}"
    sas="${url#*\?}"
    write_rclone_conf "$url"
    # Cache budget: the blob plus room to spare, whatever the cache disk's default share is.
    CACHE_SIZE="$((BENCH_MB * 2 + 256))M"

    mkdir -p "$W/data"
    local_file="$W/data/$blob"
    say "generating ${BENCH_MB} MiB of random data"
    in_background head -c "$((BENCH_MB * 1024 * 1024))" /dev/urandom >"$local_file"
    size=$(stat -c %s "$local_file")
    say "uploading it as $CONTAINER/$blob (8 MiB blocks, 4 in parallel)"
    local t0=$EPOCHREALTIME
    in_background python3 "$BENCH_TOOLS/blobtool.py" put-file "$url" "$blob" "$local_file"
    rec upload_s "$(seconds_since "$t0")"

    for run in $(seq 1 "$BENCH_RUNS"); do
        say "read run $run/$BENCH_RUNS"

        # The wire limit.
        drop_caches
        azurite_before="$(cpu_ticks "$AZURITE_PID")"
        timed curl -sS -o /dev/null -w '%{http_code} %{size_download}' "$base/$blob?$sas"
        [ "$OUT" = "200 $size" ] || die "curl GET of the blob answered '$OUT' (expected '200 $size')"
        rec direct_get_s "$ELAPSED"
        rec_cpu direct_get_azurite_cpu_s "$AZURITE_PID" "$azurite_before"

        drop_caches
        timed cat_file "$local_file"
        rec local_s "$ELAPSED"

        # azblobfs: cold (empty cache), warm (local cache, no page cache), warm with page cache.
        mount_azblobfs "read-$run"
        pid="$(daemon_pid "$MNT" azblobfs)"
        drop_caches
        daemon_before="$(cpu_ticks "$pid")"
        azurite_before="$(cpu_ticks "$AZURITE_PID")"
        timed cat_file "$MNT/$blob"
        rec azblobfs_cold_s "$ELAPSED"
        rec_cpu azblobfs_cold_cpu_s "$pid" "$daemon_before"
        rec_cpu azblobfs_cold_azurite_cpu_s "$AZURITE_PID" "$azurite_before"
        rec azblobfs_peak_rss_mib "$(peak_rss_mib "$pid")"
        drop_caches
        timed cat_file "$MNT/$blob"
        rec azblobfs_warm_s "$ELAPSED"
        timed cat_file "$MNT/$blob"
        rec azblobfs_warm_pagecache_s "$ELAPSED"
        if [ "$run" = 1 ]; then
            # Untimed: the bytes read through the mount are the bytes uploaded.
            cmp "$local_file" "$MNT/$blob" || die "azblobfs returned different content for $blob"
        fi
        unmount_current

        # rclone with a full VFS cache: cold (fresh cache dir), warm (second read, caches dropped).
        mount_rclone "read-$run" full
        pid="$(daemon_pid "$MNT" rclone)"
        drop_caches
        daemon_before="$(cpu_ticks "$pid")"
        timed cat_file "$MNT/$blob"
        rec rclone_cold_s "$ELAPSED"
        rec_cpu rclone_cold_cpu_s "$pid" "$daemon_before"
        rec rclone_peak_rss_mib "$(peak_rss_mib "$pid")"
        drop_caches
        timed cat_file "$MNT/$blob"
        rec rclone_warm_s "$ELAPSED"
        unmount_current

        # Time to first byte on a fresh mount.
        mount_azblobfs "first-byte-$run"
        drop_caches
        timed python3 "$BENCH_TOOLS/blobtool.py" first-byte "$MNT/$blob" --size 4096
        rec first_byte_ms "$OUT"
        unmount_current

        # 10 random 4 KiB reads: how much does azblobfs download for them?
        mount_azblobfs "random-$run"
        drop_caches
        timed python3 "$BENCH_TOOLS/blobtool.py" random-read "$MNT/$blob" --count 10 --size 4096 \
            --seed "$run"
        rec random_4k_ms "$OUT"
        unmount_current
        local counts
        counts="$(python3 "$BENCH_TOOLS/blobtool.py" counts "$LOG")" ||
            die "no request counts in $LOG"
        rec random_4k_downloaded_mib "$(count_field "$counts" get_bytes | awk '{printf "%.2f", $1 / 1048576}')"
        rec random_4k_requests_get "$(count_field "$counts" get)"
    done

    # Free Azurite's memory for the meta benchmark.
    curl -sS -o /dev/null -X DELETE "$base/$blob?$sas" || true
    rm -f "$local_file"
}

# `count_field "list=1 get=2 ..." get` -> 2
count_field() {
    local kv
    for kv in $1; do
        if [ "${kv%%=*}" = "$2" ]; then
            echo "${kv#*=}"
            return 0
        fi
    done
    die "no field $2 in the request counts '$1'"
}

# ---------------------------------------------------------------------------------------------
# meta (issue #4)

# The raw paged listing of flat/, as `ls` would need it; prints the number of entries.
list_raw() {
    local base="$1" sas="$2" marker="" page n=0 count
    while :; do
        page="$(curl -sS -f -G "$base" --data "restype=container&comp=list&prefix=flat/&delimiter=/&maxresults=5000&$sas" \
            ${marker:+--data-urlencode "marker=$marker"})" || return 1
        count="$(grep -o '<Blob>' <<<"$page" | wc -l)"
        n=$((n + count))
        marker="$(sed -n 's:.*<NextMarker>\([^<]*\)</NextMarker>.*:\1:p' <<<"$page")"
        [ -n "$marker" ] || break
    done
    echo "$n"
}

count_files() {
    find "$1" -type f | wc -l
}

# `meta_cases TOOL`: the cold/warm cases on fresh mounts of TOOL (azblobfs or rclone).
meta_cases() {
    local tool="$1" run="$2" tree_total=$((BENCH_TREE_DIRS * BENCH_TREE_FILES)) i
    local mount=(mount_azblobfs)
    [ "$tool" = rclone ] && mount=(mount_rclone)
    local mode=()
    [ "$tool" = rclone ] && mode=(off)

    "${mount[@]}" "ls-$run" "${mode[@]}"
    drop_caches
    for i in cold warm; do
        timed ls -l "$MNT/flat"
        [ "$(wc -l <<<"$OUT")" -eq $((BENCH_META_FILES + 1)) ] ||
            die "$tool: ls -l flat shows $(($(wc -l <<<"$OUT") - 1)) entries, expected $BENCH_META_FILES"
        rec "${tool}_ls_l_${i}_s" "$ELAPSED"
    done
    unmount_current

    "${mount[@]}" "find-$run" "${mode[@]}"
    drop_caches
    for i in cold warm; do
        timed count_files "$MNT/tree"
        [ "$OUT" -eq "$tree_total" ] || die "$tool: find tree found $OUT files, expected $tree_total"
        rec "${tool}_find_${i}_s" "$ELAPSED"
    done
    unmount_current

    "${mount[@]}" "du-$run" "${mode[@]}"
    drop_caches
    for i in cold warm; do
        timed du -s "$MNT/tree"
        rec "${tool}_du_${i}_s" "$ELAPSED"
    done
    unmount_current

    "${mount[@]}" "walk-$run" "${mode[@]}"
    drop_caches
    for i in cold warm; do
        # Timed inside python (interpreter start-up excluded).
        OUT="$(python3 "$BENCH_TOOLS/blobtool.py" walk "$MNT/tree")"
        [ "${OUT% *}" -eq "$tree_total" ] || die "$tool: os.walk found ${OUT% *} files, expected $tree_total"
        rec "${tool}_walk_${i}_s" "${OUT#* }"
    done
    unmount_current
}

meta_bench() {
    CONTAINER="bench-meta"
    CACHE_SIZE="1G"
    local url base sas run n
    say "meta benchmark: flat/ of $BENCH_META_FILES blobs, tree/ of $BENCH_TREE_DIRS x $BENCH_TREE_FILES, $BENCH_RUNS run(s)"
    rec bench_meta_files "$BENCH_META_FILES"
    url="$(make_container "$CONTAINER")"
    base="${url%%\?*}"
    sas="${url#*\?}"
    write_rclone_conf "$url"

    say "uploading $((BENCH_META_FILES + BENCH_TREE_DIRS * BENCH_TREE_FILES)) small blobs (32 in parallel)"
    local t0=$EPOCHREALTIME
    in_background python3 "$BENCH_TOOLS/blobtool.py" put-flat "$url" flat "$BENCH_META_FILES" --size 100 --parallel 32
    in_background python3 "$BENCH_TOOLS/blobtool.py" put-tree "$url" tree "$BENCH_TREE_DIRS" "$BENCH_TREE_FILES" \
        --size 100 --parallel 32
    rec meta_upload_s "$(seconds_since "$t0")"

    for run in $(seq 1 "$BENCH_RUNS"); do
        say "meta run $run/$BENCH_RUNS"
        timed list_raw "$base" "$sas"
        [ "$OUT" -eq "$BENCH_META_FILES" ] || die "the raw listing of flat/ has $OUT entries, expected $BENCH_META_FILES"
        rec list_raw_s "$ELAPSED"
        meta_cases azblobfs "$run"
        meta_cases rclone "$run"
    done

    # Requests azblobfs makes for mount + cold ls -l flat + unmount.
    say "request counts of a cold ls -l flat"
    mount_azblobfs "ls-requests"
    ls -l "$MNT/flat" >/dev/null
    unmount_current
    local counts total
    counts="$(python3 "$BENCH_TOOLS/blobtool.py" counts "$LOG")" || die "no request counts in $LOG"
    say "azblobfs requests: $counts"
    rec ls_l_requests_list "$(count_field "$counts" list)"
    rec ls_l_requests_properties "$(count_field "$counts" properties)"
    total="$(count_field "$counts" total)"
    rec ls_l_requests_total "$total"
    rec requests_per_entry "$(awk -v t="$total" -v n="$BENCH_META_FILES" 'BEGIN { printf "%.4f", t / n }')"
}

# ---------------------------------------------------------------------------------------------

# Copies the WARN/ERROR lines of the daemons' logs to stderr (they are deleted on success).
report_log_problems() {
    local f found=0
    for f in "$W"/logs/azblobfs-*.log "$W"/logs/rclone-*.log; do
        [ -f "$f" ] || continue
        if grep -qE ' (WARN|ERROR) |ERROR :|panic' "$f"; then
            [ $found -eq 0 ] && say "warnings and errors in the daemon logs:"
            found=1
            grep -E ' (WARN|ERROR) |ERROR :|panic' "$f" | sed "s|^|    $(basename "$f"): |" >&2
        fi
    done
    [ $found -eq 1 ] || say "no WARN/ERROR lines in the azblobfs/rclone logs"
}

main() {
    ensure_bench_prereqs
    setup_run_dir
    CLEANUP_HOOKS+=(bench_cleanup)
    W="$RUN_DIR/bench"
    mkdir -p "$W/logs" "$W/mnt" "$W/cache"
    RESULTS="$W/results.txt"
    : >"$RESULTS"

    build
    rec bench_runs "$BENCH_RUNS"
    start_bench_azurite

    case "$MODE" in
    read) read_bench ;;
    meta) meta_bench ;;
    all)
        read_bench
        meta_bench
        ;;
    esac

    report_log_problems
    say "results (median of $BENCH_RUNS run(s)):"
    python3 "$BENCH_TOOLS/stats.py" "$RESULTS"
    BENCH_DONE=1
}

main
