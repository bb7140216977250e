#!/usr/bin/env bash
# The over-max_connections path stays cheap (issue 10, item 6): admitted keepalive clients
# under a flood of connection attempts past the limit, on 127.0.0.1.
#
#   benches/overload.sh            # wrk -t1 -c64 -d10s, 3 rounds
#   QUICK=1 benches/overload.sh    # smoke test: -d4s, one round, 5,000 attempts
#
# ringway (workers = 1, max_connections = 64) in front of the backend (nginx `return 200`),
# both on CPU 1; wrk -c64 on CPU 0 holds the 64 admitted keepalive connections (so every
# later connection is over the limit). Each round runs
# three cases, in rotating order:
#   baseline  wrk alone
#   control   wrk + benches/vs_nginx/flood.py making FLOOD_N connection attempts to a port
#             where nobody listens (refused by the kernel): the flood client's own cost on
#             CPU 0, which it shares with wrk
#   overload  wrk + the same flood against ringway: every attempt is past the limit, so
#             ringway accepts it, answers 503 and closes
# The flood starts 1 s into the wrk run and is bounded (FLOOD_N attempts). Prints a table:
# wrk req/s, p50/p99, ringway CPU, the flood's outcome, and overload/control (the target:
# admitted clients slowed by at most 10%).
#
# Environment: QUICK=1, DURATION=10s, REPS=3, FLOOD_N=20000, FLOOD_THREADS=8, SKIP_BUILD=1,
# KEEP_TMP=1, and the ports/CPUs of benches/vs_nginx/lib.sh. Needs nginx, wrk, curl,
# python3, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-4s}
    REPS=${REPS:-1}
    FLOOD_N=${FLOOD_N:-5000}
fi
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
FLOOD_N=${FLOOD_N:-20000}
FLOOD_THREADS=${FLOOD_THREADS:-8}
TARGETS=ringway
need_tools nginx wrk curl python3 taskset pgrep getconf timeout
CLK_TCK=$(getconf CLK_TCK)

cd "$REPO_DIR"
build_ringway_if_needed
bench_init overload
T=$BENCH_TMP
mkdir -p "$T/wrk" "$T/ringway"

write_backend_conf "$T/backend"
BENCH_PATH=/hello
start_nginx backend "$T/backend" "$BACKEND_PORT"
write_ringway_conf "$T/ringway/ringway.toml" "max_connections = 64"
start_ringway "$T/ringway/ringway.toml" "$T/ringway"
RW_PID=$LAST_PID
preflight ringway "$RINGWAY_PORT" "$T/backend/hello.expected" || die "ringway preflight failed"
CLOSED_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

SECS=${DURATION%[smh]}
LUA=$BENCH_DIR/report.lua
RESULTS=$T/results.tsv
: >"$RESULTS"
# run_case CASE ROUND
run_case() {
    local c=$1 r=$2 out=$T/wrk/$1-r$2.txt flood=$T/wrk/$1-r$2.flood p0 p1 fpid=
    p0=$(tree_ticks "$RW_PID")
    timeout --foreground $((SECS + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c64 -d"$DURATION" --timeout 2s -s "$LUA" "http://127.0.0.1:$RINGWAY_PORT$BENCH_PATH" \
        >"$out" 2>&1 &
    local wpid=$!
    echo "FLOOD none" >"$flood"
    if [[ $c != baseline ]]; then
        local port=$RINGWAY_PORT
        [[ $c == control ]] && port=$CLOSED_PORT
        sleep 1
        timeout --foreground $((SECS + 60)) taskset -c "$CLIENT_CPU" \
            python3 "$BENCH_DIR/flood.py" --port "$port" -n "$FLOOD_N" --threads "$FLOOD_THREADS" \
            >"$flood" 2>&1 &
        fpid=$!
    fi
    wait "$wpid" || true
    [[ -n $fpid ]] && { wait "$fpid" || true; }
    p1=$(tree_ticks "$RW_PID")
    local line
    line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p50_us=-1 p99_us=-1 status=0")
    declare -A kv=()
    for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$r" "${kv[requests]}" "${kv[duration_us]}" \
        "${kv[p50_us]}" "${kv[p99_us]}" "$((p1 - p0))" "$(head -n1 "$flood" | tr '\t' ' ')" \
        "$((${kv[connect]:-0} + ${kv[read]:-0} + ${kv[write]:-0} + ${kv[status]:-0} + ${kv[timeout]:-0}))" >>"$RESULTS"
    log "$c #$r: $((${kv[requests]} * 1000000 / ${kv[duration_us]})) req/s, p99 ${kv[p99_us]} µs; $(head -n1 "$flood")"
}

for ((r = 1; r <= REPS; r++)); do
    case $((r % 3)) in
    1) order="baseline control overload" ;;
    2) order="control overload baseline" ;;
    0) order="overload baseline control" ;;
    esac
    for c in $order; do run_case "$c" "$r"; done
done

echo "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown); max_connections = 64;" \
    "wrk -t1 -c64 -d$DURATION (admitted, keepalive), $REPS rounds; flood: $FLOOD_N attempts, $FLOOD_THREADS threads," \
    "on CPU $CLIENT_CPU with wrk; ringway + backend on CPU $SERVER_CPU."
echo
awk -F'\t' -v clk="$CLK_TCK" "$AWK_STATS"'
{
    add(rps, $1, $3 * 1e6 / $4); add(p50, $1, $5); add(p99, $1, $6); add(cpu, $1, $7 / clk)
    flood[$1] = $8; err[$1] += $9
}
END {
    print "| case | admitted req/s | p50 µs | p99 µs | wrk errors (all rounds) | ringway CPU s per run | flood (last round) |"
    print "|---|---:|---:|---:|---:|---:|---|"
    split("baseline control overload", C, " ")
    for (i = 1; i <= 3; i++) {
        c = C[i]
        printf "| %s | %.0f | %.0f | %.0f | %d | %.2f | %s |\n", c, median(rps[c]), median(p50[c]), median(p99[c]), err[c], median(cpu[c]), flood[c]
    }
    printf "\noverload/control admitted req/s: %.3f (target at least 0.90); overload/baseline: %.3f; p99 overload/control: %.2f\n",
        median(rps["overload"]) / median(rps["control"]), median(rps["overload"]) / median(rps["baseline"]),
        median(p99["overload"]) / median(p99["control"])
}' "$RESULTS"
