#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run).
#
#   scripts/test.sh                      clippy (-D warnings), then the whole suite (unit + integration)
#   scripts/test.sh mount_smoke          only tests/mount_smoke.rs (a tests/ file name becomes --test NAME)
#   scripts/test.sh --lib cache          any cargo test arguments; after `--` test-binary arguments
#   scripts/test.sh mount_smoke -- --nocapture
#
# It installs what is missing (fuse3, Azurite under .tools/), starts Azurite on a free port on
# 127.0.0.1, exports AZBLOBFS_TEST_ENDPOINT for the tests, runs `cargo test --release`, and stops
# Azurite and lazily unmounts any mount the tests left, however it ends.
#
# Environment:
#   AZBLOBFS_TEST_THREADS  test threads per test binary (default 4: mount tests wait on I/O)
#   SKIP_CLIPPY=1          skip clippy (it is skipped anyway when test arguments are given)
#   KEEP_RUN_DIR=1         keep .run/run.* (Azurite log, mount temp dirs) even on success
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Split our arguments into cargo's and the test binaries' (after `--`).
cargo_args=()
harness_args=()
seen_dashdash=0
for arg in "$@"; do
    if [ $seen_dashdash -eq 0 ] && [ "$arg" = "--" ]; then
        seen_dashdash=1
    elif [ $seen_dashdash -eq 1 ]; then
        harness_args+=("$arg")
    elif [ ${#cargo_args[@]} -eq 0 ] && [[ "$arg" != -* ]] && [ -f "tests/$arg.rs" ]; then
        # `scripts/test.sh mount_smoke`: run that integration-test file.
        cargo_args+=(--test "$arg")
    else
        cargo_args+=("$arg")
    fi
done
case " ${harness_args[*]-} " in
*" --test-threads"*) ;;
*) harness_args+=("--test-threads=${AZBLOBFS_TEST_THREADS:-4}") ;;
esac

started=$SECONDS
ensure_prereqs
setup_run_dir

if [ $# -eq 0 ] && [ "${SKIP_CLIPPY:-0}" != 1 ]; then
    say "cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets --release -- -D warnings
fi

# Build everything before starting Azurite, so a long compile does not keep it idle.
say "cargo build (tests, release)"
cargo test --release --no-run ${cargo_args[@]+"${cargo_args[@]}"}

start_azurite

# Mount temp dirs go under the run dir, so the exit trap can find and detach any mount a
# crashed or hung test leaves behind.
mkdir -p "$RUN_DIR/tmp"
export TMPDIR="$RUN_DIR/tmp"

# --no-fail-fast: one failing test binary must not hide the results of the others.
cmd=(cargo test --release --no-fail-fast ${cargo_args[@]+"${cargo_args[@]}"} -- "${harness_args[@]}")
say "${cmd[*]}"
status=0
if [ -t 0 ]; then
    "${cmd[@]}" || status=$?
else
    # Non-interactive (CI): bound the run so a hung mount cannot eat the whole CI time limit.
    budget=$((${AZBLOBFS_TEST_BUDGET:-5100} - (SECONDS - started)))
    [ $budget -gt 300 ] || budget=300
    timeout -k 30 "$budget" "${cmd[@]}" || status=$?
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        warn "cargo test did not finish within ${budget} s and was stopped"
    fi
fi

if [ $status -ne 0 ]; then
    say "tests failed (exit $status); Azurite log: ${RUN_DIR#"$ROOT"/}/azurite.log"
fi
exit $status
