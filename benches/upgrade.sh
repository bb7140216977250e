#!/usr/bin/env bash
# Binary upgrades under keep-alive load, on 127.0.0.1: does a `run --upgrade-from` drop
# anything?
#
#   benches/upgrade.sh                 # wrk -c64 for 15 s, an upgrade every 3 s (4 upgrades)
#   UPGRADES=2 DURATION=8 benches/upgrade.sh
#
# An nginx backend (`return 200` from memory, GET /hello) on CPU 1 behind ringway (workers = 1, pinned
# with the backend, pid_file in the temp dir); wrk -t1 -c$CONNS on CPU 0 through a VPC API.
# Every UPGRADE_EVERY seconds a new ringway process is started with
# `run --upgrade-from <pid file>`: it binds beside the running one, serves, and tells it to
# hand over (SIGUSR2); the old one drains and exits. Prints wrk's totals: requests, non-2xx,
# socket errors (connect, read, write, timeout), and each old process's exit status.
#
# Environment: DURATION=15 (seconds), UPGRADES=4, CONNS=64, SKIP_BUILD=1, KEEP_TMP=1, and the
# ports/CPUs of benches/vs_nginx/lib.sh. Needs nginx, wrk, curl, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

DURATION=${DURATION:-15}
UPGRADES=${UPGRADES:-4}
CONNS=${CONNS:-64}
need_tools nginx wrk curl taskset pgrep
cd "$REPO_DIR"
build_ringway_if_needed
bench_init upgrade
T=$BENCH_TMP
mkdir -p "$T/ringway"

TARGETS=ringway
BENCH_PATH=/hello
write_backend_conf "$T/backend"
start_nginx backend "$T/backend" "$BACKEND_PORT"
write_ringway_conf "$T/ringway/ringway.toml" "pid_file = \"$T/ringway/ringway.pid\""
start_ringway "$T/ringway/ringway.toml" "$T/ringway"
preflight ringway "$RINGWAY_PORT" "$T/backend/hello.expected" || die "ringway preflight failed"

log "wrk -t1 -c$CONNS -d${DURATION}s through ringway; an upgrade every $((DURATION / (UPGRADES + 1))) s"
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$RINGWAY_PORT$BENCH_PATH" \
    >"$T/wrk.out" 2>&1 &
WRK=$!
BENCH_PIDS+=("$WRK")
every=$((DURATION / (UPGRADES + 1)))
statuses=()
for ((u = 1; u <= UPGRADES; u++)); do
    sleep "$every"
    old=$(cat "$T/ringway/ringway.pid")
    taskset -c "$SERVER_CPU" "$RINGWAY" run --config "$T/ringway/ringway.toml" \
        --upgrade-from "$T/ringway/ringway.pid" \
        </dev/null >"$T/ringway/ringway.$u.stdout" 2>"$T/ringway/ringway.$u.stderr" &
    BENCH_PIDS+=("$!")
    # The old process is not our child after the first round: poll for its exit (bounded).
    for ((i = 0; i < 100; i++)); do
        alive "$old" || break
        sleep 0.1
    done
    if alive "$old"; then
        statuses+=("upgrade $u: old pid $old still running after 10 s")
    else
        statuses+=("upgrade $u: old pid $old exited, new pid $(cat "$T/ringway/ringway.pid")")
    fi
done
wait "$WRK" || true
cat "$T/wrk.out"
printf '%s\n' "${statuses[@]}"
requests=$(awk '/requests in/ {print $1}' "$T/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$T/wrk.out")
sockerr=$(grep -o 'Socket errors:.*' "$T/wrk.out" || echo "Socket errors: none")
echo "ringway $(git rev-parse --short HEAD 2>/dev/null || echo '?'): $UPGRADES upgrades under wrk -c$CONNS for ${DURATION}s: $requests requests, non-2xx ${non2xx:-0}, $sockerr"
