#!/usr/bin/env bash
# ringway vs nginx terminating TLS, end to end on 127.0.0.1 (issue 8's benchmark).
#
#   benches/vs_nginx_tls.sh            # wrk -t1 -d10s, median of 3
#   QUICK=1 benches/vs_nginx_tls.sh    # smoke test: -d2s, one repetition
#
# One backend (nginx, one worker, over plain HTTP; ORIGIN picks what it answers, as in
# benches/vs_nginx.sh: tiny = `return 200 "hello\n"` from memory (default), tiny-file = a
# 6-byte static file, index = the 616-byte static file of the first runs), and in front of it,
# each with one worker and the same ECDSA P-256 certificate (made here with openssl):
#   nginx    TLS 1.2/1.3, HTTP/1.1, upstream keepalive 1024, the forwarding headers ringway
#            adds by contract (NGINX_PARITY=1)                     https://127.0.0.1:18081
#   ringway  workers = 1, listen_https, one API onto the backend   https://127.0.0.1:18082
# Backend and proxies on CPU 1, wrk on CPU 0. Two kinds of run:
#   keepalive   wrk -c{64,256}: requests over kept-alive TLS connections
#   handshake   wrk -c64 with `Connection: close`: every request on a new TLS connection
#               (a full handshake unless the client resumes; the rate is bounded by wrk's
#               own handshakes on its core, so compare proxy CPU per request)
# Prints a markdown table: req/s, p50/p99 µs, proxy CPU µs per request, ringway/nginx.
#
# Environment: QUICK=1, DURATION=10s, REPS=3, ORIGIN=tiny, SKIP_BUILD=1, KEEP_TMP=1, and the ports/CPUs of
# benches/vs_nginx/lib.sh. Needs nginx, wrk, curl, openssl, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

bench_durations 3
ORIGIN=${ORIGIN:-tiny}
case $ORIGIN in tiny | tiny-file | index) ;; *) die "unknown ORIGIN '$ORIGIN' (tiny tiny-file index)" ;; esac
TARGETS="nginx ringway"
need_tools nginx wrk curl openssl taskset pgrep getconf timeout
CLK_TCK=$(getconf CLK_TCK)

getent ahosts localhost | awk '{ print $1; exit }' | grep -qx 127.0.0.1 ||
    die "localhost must resolve to 127.0.0.1 first (wrk connects to the first address)"
cd "$REPO_DIR"
build_ringway_if_needed
bench_init vs-nginx-tls
T=$BENCH_TMP
mkdir -p "$T/wrk" "$T/tls" "$T/ringway"

# One ECDSA P-256 certificate for localhost (TLS_NAME), used by both proxies: wrk sends the
# URL's host as SNI, and localhost resolves to 127.0.0.1 here (checked above).
make_tls_cert "$T/tls"

write_backend_conf "$T/backend"
case $ORIGIN in
tiny) BENCH_PATH=/hello INDEX=$T/backend/hello.expected ;;
tiny-file) BENCH_PATH=/hello.txt INDEX=$T/backend/html/hello.txt ;;
index) BENCH_PATH=/index.html INDEX=$T/backend/html/index.html ;;
esac
start_nginx backend "$T/backend" "$BACKEND_PORT"

# nginx terminating TLS: the HTTP proxy configuration with an ssl listener.
write_nginx_proxy_conf "$T/nginx"
nginx_conf_tls "$T/nginx" "$T/tls"
start_nginx nginx "$T/nginx" "$NGINX_PORT"
NGINX_PID=$LAST_PID

write_ringway_conf "$T/ringway/ringway.toml" "" "$T/tls"
start_ringway "$T/ringway/ringway.toml" "$T/ringway"

declare -A PID PORT
PID[nginx]=$NGINX_PID
PID[ringway]=$LAST_PID
PORT[nginx]=$NGINX_PORT
PORT[ringway]=$RINGWAY_PORT

for t in $TARGETS; do
    preflight "$t" "${PORT[$t]}" "$INDEX" "$T/tls/cert.pem" || die "$t: preflight over TLS failed"
done
log "preflight: both proxies serve the file over TLS"

LUA=$BENCH_DIR/report.lua
# run_wrk TARGET CONNS MODE OUT
run_wrk() {
    local t=$1 c=$2 mode=$3 out=$4 secs=${DURATION%[smh]} args=()
    [[ $mode == handshake ]] && args+=(-H "Connection: close")
    timeout --foreground $((secs + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$c" -d"$DURATION" --timeout 2s -s "$LUA" "${args[@]}" \
        "https://localhost:${PORT[$t]}$BENCH_PATH" >"$out" 2>&1 || true
}

RESULTS=$T/results.tsv
: >"$RESULTS"
for run in "keepalive 64" "keepalive 256" "handshake 64"; do
    set -- $run
    mode=$1 c=$2
    for ((r = 1; r <= REPS; r++)); do
        for t in $TARGETS; do
            out=$T/wrk/$t-$mode-c$c-r$r.txt
            p0=$(tree_ticks "${PID[$t]}")
            run_wrk "$t" "$c" "$mode" "$out"
            p1=$(tree_ticks "${PID[$t]}")
            line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p50_us=-1 p99_us=-1 status=0")
            declare -A kv=()
            for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$mode-$c" "${kv[requests]}" "${kv[duration_us]}" \
                "${kv[p50_us]}" "${kv[p99_us]}" "$((p1 - p0))" "${kv[status]}" >>"$RESULTS"
            log "$t $mode -c$c #$r: $((${kv[requests]} * 1000000 / ${kv[duration_us]})) req/s, p50 ${kv[p50_us]} µs"
            unset kv
        done
    done
done

echo "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) vs $("$NGINX" -v 2>&1 | sed 's/^nginx version: //');" \
    "ECDSA P-256; GET $BENCH_PATH (ORIGIN=$ORIGIN); wrk -t1 -d$DURATION, median of $REPS; proxies + backend on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU."
echo
awk -F'\t' -v clk="$CLK_TCK" "$AWK_STATS"'
{
    k = $1 SUBSEP $2; runs[$2] = 1
    add(rps, k, $3 * 1e6 / $4); add(p50, k, $5); add(p99, k, $6)
    if ($3 > 0) add(cpu, k, $7 * 1e6 / clk / $3)
    err[k] += $8
}
END {
    print "| run | target | req/s | p50 µs | p99 µs | proxy CPU µs/req | errors | ringway/nginx req/s | ringway/nginx CPU |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    n = split("keepalive-64 keepalive-256 handshake-64", R, " ")
    for (i = 1; i <= n; i++) for (j = 1; j <= 2; j++) {
        t = (j == 1) ? "nginx" : "ringway"; k = t SUBSEP R[i]
        if (!(R[i] in runs)) continue
        r = median(rps[k]); u = median(cpu[k]); rr = "—"; ru = "—"
        if (t == "ringway") {
            kn = "nginx" SUBSEP R[i]
            rr = sprintf("%.2f", r / median(rps[kn])); ru = sprintf("%.2f", u / median(cpu[kn]))
        }
        printf "| %s | %s | %.0f | %.0f | %.0f | %.1f | %d | %s | %s |\n", R[i], t, r, median(p50[k]), median(p99[k]), u, err[k], rr, ru
    }
}' "$RESULTS"
