#!/usr/bin/env bash
# One-command demo: mount a blob container (in a local Azurite) and use it with plain tools.
#
#   scripts/demo.sh
#
# Installs what is missing (fuse3, Azurite under .tools/), builds azblobfs and the seed example,
# starts Azurite on a free 127.0.0.1 port, seeds a container "demo" with a small dataset, mounts
# it, lists/reads/analyses/writes files through the mount, unmounts, and shows that the new file
# is a blob in the container. Everything it started is stopped and removed on exit, also on
# failure or Ctrl-C. Safe to run again.
# The commands shown are single-quoted on purpose: run() prints them, then evaluates them.
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [ -t 1 ]; then
    B=$'\e[1m' C=$'\e[36m' N=$'\e[0m'
else
    B="" C="" N=""
fi
# A section title.
step() { printf '\n%s### %s%s\n' "$B" "$*" "$N"; }
# Shows a shell command, then runs it (in this shell, so `cd` sticks).
run() {
    printf '%s$ %s%s\n' "$C" "$1" "$N"
    eval "$1"
}

ensure_prereqs
setup_run_dir

step "Build azblobfs and the seed tool"
cargo build --release --quiet --bin azblobfs --example seed
AZBLOBFS="$ROOT/target/release/azblobfs"
SEED="$ROOT/target/release/examples/seed"

step "Start a local Azure Blob Storage emulator (Azurite)"
start_azurite
ENDPOINT="$AZBLOBFS_TEST_ENDPOINT"

step "Create container 'demo' with a sample dataset"
"$SEED" --endpoint "$ENDPOINT" --container demo --sample

MNT="$RUN_DIR/mnt"
LOG="$RUN_DIR/azblobfs.log"
mkdir -p "$MNT"
leave_mount() { cd "$ROOT"; }
CLEANUP_HOOKS+=(leave_mount)

step "Mount it (azblobfs returns once the mount is live and keeps serving in the background)"
printf '%s$ azblobfs --emulator --endpoint %s demo %s%s\n' "$C" "$ENDPOINT" "$MNT" "$N"
if ! "$AZBLOBFS" --emulator --endpoint "$ENDPOINT" --cache-dir "$RUN_DIR/cache" \
    --log-file "$LOG" demo "$MNT"; then
    [ -f "$LOG" ] && tail -n 20 "$LOG" >&2
    die "the mount failed"
fi
run "mount | grep ' $MNT '"

step "Browse it with ordinary tools"
run 'cd "$MNT"'
run 'ls -la'
run 'find . | sort'
run 'head -n 6 data/sales.csv'
run 'wc -l data/*.csv data/2024/*.csv'
run 'cat "notes/café menu #1.txt"'
run 'file images/pixel.png 2>/dev/null || od -A d -t x1 images/pixel.png | head -n 2'

step "Analyse the CSV the way generated analysis code would (python3, csv module)"
ANALYSIS='import csv, collections
totals = collections.Counter()
with open("data/sales.csv", newline="") as f:
    for row in csv.DictReader(f):
        totals[row["region"]] += int(row["units"])
for region, units in sorted(totals.items()):
    print(f"{region:<6} {units:>5} units")'
printf '%s$ python3 -c %s%s\n' "$C" "'$ANALYSIS'" "$N"
python3 -c "$ANALYSIS"

step "Write a report back through the mount"
run 'mkdir -p reports'
run 'echo "Units per region, from data/sales.csv:" > reports/summary.txt'
printf '%s$ python3 -c "$ANALYSIS" >> reports/summary.txt%s\n' "$C" "$N"
python3 -c "$ANALYSIS" >>reports/summary.txt
run 'cat reports/summary.txt'
run 'ls -la reports'

step "Unmount (the daemon uploads anything pending and exits)"
run 'cd "$ROOT"'
printf '%s$ umount %s%s\n' "$C" "$MNT" "$N"
unmount_and_wait "$MNT" || die "unmount failed (log: $LOG)"
grep -q " $MNT " /proc/mounts || echo "(unmounted, and the azblobfs daemon has exited)"

step "The report is now a blob in the container"
printf '%s$ seed --container demo --list reports/%s\n' "$C" "$N"
"$SEED" --endpoint "$ENDPOINT" --container demo --list reports/ 2>/dev/null
SAS_URL="$("$SEED" --endpoint "$ENDPOINT" --container demo --sas-url 2>/dev/null)"
BLOB_URL="${SAS_URL%%\?*}/reports/summary.txt?${SAS_URL#*\?}"
printf '%s$ curl "%s/reports/summary.txt?<SAS>"%s\n' "$C" "${SAS_URL%%\?*}" "$N"
curl -fsS "$BLOB_URL"

step "Done"
echo "Stopping Azurite and removing the demo's temporary files."
