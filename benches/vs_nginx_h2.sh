#!/usr/bin/env bash
# ringway vs nginx terminating HTTP/2 over TLS, end to end on 127.0.0.1.
#
#   benches/vs_nginx_h2.sh                       # both parts, h2load -D 10, 3 rounds, 10,000 idle
#   QUICK=1 benches/vs_nginx_h2.sh               # smoke: -D 3, one round, 2,000 idle
#   PARTS=throughput ROUNDS=5 SKIP_BUILD=1 benches/vs_nginx_h2.sh
#
# The setup of benches/vs_nginx_tls.sh with HTTP/2 on the client side: one backend (nginx, one
# worker, plain HTTP/1.1; ORIGIN as there: tiny = `return 200 "hello\n"` from memory, the
# default; tiny-file = a 6-byte static file; index = the 616-byte static file), and in front of
# it, each with one worker and the same ECDSA P-256 certificate for localhost (openssl):
#   nginx    TLS 1.2/1.3, `listen ... ssl http2` (`http2 on;` from nginx 1.25), upstream
#            keepalive 1024, the forwarding headers ringway adds by contract (NGINX_PARITY=1),
#            keepalive_timeout 600s (which is also its HTTP/2 idle timeout)  https://localhost:18181
#   ringway  workers = 1, listen_https (ALPN offers h2 and http/1.1), one API onto the
#            backend, client_idle_timeout_ms = 600000                        https://localhost:18183
# Both keep the HTTP/2 defaults that matter here alike: 128 concurrent streams per connection.
# Backend and proxies on CPU SERVER_CPU (1), the clients on CLIENT_CPU (0).
#
# PARTS (default "throughput idle"):
#   throughput  ROUNDS rounds; in each, for each load, both proxies one after the other (the
#               order alternates by round, so drift hits both alike):
#                 h2-c64-m10    h2load -c64 -m10 -t1 -D DURATION  (64 connections x 10 streams)
#                 h2-c256-m1    h2load -c256 -m1 -t1 -D DURATION  (256 connections x 1 stream)
#               req/s (h2load's), mean request time, and the proxy's CPU per request
#               (utime+stime of the proxy's process tree, /proc, over the h2load run, divided
#               by the requests that succeeded). Medians. Targets (PASS/FAIL printed, the
#               script does not fail on them): ringway >= 1.3x nginx's req/s and ringway's CPU
#               per request <= 0.7x nginx's.
#               Then one round of HTTP/1.1 over the same listeners, the method of
#               vs_nginx_tls.sh's keepalive-64 row (wrk -t1 -c64 -d DURATION, no ALPN, so
#               HTTP/1.1): ringway's HTTPS HTTP/1.1 number next to nginx's, so a regression of
#               the plain path shows against that script's results in benches/README.md.
#   idle        memory per idle HTTP/2 connection: each proxy started afresh, one at a time;
#               benches/vs_nginx/idle_h2_client.py opens IDLE_CONNS TLS connections (ALPN h2
#               only, a full handshake each, CONCURRENCY at a time), one GET each through to
#               the backend, then holds them idle; VmRSS of the process that holds them
#               (ringway; nginx's worker) is read before, SETTLE s after the last answer,
#               and SETTLE s after the clients left. (after - before) / held connections.
#
# Environment:
#   QUICK=1            DURATION=3 ROUNDS=1 IDLE_CONNS=2000 (unless those are set)
#   DURATION=10        seconds per h2load / wrk run (a trailing "s" is accepted)
#   ROUNDS=3
#   PARTS="throughput idle"
#   ORIGIN=tiny        tiny | tiny-file | index (see above)
#   IDLE_CONNS=10000   CONCURRENCY=200   SETTLE=6
#   SKIP_BUILD=1  KEEP_TMP=1  NGINX_PARITY=0  RINGWAY=path  NGINX=path
#   BACKEND_PORT=18180 NGINX_PORT=18181 RINGWAY_PORT=18183 (ringway's unused plain listener:
#   RINGWAY_PORT + 100)  SERVER_CPU=1 CLIENT_CPU=0
# Prints markdown (the setup, the tables, the verdicts) on stdout; progress on stderr.
# Needs nginx (with the http_v2 module, as Debian's), h2load (Debian: nghttp2-client), wrk,
# curl (with HTTP/2), openssl, python3 with the `h2` package (pip install h2), taskset.
set -euo pipefail

BACKEND_PORT=${BACKEND_PORT:-18180}
NGINX_PORT=${NGINX_PORT:-18181}
RINGWAY_PORT=${RINGWAY_PORT:-18183}
# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-3}
    ROUNDS=${ROUNDS:-1}
    IDLE_CONNS=${IDLE_CONNS:-2000}
fi
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-200}
SETTLE=${SETTLE:-6}
PARTS=${PARTS:-throughput idle}
ORIGIN=${ORIGIN:-tiny}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be a positive integer"
case $ORIGIN in tiny | tiny-file | index) ;; *) die "unknown ORIGIN '$ORIGIN' (tiny tiny-file index)" ;; esac
for p in $PARTS; do
    case $p in throughput | idle) ;; *) die "unknown part '$p' (throughput idle)" ;; esac
done
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

TARGETS="nginx ringway"
need_tools nginx h2load curl openssl taskset pgrep getconf timeout
has_part throughput && need_tools wrk
if has_part idle; then
    need_tools python3
    python3 -c 'import h2' 2>/dev/null || die "python3 has no h2 package (pip install h2)"
fi
curl -V | grep -qw HTTP2 || die "curl has no HTTP/2 support"
CLK_TCK=$(getconf CLK_TCK)
getent ahosts localhost | awk '{ print $1; exit }' | grep -qx 127.0.0.1 ||
    die "localhost must resolve to 127.0.0.1 first (h2load and wrk connect to the first address)"

cd "$REPO_DIR"
build_ringway_if_needed
bench_init vs-nginx-h2
T=$BENCH_TMP
mkdir -p "$T/out" "$T/tls" "$T/ringway"
if has_part idle; then
    ((NOFILE >= IDLE_CONNS + 512)) ||
        die "open files limit $NOFILE is too low for $IDLE_CONNS connections (run as root, or raise the hard limit)"
fi

make_tls_cert "$T/tls"
CA=$T/tls/cert.pem

write_backend_conf "$T/backend"
case $ORIGIN in
tiny) BENCH_PATH=/hello INDEX=$T/backend/hello.expected ;;
tiny-file) BENCH_PATH=/hello.txt INDEX=$T/backend/html/hello.txt ;;
index) BENCH_PATH=/index.html INDEX=$T/backend/html/index.html ;;
esac
start_nginx backend "$T/backend" "$BACKEND_PORT"

# nginx: lib.sh's proxy configuration, TLS as vs_nginx_tls.sh, plus HTTP/2 on that listener.
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p')
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }
write_nginx_proxy_conf "$T/nginx"
nginx_conf_tls "$T/nginx" "$T/tls"
if version_ge "$NGINX_VERSION" 1.25.1; then
    sed -i "s|listen 127.0.0.1:$NGINX_PORT ssl backlog=4096;|&\n        http2 on;|" "$T/nginx/conf/nginx.conf"
    NGINX_H2="listen 127.0.0.1:$NGINX_PORT ssl backlog=4096; http2 on;"
else
    sed -i "s|listen 127.0.0.1:$NGINX_PORT ssl backlog=4096;|listen 127.0.0.1:$NGINX_PORT ssl http2 backlog=4096;|" "$T/nginx/conf/nginx.conf"
    NGINX_H2="listen 127.0.0.1:$NGINX_PORT ssl http2 backlog=4096;"
fi
if ! version_ge "$NGINX_VERSION" 1.19.7; then
    # Before 1.19.7 HTTP/2 had its own idle timeout and request cap.
    sed -i "s|keepalive_timeout 600s;|&\n    http2_idle_timeout 600s;\n    http2_max_requests 1000000;|" "$T/nginx/conf/nginx.conf"
fi
grep -q "http2" "$T/nginx/conf/nginx.conf" || die "could not turn HTTP/2 on in $T/nginx/conf/nginx.conf"

write_ringway_conf "$T/ringway/ringway.toml" "client_idle_timeout_ms = 600000" "$T/tls"

declare -A PID PORT
PORT[nginx]=$NGINX_PORT
PORT[ringway]=$RINGWAY_PORT

start_target() {
    case $1 in
    nginx)
        start_nginx nginx "$T/nginx" "$NGINX_PORT"
        PID[nginx]=$LAST_PID
        ;;
    ringway)
        start_ringway "$T/ringway/ringway.toml" "$T/ringway"
        PID[ringway]=$LAST_PID
        ;;
    esac
}

# stop_target NAME: SIGTERM to the proxy (nginx: its master), wait for it and its children.
stop_target() {
    local pid=${PID[$1]} all i left p
    all="$pid $(children "$pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        left=0
        for p in $all; do alive "$p" && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for p in $all; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null || true
    log "$1: stopped"
}

# preflight_h2 NAME PORT: GET BENCH_PATH over HTTP/2 (curl --http2, ALPN) answers 200 with
# the origin's body, and HTTP/2 was what got negotiated.
preflight_h2() {
    local name=$1 port=$2 body=$T/out/preflight-$1 v
    v=$(curl -sS -m 3 --http2 --cacert "$CA" --resolve "$TLS_NAME:$port:127.0.0.1" -o "$body" \
        -w '%{http_code} %{http_version}' "https://$TLS_NAME:$port$BENCH_PATH" 2>"$body.err") || true
    if [[ $v == "200 2" ]] && cmp -s "$body" "$INDEX"; then
        log "$name: preflight over HTTP/2 -> 200, body matches"
        return 0
    fi
    log "$name: preflight over HTTP/2 failed: '$v' $(tr '\n' ' ' <"$body.err")"
    return 1
}

# The stats of a proxy: the nginx worker for RSS (the master holds no connection).
rss_pid() {
    if [[ $1 == nginx ]]; then
        local w
        w=$(children "${PID[nginx]}")
        [[ $(wc -w <<<"$w") == 1 ]] || die "nginx: expected one worker, got: $w"
        echo "$w"
    else
        echo "${PID[ringway]}"
    fi
}

REV=$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown)
NGINX_V=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
H2LOAD_V=$(h2load --version 2>&1 | head -n1)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

echo "## HTTP/2: ringway vs nginx ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "ringway $REV (workers = 1) vs $NGINX_V (worker_processes 1); $H2LOAD_V; $(nproc) CPUs ($CPU_MODEL);" \
    "proxies + backend on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; ECDSA P-256, TLS 1.3;" \
    "GET $BENCH_PATH (ORIGIN=$ORIGIN); load average at start $LOAD_START."
echo
echo "| | nginx | ringway |"
echo "|---|---|---|"
echo "| listener | \`$NGINX_H2\` + \`ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;\` | \`listen_https = [\"127.0.0.1:$RINGWAY_PORT\"]\` + \`[[certificates]]\` (ALPN h2, http/1.1) |"
echo "| workers | \`worker_processes 1;\` | \`workers = 1\` |"
echo "| upstream | \`keepalive 1024;\` HTTP/1.1, \`proxy_set_header Connection \"\";\` | \`keepalive = 1024\` |"
echo "| forwarding headers | Host, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Api-RequestId (sent and returned) $([[ ${NGINX_PARITY:-1} == 1 ]] || echo '(off: NGINX_PARITY=0)') | the same, by contract |"
echo "| idle timeout | \`keepalive_timeout 600s;\` (HTTP/2's idle timeout too) | \`client_idle_timeout_ms = 600000\` |"
echo "| concurrent streams | 128 (default) | 128 (default \`h2_max_concurrent_streams\`) |"
echo

# ---------------------------------------------------------------------------------------------
if has_part throughput; then
    for t in $TARGETS; do start_target "$t"; done
    for t in $TARGETS; do
        preflight_h2 "$t" "${PORT[$t]}" || die "$t: preflight over HTTP/2 failed"
        preflight "$t-h1" "${PORT[$t]}" "$INDEX" "$CA" || die "$t: preflight over HTTPS failed"
    done

    # run_h2load TARGET CONNS STREAMS OUT
    run_h2load() {
        local t=$1 c=$2 m=$3 out=$4
        timeout --foreground $((DURATION + 60)) taskset -c "$CLIENT_CPU" \
            h2load -c"$c" -m"$m" -t1 -D "$DURATION" \
            "https://$TLS_NAME:${PORT[$t]}$BENCH_PATH" >"$out" 2>&1 || true
    }
    RES=$T/throughput.tsv
    : >"$RES"
    RUNS="h2-c64-m10 h2-c256-m1"
    for ((r = 1; r <= ROUNDS; r++)); do
        order=$TARGETS
        ((r % 2 == 0)) && order=$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' ')
        for run in $RUNS; do
            c=${run#h2-c}
            c=${c%-m*}
            m=${run##*-m}
            for t in $order; do
                out=$T/out/$t-$run-r$r.txt
                p0=$(tree_ticks "${PID[$t]}")
                run_h2load "$t" "$c" "$m" "$out"
                p1=$(tree_ticks "${PID[$t]}")
                rps=$(sed -nE 's/^finished in [^,]*, ([0-9.]+) req\/s.*/\1/p' "$out")
                ok=$(sed -nE 's/^requests: .* ([0-9]+) succeeded.*/\1/p' "$out")
                bad=$(sed -nE 's/^requests: .* ([0-9]+) failed, ([0-9]+) errored, ([0-9]+) timeout.*/\1 \2 \3/p' "$out" |
                    awk '{ print $1 + $2 + $3 }')
                non2xx=$(sed -nE 's/^status codes: [0-9]+ 2xx, ([0-9]+) 3xx, ([0-9]+) 4xx, ([0-9]+) 5xx.*/\1 \2 \3/p' "$out" |
                    awk '{ print $1 + $2 + $3 }')
                # "time for request:  min  max  mean  sd  +/- sd", each with its unit (us, ms, s)
                mean=$(awk '/^time for request:/ {
                    v = $6; u = v; sub(/^[0-9.]+/, "", u); v += 0
                    printf "%.3f", (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v; exit }' "$out")
                proto=$(sed -nE 's/^Application protocol: (.*)/\1/p' "$out")
                if [[ -z $rps || -z $ok ]]; then
                    log "$t $run #$r: no result from h2load: $(tail -n 3 "$out" | tr '\n' ' ')"
                    rps=0 ok=0 bad=-1
                fi
                [[ $proto == h2 ]] || log "$t $run #$r: h2load says application protocol '$proto'"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$run" "$rps" "$ok" "$((p1 - p0))" \
                    "${bad:-0}" "${non2xx:-0}" "${mean:-?}" "${proto:-?}" >>"$RES"
                log "$t $run #$r: $rps req/s, $ok ok, ${bad:-?} failed, $((p1 - p0)) ticks, mean $mean, $proto"
            done
        done
    done

    # One round of HTTP/1.1 over TLS, vs_nginx_tls.sh's keepalive-64 method.
    H1=$T/h1.tsv
    : >"$H1"
    for t in ringway nginx; do
        out=$T/out/$t-h1-c64.txt
        p0=$(tree_ticks "${PID[$t]}")
        timeout --foreground $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
            wrk -t1 -c64 -d"${DURATION}s" --timeout 2s -s "$BENCH_DIR/report.lua" \
            "https://$TLS_NAME:${PORT[$t]}$BENCH_PATH" >"$out" 2>&1 || true
        p1=$(tree_ticks "${PID[$t]}")
        line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p50_us=-1 p99_us=-1 status=0")
        declare -A kv=()
        for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${kv[requests]}" "${kv[duration_us]}" "${kv[p50_us]}" \
            "${kv[p99_us]}" "$((p1 - p0))" "$((${kv[status]} + ${kv[connect]:-0} + ${kv[read]:-0} + ${kv[write]:-0} + ${kv[timeout]:-0}))" >>"$H1"
        log "$t h1-c64: $((${kv[requests]} * 1000000 / ${kv[duration_us]})) req/s, p50 ${kv[p50_us]} µs"
        unset kv
    done
    for t in $TARGETS; do stop_target "$t"; done

    echo "### Throughput over HTTP/2"
    echo
    echo "\`h2load -c64 -m10 -t1 -D $DURATION https://localhost:PORT$BENCH_PATH\` (h2-c64-m10) and" \
        "\`h2load -c256 -m1 -t1 -D $DURATION ...\` (h2-c256-m1), h2load pinned to CPU $CLIENT_CPU;" \
        "$ROUNDS rounds, the proxies alternating (order reversed every other round), medians." \
        "Proxy CPU: utime+stime of the proxy's processes (nginx: master + worker) over the h2load run," \
        "per succeeded request (CLK_TCK $CLK_TCK)."
    echo
    awk -F'\t' -v clk="$CLK_TCK" -v rounds="$ROUNDS" "$AWK_STATS"'
    {
        k = $1 SUBSEP $2
        add(rps, k, $3); if ($4 > 0) add(cpu, k, $5 * 1e6 / clk / $4)
        add(mean, k, $8 + 0); add(each, k, sprintf("%.0f", $3))
        err[k] += $6; non[k] += $7; proto[k] = $9
    }
    function verdict(ok) { return ok ? "PASS" : "FAIL" }
    END {
        print "| run | target | req/s (median) | req/s per round | mean request ms | proxy CPU µs/req | failed | non-2xx | protocol | ringway/nginx req/s | ringway/nginx CPU/req |"
        print "|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|"
        n = split("h2-c64-m10 h2-c256-m1", R, " ")
        for (i = 1; i <= n; i++) for (j = 1; j <= 2; j++) {
            t = (j == 1) ? "nginx" : "ringway"; k = t SUBSEP R[i]
            if (!(k in rps)) continue
            rr = "—"; ru = "—"; e = each[k]; sub(/^ +/, "", e); gsub(/ +/, ", ", e)
            if (t == "ringway") {
                kn = "nginx" SUBSEP R[i]
                qr[i] = median(rps[k]) / median(rps[kn]); qu[i] = median(cpu[k]) / median(cpu[kn])
                rr = sprintf("%.2f", qr[i]); ru = sprintf("%.2f", qu[i])
            }
            printf "| %s | %s | %.0f | %s | %.2f | %.1f | %d | %d | %s | %s | %s |\n", R[i], t, median(rps[k]), e, median(mean[k]), median(cpu[k]), err[k], non[k], proto[k], rr, ru
        }
        print ""
        print "| target | h2-c64-m10 | h2-c256-m1 |"
        print "|---|---|---|"
        printf "| ringway req/s >= 1.3x nginx | %s (%.2fx) | %s (%.2fx) |\n", verdict(qr[1] >= 1.3), qr[1], verdict(qr[2] >= 1.3), qr[2]
        printf "| ringway CPU/request <= 0.7x nginx | %s (%.2fx) | %s (%.2fx) |\n", verdict(qu[1] <= 0.7), qu[1], verdict(qu[2] <= 0.7), qu[2]
    }' "$RES"
    echo
    echo "### HTTP/1.1 over the same HTTPS listeners (regression check)"
    echo
    echo "\`wrk -t1 -c64 -d${DURATION}s --timeout 2s -s benches/vs_nginx/report.lua https://localhost:PORT$BENCH_PATH\`" \
        "(no ALPN: HTTP/1.1), one round, ringway then nginx: the method of vs_nginx_tls.sh's keepalive-64 row" \
        "(compare its ringway/nginx ratios in benches/README.md, measured without h2 in ALPN)."
    echo
    awk -F'\t' -v clk="$CLK_TCK" '
    { rps[$1] = $2 * 1e6 / $3; p50[$1] = $4; p99[$1] = $5; cpu[$1] = ($2 > 0) ? $6 * 1e6 / clk / $2 : 0; err[$1] = $7 }
    END {
        print "| run | target | req/s | p50 µs | p99 µs | proxy CPU µs/req | errors | ringway/nginx req/s | ringway/nginx CPU |"
        print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
        printf "| h1-keepalive-64 | nginx | %.0f | %.0f | %.0f | %.1f | %d | — | — |\n", rps["nginx"], p50["nginx"], p99["nginx"], cpu["nginx"], err["nginx"]
        printf "| h1-keepalive-64 | ringway | %.0f | %.0f | %.0f | %.1f | %d | %.2f | %.2f |\n", rps["ringway"], p50["ringway"], p99["ringway"], cpu["ringway"], err["ringway"], (rps["nginx"] > 0) ? rps["ringway"] / rps["nginx"] : 0, (cpu["nginx"] > 0) ? cpu["ringway"] / cpu["nginx"] : 0
    }' "$H1"
    echo
fi

# ---------------------------------------------------------------------------------------------
if has_part idle; then
    ROWS=()
    declare -A PER=()
    for t in ringway nginx; do
        start_target "$t"
        preflight_h2 "$t" "${PORT[$t]}" || die "$t: preflight over HTTP/2 failed"
        pid=$(rss_pid "$t")
        sleep 1
        rss0=$(rss_kb "$pid") fd0=$(fd_count "$pid")
        log "$t: before: VmRSS $rss0 kB, $fd0 fds (pid $pid)"
        out=$T/out/idle-$t.out release=$T/release-$t
        taskset -c "$CLIENT_CPU" python3 "$BENCH_DIR/idle_h2_client.py" --port "${PORT[$t]}" \
            -n "$IDLE_CONNS" --concurrency "$CONCURRENCY" --path "$BENCH_PATH" \
            --server-name "$TLS_NAME" --cafile "$CA" --release-file "$release" --hold-max 600 \
            </dev/null >"$out" 2>"$T/out/idle-$t.err" &
        cpid=$!
        BENCH_PIDS+=("$cpid")
        limit=$(((IDLE_CONNS / CONCURRENCY + 1) * 20 + 60))
        for ((i = 0; i < limit * 5; i++)); do
            grep -q '^READY ' "$out" && break
            alive "$cpid" || break
            sleep 0.2
        done
        ready=$(grep -m1 '^READY ' "$out" || true)
        if [[ -z $ready ]]; then
            log "$t: the client did not finish: $(tail -n 5 "$T/out/idle-$t.err" | tr '\n' ' ')"
            kill -TERM "$cpid" 2>/dev/null || true
            ROWS+=("| $t | $IDLE_CONNS | client did not finish | | | | | | | |")
            stop_target "$t"
            continue
        fi
        log "$t: $ready"
        sleep "$SETTLE"
        rss1=$(rss_kb "$pid") fd1=$(fd_count "$pid")
        log "$t: after: VmRSS $rss1 kB, $fd1 fds"
        touch "$release"
        for ((i = 0; i < 150; i++)); do
            grep -q '^DONE ' "$out" && break
            alive "$cpid" || break
            sleep 0.2
        done
        doneline=$(grep -m1 '^DONE ' "$out" || true)
        for ((i = 0; i < 50; i++)); do alive "$cpid" || break; sleep 0.2; done
        log "$t: ${doneline:-client gave no DONE line}"
        sleep "$SETTLE"
        rss2=$(rss_kb "$pid")
        log "$t: after the clients left: VmRSS $rss2 kB"
        stop_target "$t"

        ok=$(sed -E 's/.* ok=([0-9]+).*/\1/' <<<"$ready")
        held=$(sed -E 's/.* held=([0-9]+).*/\1/' <<<"$ready")
        errs=$(sed -E 's/.* non200=(\{[^ ]*\}) errors=(\{[^ ]*\}).*/\1 \2/' <<<"$ready")
        still=$(sed -nE 's/.* still_open=([0-9]+).*/\1/p' <<<"$doneline")
        delta=$((rss1 - rss0))
        per=$(awk -v d="$delta" -v n="$held" 'BEGIN { if (n > 0) printf "%.2f", d / n; else print "—" }')
        PER[$t]=$per
        ROWS+=("| $t | $IDLE_CONNS | $ok | $held | ${still:-?} | $(awk -v a="$rss0" -v b="$rss1" 'BEGIN { printf "%.1f → %.1f", a / 1024, b / 1024 }') | $(awk -v d="$delta" 'BEGIN { printf "%.1f", d / 1024 }') | $per | $fd0 → $fd1 | $(awk -v a="$rss2" 'BEGIN { printf "%.1f", a / 1024 }') |")
        [[ $errs == '{} {}' ]] || log "$t: non-200 and errors: $errs"
    done

    echo "### Memory per idle HTTP/2 connection"
    echo
    echo "\`python3 benches/vs_nginx/idle_h2_client.py -n $IDLE_CONNS --concurrency $CONCURRENCY --path $BENCH_PATH\`" \
        "(pinned to CPU $CLIENT_CPU): TLS 1.3 with ALPN h2 only, a full handshake per connection, the preface," \
        "SETTINGS and one GET each through to the backend, then idle; each proxy started afresh and" \
        "measured alone. VmRSS of ringway / of the nginx worker, read $SETTLE s after the last answer."
    echo
    echo "| target | connections | got 200 | held open | still open at release | VmRSS MiB before → after | Δ MiB | Δ KiB per held connection | fds before → after | VmRSS MiB after they left |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do echo "$row"; done
    echo
    awk -v r="${PER[ringway]:-}" -v n="${PER[nginx]:-}" 'BEGIN {
        if (r != "" && n != "" && r != "—" && n != "—" && n > 0) printf "ringway/nginx per idle HTTP/2 connection: %.2fx\n", r / n
    }'
    echo
fi
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
