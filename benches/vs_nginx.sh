#!/usr/bin/env bash
# ringway against every peer in one run: the origin direct, nginx, HAProxy (HTTP and TCP mode)
# and a monoio copy relay, end to end over HTTP/1.1 on 127.0.0.1.
#
#   benches/vs_nginx.sh            # full run: wrk -t1 -c{1,64,256} -d10s, 3 times each
#   QUICK=1 benches/vs_nginx.sh    # smoke test: -d2s, one repetition
#
# It builds ringway (cargo build --release) and benches/l4relay (a standalone crate), starts
#   backend      127.0.0.1:18080  the origin: nginx, one worker, answering (ORIGIN) 6 bytes
#                                 from memory, or a 6-byte or the 616-byte static file
#   nginx        127.0.0.1:18081  nginx, one worker, reverse proxy to the backend, upstream
#                                 keepalive 1024, HTTP/1.1 upstream
#   haproxy      127.0.0.1:18083  HAProxy, HTTP mode, one thread (nbthread 1), option
#                                 http-keep-alive, http-reuse always
#   haproxy-tcp  127.0.0.1:18084  HAProxy, TCP mode (L4: forwards bytes), one thread
#   l4relay      127.0.0.1:18085  benches/l4relay: one-thread monoio (io_uring) copy relay,
#                                 one origin connection per client connection (L4)
#   ringway      127.0.0.1:18082  workers = 1, one upstream (keepalive 1024), one API
#   ringway-b    127.0.0.1:18086  with RINGWAY_B=path only: a second ringway build, same
#                                 config, for A/B runs of a change (its rows sit beside
#                                 ringway's; the ratio lines stay ringway's)
# With NGINX_PARITY=1 (the default) nginx and HAProxy HTTP do the per-request work ringway
# does by contract (SPEC §3): Host kept, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, a
# request id sent upstream and returned. The two L4 targets do no HTTP at all: they are the
# floor an HTTP proxy is measured against.
# It pins the backend and every proxy to CPU 1 and wrk to CPU 0 (taskset), and runs wrk
# against each target, interleaved: for each connection count and repetition every target
# once, the order rotated by one each repetition, so drift hits all targets alike. It prints
# one markdown table on stdout:
#   req/s      median of the repetitions
#   p50, p99   wrk latency percentiles in microseconds (benches/vs_nginx/report.lua), median
#   proxy CPU  µs of CPU (utime+stime from /proc/PID/stat: master + workers for nginx, the one
#              process for HAProxy and l4relay) that the proxy spent per request, median;
#              CLK_TCK from getconf (usually 100, so a tick is 10 ms: short runs make this
#              coarse)
#   backend CPU  the same for the backend nginx
#   errors     wrk's error counters summed over the repetitions (status = answers >= 400)
#   ringway/nginx  ratio of the medians, req/s and p50, on the ringway rows
# then ratio lines, ringway ÷ peer per connection count (req/s, p50, p99, CPU per request):
# against nginx, against HAProxy HTTP, and against the better L4 floor (of haproxy-tcp and
# l4relay, the one with more req/s at that connection count).
# Progress and the targets' logs go to stderr and the temp dir; all processes are stopped on
# exit. A target whose tool is missing (haproxy not installed, l4relay not built) is skipped
# with a log line, and so is one whose preflight GET does not return 200 with the origin's
# body (their rows say so); FORCE=1 runs wrk against the latter anyway.
#
# Environment:
#   QUICK=1          DURATION=2s REPS=1 (unless those are set)
#   DURATION=10s     wrk -d per run
#   REPS=3           repetitions per (target, connections)
#   CONNS="1 64 256" connection counts (wrk -c; always -t1)
#   TARGETS="backend nginx haproxy haproxy-tcp l4relay ringway"
#   ORIGIN=tiny      what every request gets from the backend, which shares CPU 1 with the
#                    proxy, so a cheap origin lets the proxies' differences show:
#                    tiny       GET /hello, nginx `return 200 "hello\n"` (6 bytes from
#                               memory, no file I/O: the cheapest)
#                    tiny-file  GET /hello.txt, a 6-byte static file (open, fstat, sendfile
#                               per request; the setup of issue 10's first table)
#                    index      GET /index.html, the 616-byte static file of earlier runs
#   WARMUP=1s        one wrk -c256 run per target before measuring; 0 to skip
#   SKIP_BUILD=1     do not run cargo build --release (l4relay is still built if its binary
#                    is missing)
#   RINGWAY=path     the binary (default $CARGO_TARGET_DIR or target, /release/ringway)
#   RINGWAY_B=path   a second ringway binary, target ringway-b (added to TARGETS when set)
#   L4RELAY=path     the relay (default $CARGO_TARGET_DIR or target, /l4relay/release/l4relay)
#   HAPROXY=path     default: haproxy on PATH
#   NGINX_PARITY=0   plain nginx and HAProxy HTTP configs, without the forwarding headers and
#                    request id that ringway adds by contract (SPEC §3); default 1
#   FORCE=1          benchmark targets that failed the preflight
#   KEEP_TMP=1       keep the temp dir (configs, logs, raw wrk output)
#   BACKEND_PORT=18080 NGINX_PORT=18081 RINGWAY_PORT=18082 HAPROXY_PORT=18083
#   HAPROXY_TCP_PORT=18084 RELAY_PORT=18085 SERVER_CPU=1 CLIENT_CPU=0
#
# Needs: nginx, wrk and haproxy (Debian: apt-get update && apt-get install -y nginx wrk
# haproxy), curl, taskset, pgrep, getconf, cargo. Run it on a quiet machine with at least
# 2 CPUs.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

bench_durations 3
CONNS=${CONNS:-1 64 256}
ALL_TARGETS="backend nginx haproxy haproxy-tcp l4relay ringway ringway-b"
TARGETS=${TARGETS:-${ALL_TARGETS% ringway-b}}
if [[ -n ${RINGWAY_B:-} && " $TARGETS " != *" ringway-b "* ]]; then TARGETS+=" ringway-b"; fi
ORIGIN=${ORIGIN:-tiny}
WARMUP=${WARMUP:-1s}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION must look like 10s"
for t in $TARGETS; do
    [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' ($ALL_TARGETS)"
done
case $ORIGIN in tiny | tiny-file | index) ;; *) die "unknown ORIGIN '$ORIGIN' (tiny tiny-file index)" ;; esac

need_tools nginx wrk curl taskset pgrep getconf timeout
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
((NCPU >= 2)) || log "warning: $NCPU CPU(s); client and servers will share a CPU"

cd "$REPO_DIR"
build_ringway_if_needed

bench_init vs-nginx
T=$BENCH_TMP
mkdir -p "$T/wrk" "$T/haproxy" "$T/l4relay"

# The backend is always needed (the proxies sit in front of it).
write_backend_conf "$T/backend"
case $ORIGIN in
tiny) BENCH_PATH=/hello EXPECT=$T/backend/hello.expected ORIGIN_DESC='nginx `return 200`' ;;
tiny-file) BENCH_PATH=/hello.txt EXPECT=$T/backend/html/hello.txt ORIGIN_DESC="a static file" ;;
index) BENCH_PATH=/index.html EXPECT=$T/backend/html/index.html ORIGIN_DESC="a static file" ;;
esac
start_nginx backend "$T/backend" "$BACKEND_PORT"
BACKEND_PID=$LAST_PID
preflight backend "$BACKEND_PORT" "$EXPECT" || die "the backend does not serve $BENCH_PATH"

declare -A PID PORT OK WHY
PID[backend]=$BACKEND_PID
PORT[backend]=$BACKEND_PORT
PORT[nginx]=$NGINX_PORT
PORT[ringway]=$RINGWAY_PORT
PORT[haproxy]=$HAPROXY_PORT
PORT[haproxy-tcp]=$HAPROXY_TCP_PORT
PORT[l4relay]=$RELAY_PORT
PORT[ringway-b]=${RINGWAY_B_PORT:-18086}

for t in $TARGETS; do
    OK[$t]=0
    case $t in
    nginx)
        write_nginx_proxy_conf "$T/nginx"
        start_nginx nginx "$T/nginx" "$NGINX_PORT"
        PID[nginx]=$LAST_PID
        ;;
    haproxy | haproxy-tcp)
        if [[ ! -x $HAPROXY ]]; then
            WHY[$t]="haproxy not installed"
            log "$t: skipped: no haproxy at '$HAPROXY' (Debian: apt-get install -y haproxy)"
            continue
        fi
        mode=http
        [[ $t == haproxy-tcp ]] && mode=tcp
        write_haproxy_conf "$T/haproxy/$t.cfg" "$mode"
        start_haproxy "$t" "$T/haproxy/$t.cfg" "${PORT[$t]}" "$T/haproxy"
        PID[$t]=$LAST_PID
        ;;
    l4relay)
        if ! build_relay; then
            WHY[$t]="l4relay not built"
            log "$t: skipped: no binary at $L4RELAY (cargo build --release in benches/l4relay)"
            continue
        fi
        start_relay "$T/l4relay"
        PID[$t]=$LAST_PID
        ;;
    ringway)
        mkdir -p "$T/ringway"
        write_ringway_conf "$T/ringway/ringway.toml"
        start_ringway "$T/ringway/ringway.toml" "$T/ringway"
        PID[ringway]=$LAST_PID
        ;;
    ringway-b)
        [[ -x ${RINGWAY_B:-} ]] || die "ringway-b needs RINGWAY_B=path to a ringway binary"
        mkdir -p "$T/ringway-b"
        # The same helpers, pointed at the second binary and port for the moment.
        saved_bin=$RINGWAY saved_port=$RINGWAY_PORT
        RINGWAY=$RINGWAY_B RINGWAY_PORT=${PORT[ringway-b]}
        write_ringway_conf "$T/ringway-b/ringway.toml"
        start_ringway "$T/ringway-b/ringway.toml" "$T/ringway-b"
        RINGWAY=$saved_bin RINGWAY_PORT=$saved_port
        PID[ringway-b]=$LAST_PID
        ;;
    esac
    if [[ $t == backend ]] || preflight "$t" "${PORT[$t]}" "$EXPECT"; then
        OK[$t]=1
    elif [[ ${FORCE:-0} == 1 ]]; then
        log "$t: FORCE=1, benchmarking it anyway"
        OK[$t]=1
    else
        WHY[$t]="no 200 at preflight"
        log "$t: skipped (FORCE=1 to run wrk against it anyway)"
    fi
done

RUN=() # the targets measured, in TARGETS order
for t in $TARGETS; do ((OK[$t])) && RUN+=("$t"); done
((${#RUN[@]})) || die "no target to measure"

SECS=${DURATION%[smh]}
case $DURATION in *m) SECS=$((SECS * 60)) ;; *h) SECS=$((SECS * 3600)) ;; esac
LUA=$BENCH_DIR/report.lua

# run_wrk TARGET CONNS DURATION OUTFILE: wrk pinned to CLIENT_CPU, bounded by timeout.
run_wrk() {
    local secs=${3%[smh]}
    case $3 in *m) secs=$((secs * 60)) ;; *h) secs=$((secs * 3600)) ;; esac
    timeout --foreground $((secs + 30)) \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3" --timeout 2s -s "$LUA" \
        "http://127.0.0.1:${PORT[$1]}$BENCH_PATH" >"$4" 2>&1 || true
}

if [[ $WARMUP != 0 ]]; then
    for t in "${RUN[@]}"; do
        log "warm-up: $t, wrk -c256 -d$WARMUP"
        run_wrk "$t" 256 "$WARMUP" "$T/wrk/warmup-$t.txt"
    done
fi

RESULTS=$T/results.tsv
: >"$RESULTS"
nrun=${#RUN[@]}
total=$((nrun * REPS * $(wc -w <<<"$CONNS")))
log "measuring: $total runs of ${SECS}s (about $((total * (SECS + 1) / 60 + 1)) min)"

n=0
for c in $CONNS; do
    for ((r = 1; r <= REPS; r++)); do
        for ((i = 0; i < nrun; i++)); do
            # Repetition r starts r-1 places further along the list: no target always runs
            # first, or always right after the same one.
            t=${RUN[$(((i + r - 1) % nrun))]}
            n=$((n + 1))
            out=$T/wrk/$t-c$c-r$r.txt
            p0=-1 p1=-1
            [[ $t != backend ]] && p0=$(tree_ticks "${PID[$t]}")
            b0=$(tree_ticks "$BACKEND_PID")
            run_wrk "$t" "$c" "$DURATION" "$out"
            [[ $t != backend ]] && p1=$(tree_ticks "${PID[$t]}")
            b1=$(tree_ticks "$BACKEND_PID")
            line=$(grep -m1 '^RWBENCH ' "$out" || true)
            if [[ -z $line ]]; then
                log "[$n/$total] $t -c$c #$r: no result from wrk: $(tail -n 3 "$out" | tr '\n' ' ')"
                line="RWBENCH requests=0 duration_us=0 p50_us=-1 p99_us=-1 connect=0 read=0 write=0 status=0 timeout=0 wrkfail=1"
            fi
            # key=value pairs -> one TSV row
            declare -A kv=()
            for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
            pt=-1
            [[ $t != backend ]] && pt=$((p1 - p0))
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$t" "$c" "$r" "${kv[requests]}" "${kv[duration_us]}" "${kv[p50_us]}" "${kv[p99_us]}" \
                "${kv[connect]}" "${kv[read]}" "${kv[write]}" "${kv[status]}" "${kv[timeout]}" \
                "$pt" "$((b1 - b0))" "${kv[wrkfail]:-0}" >>"$RESULTS"
            rps=0
            ((${kv[duration_us]} > 0)) && rps=$((${kv[requests]} * 1000000 / ${kv[duration_us]}))
            log "[$n/$total] $t -c$c #$r: $rps req/s, p50 ${kv[p50_us]} µs, p99 ${kv[p99_us]} µs, errors c/r/w/s/t ${kv[connect]}/${kv[read]}/${kv[write]}/${kv[status]}/${kv[timeout]}"
            unset kv
        done
    done
done

# The table.
rw_rev=$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown)
peers="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
[[ -x $HAPROXY ]] && peers+=", HAProxy $("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 { print $3 }')"
echo "ringway $rw_rev vs $peers, $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}');" \
    "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') × $NCPU; backend + proxy on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU;" \
    "wrk -t1 -d$DURATION, median of $REPS; GET $BENCH_PATH (ORIGIN=$ORIGIN: $ORIGIN_DESC, $(wc -c <"$EXPECT") bytes); CLK_TCK $CLK_TCK."
echo
skipped=""
for t in $TARGETS; do ((OK[$t])) || skipped+="$t=${WHY[$t]:-skipped};"; done
awk -F'\t' -v clk="$CLK_TCK" -v conns="$CONNS" -v targets="$TARGETS" -v skipped="$skipped" "$AWK_STATS"'
{
    k = $1 SUBSEP $2
    runs[k]++
    if ($5 > 0) add(rps, k, $4 * 1e6 / $5); else add(rps, k, 0)
    if ($4 > 0) {
        add(p50, k, $6); add(p99, k, $7)
        if ($13 >= 0) add(pcpu, k, $13 * 1e6 / clk / $4)
        add(bcpu, k, $14 * 1e6 / clk / $4)
    }
    req[k] += $4; ec[k] += $8; er[k] += $9; ew[k] += $10; es[k] += $11; et[k] += $12; wf[k] += $15
}
function errs(k,    s, tot) {
    tot = ec[k] + er[k] + ew[k] + es[k] + et[k]
    s = ""
    if (ec[k]) s = s " connect " ec[k]
    if (er[k]) s = s " read " er[k]
    if (ew[k]) s = s " write " ew[k]
    if (es[k]) s = s " status " es[k]
    if (et[k]) s = s " timeout " et[k]
    if (wf[k]) s = s " wrk-failed " wf[k]
    if (req[k] == 0) s = s " no responses"
    if (s == "") return "0"
    return tot " (" substr(s, 2) ")"
}
function fmt(v, f) { return (v == "") ? "—" : sprintf(f, v) }
# ratio A / B of two medians, "—" when either is missing or B is 0
function ratio(a, b) { return (a == "" || b == "" || b + 0 <= 0 || a + 0 < 0) ? "—" : sprintf("%.2fx", a / b) }
# "c1 req/s 1.00x, p50 1.00x, p99 1.00x, CPU 1.00x; c64 ..." for ringway against peer P[c]
function ratios(P,    i, c, kr, kp, s) {
    s = ""
    for (i = 1; i <= nc; i++) {
        c = C[i]; kr = "ringway" SUBSEP c
        if (!(c in P) || !((P[c] SUBSEP c) in runs)) { s = s sprintf("%sc%s —", (s == "" ? "" : "; "), c); continue }
        kp = P[c] SUBSEP c
        s = s sprintf("%sc%s req/s %s, p50 %s, p99 %s, CPU/req %s", (s == "" ? "" : "; "), c,
            ratio(median(rps[kr]), median(rps[kp])), ratio(median(p50[kr]), median(p50[kp])),
            ratio(median(p99[kr]), median(p99[kp])), ratio(median(pcpu[kr]), median(pcpu[kp])))
    }
    return s
}
END {
    n = split(skipped, S, ";")
    for (i = 1; i <= n; i++) if (S[i] != "") { split(S[i], kvp, "="); why[kvp[1]] = kvp[2] }
    print "| conns | target | req/s | p50 µs | p99 µs | proxy CPU µs/req | backend CPU µs/req | errors | ringway/nginx req/s | ringway/nginx p50 |"
    print "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"
    nc = split(conns, C, " "); nt = split(targets, T, " ")
    for (i = 1; i <= nc; i++) for (j = 1; j <= nt; j++) {
        c = C[i]; t = T[j]; k = t SUBSEP c
        if (t in why) {
            printf "| %s | %s | skipped: %s | | | | | | | |\n", c, t, why[t]
            continue
        }
        if (!(k in runs)) continue
        r = median(rps[k]); a = median(p50[k]); b = median(p99[k])
        pc = (t == "backend") ? "—" : fmt(median(pcpu[k]), "%.1f")
        ratio_r = "—"; ratio_p = "—"
        if (t == "ringway") {
            kn = "nginx" SUBSEP c
            if (kn in runs) {
                nr = median(rps[kn]); np = median(p50[kn])
                if (nr > 0) ratio_r = sprintf("%.2f", r / nr)
                if (np > 0 && a != "") ratio_p = sprintf("%.2f", a / np)
            }
        }
        printf "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", c, t, r,
            fmt(a, "%.0f"), fmt(b, "%.0f"), pc, fmt(median(bcpu[k]), "%.1f"), errs(k), ratio_r, ratio_p
    }
    if (!(("ringway" SUBSEP C[1]) in runs)) exit
    # The ratio lines: ringway ÷ peer.
    floors = ""
    for (i = 1; i <= nc; i++) {
        c = C[i]; best = ""; bestr = -1
        for (f = 1; f <= 2; f++) {
            p = (f == 1) ? "haproxy-tcp" : "l4relay"
            if ((p SUBSEP c) in runs && median(rps[p SUBSEP c]) > bestr) { best = p; bestr = median(rps[p SUBSEP c]) }
        }
        if (best != "") { L4[c] = best; floors = floors (floors == "" ? "" : ", ") "c" c " " best }
        NG[c] = "nginx"; HA[c] = "haproxy"
    }
    print ""
    print "Ratios, ringway ÷ peer (req/s above 1 and p50, p99, CPU per request below 1 favour ringway):"
    print ""
    print "- vs nginx: " ratios(NG)
    print "- vs HAProxy HTTP: " ratios(HA)
    print "- vs the better L4 floor (" (floors == "" ? "none measured" : floors) "): " ratios(L4)
}' "$RESULTS"
