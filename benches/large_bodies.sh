#!/usr/bin/env bash
# Large bodies through ringway and nginx, end to end on 127.0.0.1 (issue 10, item 5).
#
#   benches/large_bodies.sh            # wrk -t1 -c16 -d10s, median of 3
#   QUICK=1 benches/large_bodies.sh    # smoke test: -d2s, one repetition
#
# One backend (nginx, one worker): GET /large.bin is a 1 MiB static file (sendfile), and
# POST /upload reads and discards the body (`return 200`: nginx discards a body it does not
# use by reading it). In front of it, each with one worker:
#   nginx    reverse proxy (twice: buffered in memory, and streaming; see below), upstream
#            keepalive 1024, the forwarding headers ringway adds by contract; nginx's
#            default buffers would spool a 1 MiB answer to a temp file, so both settings
#            keep bodies in memory; ringway is compared with the better one per run
#   ringway  workers = 1, one API onto the backend
# Backend and proxies on CPU 1, wrk on CPU 0. Two runs, each at CONNS connections:
#   download   GET /large.bin, 1 MiB answers
#   upload     POST /upload with a 1 MiB body (Content-Length), a 3-byte answer
# Prints a markdown table: MiB/s of bodies, req/s, p50/p99 ms, proxy CPU per MiB of body
# (ms), ringway/nginx.
#
# Environment: QUICK=1, DURATION=10s, REPS=3, CONNS=16, SIZE=1048576 (the body in bytes; the
# "MiB/s" and "per MiB" columns stay in MiB whatever the size), SKIP_BUILD=1, KEEP_TMP=1,
# RINGWAY=path (another build), and the ports/CPUs of benches/vs_nginx/lib.sh. Needs nginx,
# wrk, curl, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

bench_durations 3
CONNS=${CONNS:-16}
TARGETS="nginx nginx-stream ringway"
SIZE=${SIZE:-$((1024 * 1024))}
need_tools nginx wrk curl taskset pgrep getconf timeout cmp
CLK_TCK=$(getconf CLK_TCK)

cd "$REPO_DIR"
build_ringway_if_needed
bench_init large-bodies
T=$BENCH_TMP
mkdir -p "$T/wrk" "$T/ringway" "$T/backend/conf" "$T/backend/logs" "$T/backend/tmp" "$T/backend/html"

head -c "$SIZE" /dev/urandom >"$T/backend/html/large.bin"
{
    nginx_main_conf "$T/backend"
    echo "http {"
    nginx_http_common "$T/backend"
    cat <<EOF
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        server_name _;
        root $T/backend/html;
        location / { }
        location = /upload { default_type text/plain; return 200 "ok\\n"; }
    }
}
EOF
} >"$T/backend/conf/nginx.conf"
start_nginx backend "$T/backend" "$BACKEND_PORT"

# nginx twice, so that ringway meets nginx's better setting for each run:
#   nginx         buffered in memory: the whole request body is read first (a 2 MiB body
#                 buffer), the answer goes through 32 x 64 KiB buffers, never to a temp file
#   nginx-stream  streaming both ways: proxy_buffering off, proxy_request_buffering off,
#                 one 64 KiB buffer
NGINX_STREAM_PORT=$((NGINX_PORT + 10))
write_nginx_proxy_conf "$T/nginx"
sed -i 's|proxy_set_header Connection "";|proxy_set_header Connection "";\n            client_max_body_size 0;\n            client_body_buffer_size 2m;\n            proxy_buffer_size 64k;\n            proxy_buffers 32 64k;\n            proxy_busy_buffers_size 128k;\n            proxy_max_temp_file_size 0;|' \
    "$T/nginx/conf/nginx.conf"
grep -q 'proxy_buffers 32 64k' "$T/nginx/conf/nginx.conf" || die "could not set nginx's buffers"
start_nginx nginx "$T/nginx" "$NGINX_PORT"
NGINX_PID=$LAST_PID
write_nginx_proxy_conf "$T/nginx-stream"
sed -i -e "s|listen 127.0.0.1:$NGINX_PORT |listen 127.0.0.1:$NGINX_STREAM_PORT |" \
    -e 's|proxy_set_header Connection "";|proxy_set_header Connection "";\n            client_max_body_size 0;\n            proxy_buffering off;\n            proxy_request_buffering off;\n            proxy_buffer_size 64k;\n            proxy_buffers 4 64k;|' \
    "$T/nginx-stream/conf/nginx.conf"
grep -q 'proxy_request_buffering off' "$T/nginx-stream/conf/nginx.conf" || die "could not set nginx to stream"
start_nginx nginx-stream "$T/nginx-stream" "$NGINX_STREAM_PORT"
NGINX_STREAM_PID=$LAST_PID

write_ringway_conf "$T/ringway/ringway.toml" "max_body_bytes = $((4 * SIZE))"
# The shared config's API is GET only (SPEC default); the upload needs POST.
sed -i '0,/^path = "\/"$/s//path = "\/"\nmethod = "ANY"/' "$T/ringway/ringway.toml"
grep -q '^method = "ANY"' "$T/ringway/ringway.toml" || die "could not open the API to POST"
start_ringway "$T/ringway/ringway.toml" "$T/ringway"

declare -A PID PORT
PID[nginx]=$NGINX_PID
PID[ringway]=$LAST_PID
PID[nginx-stream]=$NGINX_STREAM_PID
PORT[nginx-stream]=$NGINX_STREAM_PORT
PORT[nginx]=$NGINX_PORT
PORT[ringway]=$RINGWAY_PORT

BENCH_PATH=/large.bin
for t in $TARGETS; do
    preflight "$t" "${PORT[$t]}" "$T/backend/html/large.bin" || die "$t: preflight download failed"
    code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' --data-binary @"$T/backend/html/large.bin" \
        -H 'Content-Type: application/octet-stream' "http://127.0.0.1:${PORT[$t]}/upload") || true
    [[ $code == 200 ]] || die "$t: preflight upload answered ${code:-nothing}"
done
log "preflight: every proxy passes $SIZE bytes both ways"

# The upload script: report.lua's done() plus a POST with a 1 MiB body.
UPLOAD_LUA=$T/upload.lua
{
    cat "$BENCH_DIR/report.lua"
    echo "wrk.method = \"POST\""
    echo "wrk.headers[\"Content-Type\"] = \"application/octet-stream\""
    echo "wrk.body = string.rep(\"x\", $SIZE)"
} >"$UPLOAD_LUA"

# run_wrk TARGET MODE OUT
run_wrk() {
    local t=$1 mode=$2 out=$3 secs=${DURATION%[smh]} lua=$BENCH_DIR/report.lua path=/large.bin
    [[ $mode == upload ]] && lua=$UPLOAD_LUA path=/upload
    timeout --foreground $((secs + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 5s -s "$lua" \
        "http://127.0.0.1:${PORT[$t]}$path" >"$out" 2>&1 || true
}

RESULTS=$T/results.tsv
: >"$RESULTS"
for mode in download upload; do
    for ((r = 1; r <= REPS; r++)); do
        order=$TARGETS
        ((r % 3 == 2)) && order="nginx-stream ringway nginx"
        ((r % 3 == 0)) && order="ringway nginx nginx-stream"
        for t in $order; do
            out=$T/wrk/$t-$mode-r$r.txt
            p0=$(tree_ticks "${PID[$t]}")
            run_wrk "$t" "$mode" "$out"
            p1=$(tree_ticks "${PID[$t]}")
            line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p50_us=-1 p99_us=-1 status=0 read=0")
            declare -A kv=()
            for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$mode" "${kv[requests]}" "${kv[duration_us]}" \
                "${kv[p50_us]}" "${kv[p99_us]}" "$((p1 - p0))" "$((${kv[status]} + ${kv[read]:-0} + ${kv[timeout]:-0}))" >>"$RESULTS"
            log "$t $mode #$r: $((${kv[requests]} * 1000000 / ${kv[duration_us]})) req/s, p50 ${kv[p50_us]} µs"
            unset kv
        done
    done
done

echo "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) vs $("$NGINX" -v 2>&1 | sed 's/^nginx version: //');" \
    "$SIZE-byte bodies; wrk -t1 -c$CONNS -d$DURATION, median of $REPS; proxies + backend on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU."
echo
awk -F'\t' -v clk="$CLK_TCK" -v size="$SIZE" "$AWK_STATS"'
{
    k = $1 SUBSEP $2; modes[$2] = 1
    add(rps, k, $3 * 1e6 / $4); add(p50, k, $5 / 1000); add(p99, k, $6 / 1000)
    if ($3 > 0) add(cpu, k, $7 * 1e3 / clk / ($3 * size / 1048576))
    err[k] += $8
}
END {
    print "| run | target | MiB/s | req/s | p50 ms | p99 ms | proxy CPU ms/MiB | errors | ringway/better nginx MiB/s | ringway/better nginx CPU |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    n = split("download upload", M, " ")
    split("nginx nginx-stream ringway", TT, " ")
    for (i = 1; i <= n; i++) for (j = 1; j <= 3; j++) {
        t = TT[j]; k = t SUBSEP M[i]
        if (!(M[i] in modes)) continue
        r = median(rps[k]); u = median(cpu[k]); rr = "—"; ru = "—"
        if (t == "ringway") {
            # the nginx setting with more MiB/s in this run
            kn = "nginx" SUBSEP M[i]; ks = "nginx-stream" SUBSEP M[i]
            if (median(rps[ks]) > median(rps[kn])) kn = ks
            rr = sprintf("%.2f", r / median(rps[kn])); ru = sprintf("%.2f", u / median(cpu[kn]))
        }
        printf "| %s | %s | %.0f | %.0f | %.2f | %.2f | %.3f | %d | %s | %s |\n", M[i], t, r * size / 1048576, r, median(p50[k]), median(p99[k]), u, err[k], rr, ru
    }
}' "$RESULTS"
