#!/usr/bin/env bash
# SIGHUP reload under measurement (issue 9, item 7), on 127.0.0.1:
#
#   benches/reload.sh              # 10,000 APIs; latency x7, dip 3x20 s, memory 100 reloads
#   QUICK=1 benches/reload.sh      # 1,000 APIs, shorter runs
#
# 1. Latency: a 10,000-API file (2 services: one of mock APIs with {param} segments, one of
#    VPC APIs to an nginx backend); each round rewrites the file with one new mock API
#    `/marker/N`, sends SIGHUP at t0 and polls it (curl, 1 ms apart) until it answers 200 at
#    t1. Reported: t1 - t0 (what a user sees), and the build time ringway logs itself
#    ("reloaded in X ms"), medians.
# 2. Dip: wrk -t1 -c64 through a VPC API (the nginx backend, pooled upstream), 20 s with no
#    reload, then 20 s with a SIGHUP every second (the same file, alternating with a copy that
#    adds an API, so every reload builds a new table); three pairs, alternating. Reported:
#    req/s, p99, non-2xx/3xx responses and socket errors of each, and the ratio.
# 3. Memory: VmRSS after start, after warming up, then after 100 reloads (0.1 s apart, with
#    traffic between them), and 3 s later.
# ringway runs with workers = 1, pinned with the backend to CPU 1; wrk on CPU 0.
#
# Environment: QUICK=1, APIS=10000, SKIP_BUILD=1, KEEP_TMP=1, RINGWAY=path, and the ports of
# benches/vs_nginx/lib.sh. Needs nginx, wrk, curl, python3, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

if [[ ${QUICK:-0} == 1 ]]; then
    APIS=${APIS:-1000}
    DIP_SECS=${DIP_SECS:-5}
    DIP_REPS=${DIP_REPS:-1}
    LAT_REPS=${LAT_REPS:-3}
fi
APIS=${APIS:-10000}
DIP_SECS=${DIP_SECS:-20}
DIP_REPS=${DIP_REPS:-3}
LAT_REPS=${LAT_REPS:-7}
need_tools nginx wrk curl python3 taskset pgrep
cd "$REPO_DIR"
build_ringway_if_needed
bench_init reload
T=$BENCH_TMP
mkdir -p "$T/ringway" "$T/wrk"

write_backend_conf "$T/backend"
start_nginx backend "$T/backend" "$BACKEND_PORT"

# gen FILE EXTRA_MARKER: the big configuration; with a marker, one more mock API.
gen() {
    python3 - "$1" "$APIS" "$RINGWAY_PORT" "$BACKEND_PORT" "${2:-}" <<'PY'
import sys
out, n, port, backend, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
w = []
w.append(f'[server]\nlisten_http = ["127.0.0.1:{port}"]\nadmin_listen = "off"\nworkers = 1\naccess_log = "off"\n')
w.append(f'[[upstreams]]\nname = "clb"\nurl = "http://127.0.0.1:{backend}"\nkeepalive = 1024\n')
w.append('[[services]]\nname = "mocks"\n')
for i in range(n // 2):
    w.append(f'[[services.apis]]\nname = "m{i}"\npath = "/m/{i}/{{id}}"\n'
             f'[[services.apis.params]]\nname = "id"\nlocation = "path"\ndata_type = "int"\n'
             f'[services.apis.backend]\ntype = "mock"\nmock_status = 200\nmock_body = "m{i}"\n')
if marker:
    w.append(f'[[services.apis]]\nname = "marker"\npath = "=/marker/{marker}"\n'
             f'[services.apis.backend]\ntype = "mock"\nmock_status = 200\nmock_body = "marker {marker}"\n')
w.append('[[services]]\nname = "vpc"\n')
for i in range(n - n // 2):
    w.append(f'[[services.apis]]\nname = "v{i}"\npath = "/v/{i}"\nmethod = "GET"\n'
             f'[services.apis.backend]\nupstream = "clb"\npath = "/index.html"\n')
open(out, "w").write("\n".join(w))
PY
}

CONF=$T/ringway/ringway.toml
gen "$CONF" ""
log "configuration: $APIS APIs, $(wc -c <"$CONF") bytes"
start_ringway "$CONF" "$T/ringway"
RPID=$LAST_PID
URL="http://127.0.0.1:$RINGWAY_PORT"
curl -fsS -o /dev/null "$URL/v/0" || die "ringway does not serve /v/0"
rss0=$(rss_kb "$RPID")

now_ns() { date +%s%N; }
reload_lines() { grep -c "reloaded in" "$T/ringway/ringway.stderr" 2>/dev/null || true; }

# 1. Latency.
lat=() build=()
for ((r = 1; r <= LAT_REPS; r++)); do
    gen "$CONF.new" "$r"
    mv "$CONF.new" "$CONF"
    before=$(reload_lines)
    t0=$(now_ns)
    kill -HUP "$RPID"
    until curl -fs -o /dev/null "$URL/marker/$r"; do sleep 0.001; done
    t1=$(now_ns)
    lat+=($(((t1 - t0) / 1000)))
    while (($(reload_lines) <= before)); do sleep 0.01; done
    build+=("$(grep "reloaded in" "$T/ringway/ringway.stderr" | tail -1 | sed -E 's/.*reloaded in ([0-9.]+) ms.*/\1/')")
    log "latency #$r: SIGHUP to serving $((lat[-1] / 1000)) ms (built in ${build[-1]} ms)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
lat_ms=$(awk -v u="$(median "${lat[@]}")" 'BEGIN { printf "%.1f", u / 1000 }')
build_ms=$(median "${build[@]}")

# swap FILE: the configuration becomes FILE at once (a reload never reads a half-written file).
swap() { cp "$1" "$CONF.tmp" && mv "$CONF.tmp" "$CONF"; }

# 2. Dip.
gen "$T/a.toml" "a"
gen "$T/b.toml" "b"
LUA=$BENCH_DIR/report.lua
run_wrk() { # OUT
    timeout --foreground $((DIP_SECS + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c64 -d"${DIP_SECS}s" --timeout 2s -s "$LUA" "$URL/v/1" >"$1" 2>&1 || true
}
: >"$T/dip.tsv"
for ((r = 1; r <= DIP_REPS; r++)); do
    for mode in steady reloading; do
        out=$T/wrk/$mode-$r.txt
        if [[ $mode == reloading ]]; then
            (
                for ((i = 0; i < DIP_SECS; i++)); do
                    sleep 1
                    if ((i % 2)); then swap "$T/a.toml"; else swap "$T/b.toml"; fi
                    kill -HUP "$RPID" 2>/dev/null || exit 0
                done
            ) &
            hup=$!
        fi
        run_wrk "$out"
        [[ $mode == reloading ]] && wait "$hup"
        line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p99_us=-1 status=0")
        errs=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
        declare -A kv=()
        for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
        rps=$((${kv[requests]} * 1000000 / ${kv[duration_us]}))
        printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$rps" "${kv[p99_us]}" "${kv[status]}" "${errs:-0}" >>"$T/dip.tsv"
        log "dip $mode #$r: $rps req/s, p99 ${kv[p99_us]} µs, non-2xx/3xx ${kv[status]}, socket errors ${errs:-0}"
        unset kv
    done
done
reloads_after_dip=$(reload_lines)

# 3. Memory.
rss1=$(rss_kb "$RPID")
for ((i = 1; i <= 100; i++)); do
    if ((i % 2)); then swap "$T/a.toml"; else swap "$T/b.toml"; fi
    kill -HUP "$RPID"
    sleep 0.1
    curl -fs -o /dev/null "$URL/v/$i" || true
done
sleep 3
curl -fs -o /dev/null "$URL/v/0" || true
rss2=$(rss_kb "$RPID")
failed=$(grep -c "reload failed" "$T/ringway/ringway.stderr" || true)

echo "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown), $APIS APIs ($(wc -c <"$CONF") bytes), workers = 1; $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| measure | value |"
echo "|---|---:|"
echo "| SIGHUP to the new config serving, median of $LAT_REPS | $lat_ms ms |"
echo "| build time ringway logs (parse, validate, compile), median | $build_ms ms |"
awk -F'\t' "$AWK_STATS"'
{ rps[$1] = rps[$1] " " $2; p99[$1] = p99[$1] " " $3; bad[$1] += $4; err[$1] += $5 }
END {
    printf "| wrk -c64 req/s, steady / with a SIGHUP every second (median) | %d / %d (%.3fx) |\n", median(rps["steady"]), median(rps["reloading"]), median(rps["reloading"]) / median(rps["steady"])
    printf "| p99 µs, steady / reloading (median) | %d / %d |\n", median(p99["steady"]), median(p99["reloading"])
    printf "| non-2xx/3xx + socket errors, steady / reloading (all runs) | %d / %d |\n", bad["steady"] + err["steady"], bad["reloading"] + err["reloading"]
}' "$T/dip.tsv"
echo "| VmRSS after start / after the dip runs ($reloads_after_dip reloads) / after 100 more reloads | $((rss0 / 1024)) / $((rss1 / 1024)) / $((rss2 / 1024)) MiB |"
echo "| reloads that failed | $failed |"
