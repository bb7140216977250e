#!/usr/bin/env bash
# Traffic control (SPEC §8) end to end on 127.0.0.1: what a limit costs when it is never
# hit, how much memory many client IPs take, and how exactly limits and quotas count, on one
# host and across three instances sharing one Redis.
#
#   benches/traffic.sh                         # every part (about 5 minutes)
#   QUICK=1 benches/traffic.sh                 # smoke run (about 3 minutes)
#   PARTS="accuracy" SKIP_BUILD=1 benches/traffic.sh
#
# It builds ringway (cargo build --release) and starts, part by part (each part stops what
# it started before the next):
#   backend   127.0.0.1:18080  nginx, one worker, CPU SERVER_CPU (benches/vs_nginx/lib.sh):
#                              GET /hello.txt, a 6-byte static file (overhead part only)
#   ringway   127.0.0.1:18082, 18087, 18088 (PORTS) and admin listeners 18090, 18091,
#             18092 (ADMIN_PORTS)
#   redis     127.0.0.1:18379, or the next free port up to 18399 (REDIS_PORT): redis-server
#             --save '' --appendonly no --dir <temp dir>, pinned to REDIS_CPU (default
#             CLIENT_CPU: it shares the load generator's CPU, not the gateway's; REDIS_CPU=
#             leaves it unpinned)
#
# Parts (PARTS; they run in the order given):
#   overhead  The same API (workers = 1, pinned to SERVER_CPU with the backend; one upstream
#             with keepalive 1024) in three configurations, three ringway processes side by
#             side on the three PORTS: (a) no limit; (b) store = "local", a service limit
#             key = "service" and an API limit key = "ip", both requests = 1000000000 per
#             second (never hit); (c) the same limits with store = "redis". wrk -t1 -c64
#             -d DURATION (keep-alive) on CLIENT_CPU against each in turn, ROUNDS rounds, the
#             order rotated each round (a b c, b c a, c a b, ...) after a 1 s warm-up of
#             each. Reports the median req/s, ringway's CPU µs per request (utime+stime
#             from /proc, all its threads), non-2xx answers (must be 0) and the ratios b/a
#             and c/a against the targets: local >= 0.97, redis >= 0.93 (PASS/FAIL). For
#             (c) also the Redis commands per 1,000 requests (INFO commandstats) and
#             ringway_traffic_store_failures_total.
#   memory    ringway with proxy_protocol = true, workers = 1 on SERVER_CPU, one mock API
#             under an API limit key = "ip", 10 per second; benches/traffic/many_ips.py (on
#             CLIENT_CPU, MEM_CONCURRENCY connections at once) opens MEM_IPS connections,
#             each with a PROXY v1 header of a distinct source 10.x.y.z, one GET with
#             Connection: close, reads the answer, closes; then MEM_IPS more with new
#             addresses, MEM_BATCHES batches in all (the third shows the plateau: the table
#             is full after the first, and the second's eviction settles the allocator).
#             VmRSS at start (after one request) and after each batch, the time of each
#             batch, the answers (429s must be 0: each address sends one request), for each
#             of MEM_CASES: a max_keys value (100000 is the default) or "nolimit" (the same
#             API without the limit: what the connections alone leave behind).
#   accuracy  (i) one ringway, workers = 2, unpinned, store = "local", mock APIs: a service
#             limit of ACC_RATE per second, driven by wrk -t2 -c64 (unpinned) for
#             ACC_DURATION, far over the limit; then a service limit of ACC_RATE_MIN per
#             minute, driven the same way. Admitted = the 200s counted by ringway
#             (ringway_requests_total{code="200"} on /metrics, after minus before);
#             expected = ACC_RATE (the burst) + ACC_RATE x T for the per-second limit, T
#             being wrk's own measured duration, and ACC_RATE_MIN for the per-minute one
#             (a run shorter than the minute may take the whole window's allowance, no
#             more). (ii) three ringway instances, workers = 1 each, unpinned, one Redis,
#             the same per-second limit, three wrk -t1 -c32 started together, one per
#             instance: admitted summed over the three against the same expectation;
#             target within +-5%. Each table also counts ringway's 503s for the service
#             (a request whose store answer did not come in time gets 503 "rate limit
#             store unavailable"). (iii) a usage plan with max_requests = PLAN_QUOTA
#             (quota_period "total", no rate) on a key-pair API of the same three
#             instances: three wrk replaying one signed request (hmac-sha256 over
#             "x-date: <date>", signed once with openssl; valid for the 900 s clock-skew
#             window) for PLAN_DURATION; admitted (200s, summed, including one signed
#             preflight) must be <= PLAN_QUOTA (PASS/FAIL) and close to it.
#             store_failures counts ringway_traffic_store_failures_total: a Redis answer
#             later than redis_timeout_ms (50 ms) on a loaded machine makes an instance
#             count alone for a while, which shows as an overshoot.
#
# Prints markdown tables on stdout at the end, with the commands and the configuration
# excerpts used; progress and the processes' logs go to stderr and the temp dir. Every
# process started here is stopped on exit; every wait is bounded (timeout, loop counts).
#
# Environment:
#   QUICK=1              DURATION=2s, ACC_DURATION=5s, PLAN_DURATION=3s (unless those
#                        are set); the memory part is the same
#   PARTS="overhead memory accuracy"
#   DURATION=10s         wrk -d of each overhead run
#   ROUNDS=3             overhead rounds (the median is reported)
#   MEM_IPS=100000       addresses per batch (two batches)
#   MEM_BATCHES=3        batches of new addresses
#   MEM_CASES="100000 10000 nolimit"
#   MEM_CONCURRENCY=32   connections the memory client keeps open at once
#   ACC_RATE=500         per-second limit of the accuracy runs
#   ACC_RATE_MIN=3000    per-minute limit of accuracy (i)
#   ACC_DURATION=10s     wrk -d of each accuracy run (at most 50s: the per-minute case
#                        assumes a run shorter than its window)
#   PLAN_QUOTA=5000 PLAN_DURATION=5s
#   SKIP_BUILD=1         do not run cargo build --release
#   KEEP_TMP=1           keep the temp dir (configs, logs, raw wrk and client output)
#   RINGWAY=path         the binary (default $CARGO_TARGET_DIR or target, /release/ringway)
#   BACKEND_PORT=18080 PORTS="18082 18087 18088" ADMIN_PORTS="18090 18091 18092"
#   REDIS_PORT (default: the first free of 18379-18399) REDIS_CPU=$CLIENT_CPU
#   SERVER_CPU=1 CLIENT_CPU=0
#
# Needs: nginx, wrk, redis-server and redis-cli (Debian: apt-get update && apt-get install
# -y nginx wrk redis-server), curl, openssl, python3, taskset, getconf, cargo. Run it on a
# quiet machine with at least 2 CPUs.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=vs_nginx/lib.sh disable=SC1091
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-2s}
    ACC_DURATION=${ACC_DURATION:-5s}
    PLAN_DURATION=${PLAN_DURATION:-3s}
fi
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-overhead memory accuracy}
MEM_IPS=${MEM_IPS:-100000}
MEM_CASES=${MEM_CASES:-100000 10000 nolimit}
MEM_BATCHES=${MEM_BATCHES:-3}
MEM_CONCURRENCY=${MEM_CONCURRENCY:-32}
ACC_RATE=${ACC_RATE:-500}
ACC_RATE_MIN=${ACC_RATE_MIN:-3000}
ACC_DURATION=${ACC_DURATION:-10s}
PLAN_QUOTA=${PLAN_QUOTA:-5000}
PLAN_DURATION=${PLAN_DURATION:-5s}
read -r -a PORT_LIST <<<"${PORTS:-18082 18087 18088}"
read -r -a ADMIN_LIST <<<"${ADMIN_PORTS:-18090 18091 18092}"
REDIS_CPU=${REDIS_CPU-$CLIENT_CPU}
# shellcheck disable=SC2034 # read by build_ringway_if_needed
TARGETS=ringway

for p in $PARTS; do
    case $p in overhead | memory | accuracy) ;; *) die "unknown part '$p' (overhead memory accuracy)" ;; esac
done
for v in DURATION ACC_DURATION PLAN_DURATION; do
    [[ ${!v} =~ ^[1-9][0-9]*s?$ ]] || die "$v must be whole seconds, like 10s"
done
secs() { echo "${1%s}"; }
(($(secs "$ACC_DURATION") <= 50)) || die "ACC_DURATION must be at most 50s (the per-minute case)"
for v in ROUNDS MEM_IPS MEM_BATCHES MEM_CONCURRENCY ACC_RATE ACC_RATE_MIN PLAN_QUOTA; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
((MEM_IPS * MEM_BATCHES < 16777216)) || die "MEM_IPS x MEM_BATCHES must stay below 16777216 (the addresses 10.x.y.z)"
for c in $MEM_CASES; do
    [[ $c == nolimit || $c =~ ^[1-9][0-9]*$ ]] || die "MEM_CASES: '$c' is neither a number nor nolimit"
done
((${#PORT_LIST[@]} == 3 && ${#ADMIN_LIST[@]} == 3)) || die "PORTS and ADMIN_PORTS need three ports each"

need_tools nginx wrk curl taskset getconf timeout python3 openssl redis-server redis-cli
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
((NCPU >= 2)) || log "warning: $NCPU CPU(s); client and servers will share a CPU"
ALL_CPUS="0-$((NCPU - 1))"

cd "$REPO_DIR"
build_ringway_if_needed
[[ -x $RINGWAY ]] || die "no ringway binary at $RINGWAY (cargo build --release)"

bench_init traffic
T=$BENCH_TMP
REPORT=$T/report.md
: >"$REPORT"
report() { printf '%s\n' "$*" >>"$REPORT"; }

# ---------------------------------------------------------------------------------------
# Processes

# stop_pid PID: SIGTERM, at most 5 s of grace, then SIGKILL; forget it.
stop_pid() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "pid $pid still alive 5 s after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${BENCH_PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    BENCH_PIDS=("${keep[@]}")
}

# rw_start NAME CONF PORT CPUS: ringway with its logs in $T/NAME, pinned to CPUS. Sets
# LAST_PID.
rw_start() {
    local name=$1 conf=$2 port=$3 cpus=$4
    mkdir -p "$T/$name"
    RINGWAY_PORT=$port SERVER_CPU=$cpus start_ringway "$conf" "$T/$name"
}

REDIS_PID=
# redis_start: a fresh, empty Redis without persistence on REDIS_PORT.
redis_start() {
    [[ -z $REDIS_PID ]] || return 0
    local p pin=()
    if [[ -z ${REDIS_PORT:-} ]]; then
        for ((p = 18379; p <= 18399; p++)); do
            port_open "$p" || break
        done
        ((p <= 18399)) || die "no free port in 18379-18399 for redis; set REDIS_PORT"
        REDIS_PORT=$p
    fi
    port_free "$REDIS_PORT"
    mkdir -p "$T/redis"
    [[ -n $REDIS_CPU ]] && pin=(taskset -c "$REDIS_CPU")
    "${pin[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$T/redis" --daemonize no --logfile "$T/redis/redis.log" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT" "$REDIS_PID" redis "$T/redis/redis.log"
    log "redis: pid $REDIS_PID on 127.0.0.1:$REDIS_PORT (CPU ${REDIS_CPU:-any})"
}
redis_cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# redis_calls: the commands Redis has run (INFO stats total_commands_processed).
redis_calls() { redis_cli INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'; }
redis_where() { if [[ -n $REDIS_CPU ]]; then echo "pinned to CPU $REDIS_CPU"; else echo "unpinned"; fi; }

# ---------------------------------------------------------------------------------------
# wrk and /metrics

# run_wrk OUT CPUS ARGS...: wrk under a time bound, pinned to CPUS, output in OUT.
run_wrk() {
    local out=$1 cpus=$2 d
    shift 2
    d=$(printf '%s\n' "$@" | sed -n 's/^-d\([0-9]*\)s\{0,1\}$/\1/p' | tail -n1)
    timeout --foreground -k 5 "$((${d:-10} + 30))" taskset -c "$cpus" wrk "$@" >"$out" 2>&1 || {
        log "wrk failed ($*): $(tail -n 3 "$out" | tr '\n' ' ')"
        return 1
    }
}
# wrk_get OUT FIELD: rps | total | seconds | non2xx | errors (connect+read+write+timeout)
wrk_get() {
    awk -v f="$2" '
        /Requests\/sec:/ { rps = $2 }
        / requests in / {
            total = $1; s = $4; sub(/,$/, "", s)
            if (s ~ /ms$/) { sub(/ms$/, "", s); s = s / 1000 }
            else if (s ~ /m$/) { sub(/m$/, "", s); s = s * 60 }
            else { sub(/s$/, "", s) }
            secs = s
        }
        /Non-2xx or 3xx responses:/ { non = $NF }
        /Socket errors:/ { e = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i + 0 }
        END {
            if (f == "rps") print rps + 0
            else if (f == "total") print total + 0
            else if (f == "seconds") print secs + 0
            else if (f == "non2xx") print non + 0
            else print e + 0
        }' "$1"
}

# metric ADMIN_PORT NAME [LABEL_REGEX]: the sum of NAME's samples whose labels match.
metric() {
    local body
    body=$(curl -sS -m 3 "http://127.0.0.1:$1/metrics") || {
        echo 0
        return
    }
    awk -v n="$2" -v re="${3:-}" '
        { split($1, a, "{"); if (a[1] != n) next; if (re != "" && $1 !~ re) next; s += $NF }
        END { printf "%d\n", s }' <<<"$body"
}
# codes ADMIN_PORT SERVICE CODE
codes() { metric "$1" ringway_requests_total "service=\"$2\".*code=\"$3\""; }

# get_code URL [curl args]: the HTTP status of one GET (000 on failure).
get_code() {
    local url=$1
    shift
    curl -sS -m 3 -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }

# ---------------------------------------------------------------------------------------
# Configurations

# server_conf PORT ADMIN WORKERS [EXTRA]: the [server] table.
server_conf() {
    cat <<EOF
[server]
listen_http = ["127.0.0.1:$1"]
admin_listen = "127.0.0.1:$2"
workers = $3
access_log = "off"
${4:-}
EOF
}

# ovh_conf FILE PORT ADMIN MODE: the overhead API, MODE none | local | redis.
ovh_conf() {
    local file=$1 mode=$4 traffic='' slimit='' alimit=''
    case $mode in
    local) traffic=$'[traffic]\nstore = "local"' ;;
    redis) traffic=$'[traffic]\nstore = "redis"\nredis_url = "redis://127.0.0.1:'"$REDIS_PORT"$'/0"' ;;
    esac
    if [[ $mode != none ]]; then
        slimit=$'[[services.limits]]\nkey = "service"\nrequests = 1000000000\nper = "second"'
        alimit=$'[[services.apis.limits]]\nkey = "ip"\nrequests = 1000000000\nper = "second"'
    fi
    {
        server_conf "$2" "$3" 1
        cat <<EOF
$traffic

[[upstreams]]
name = "backend"
url = "http://127.0.0.1:$BACKEND_PORT"
keepalive = 1024

[[services]]
name = "ovh"
$slimit

[[services.apis]]
name = "all"
path = "/"
$alimit
[services.apis.backend]
type = "vpc"
upstream = "backend"
path = "/"
EOF
    } >"$file"
}

# ---------------------------------------------------------------------------------------
# Part 1: overhead of a limit that is never hit

part_overhead() {
    log "== overhead: no limit / local / redis, $ROUNDS rounds of wrk -t1 -c64 -d$DURATION"
    redis_start
    local dir=$T/overhead
    mkdir -p "$dir/wrk"
    write_backend_conf "$T/backend"
    start_nginx backend "$T/backend" "$BACKEND_PORT"
    local backend_pid=$LAST_PID
    BENCH_PATH=/hello.txt
    preflight backend "$BACKEND_PORT" "$T/backend/html/hello.txt" || die "the backend does not serve $BENCH_PATH"

    local -A opid oport oadmin
    local cfgs=(none local redis) i c
    for i in 0 1 2; do
        c=${cfgs[$i]}
        oport[$c]=${PORT_LIST[$i]}
        oadmin[$c]=${ADMIN_LIST[$i]}
        ovh_conf "$dir/$c.toml" "${oport[$c]}" "${oadmin[$c]}" "$c"
        rw_start "ovh-$c" "$dir/$c.toml" "${oport[$c]}" "$SERVER_CPU"
        opid[$c]=$LAST_PID
        preflight "ringway-$c" "${oport[$c]}" "$T/backend/html/hello.txt" || die "ringway ($c) does not serve $BENCH_PATH"
        if [[ $c != none ]]; then # the limits apply: their headers are on every answer
            curl -sS -m 3 -D - -o /dev/null "http://127.0.0.1:${oport[$c]}$BENCH_PATH" | grep -qi '^ratelimit-policy:' ||
                die "ringway ($c): no RateLimit-Policy header on GET $BENCH_PATH: are the limits applied?"
        fi
    done
    for c in "${cfgs[@]}"; do
        run_wrk "$dir/wrk/warmup-$c.txt" "$CLIENT_CPU" -t1 -c64 -d1s "http://127.0.0.1:${oport[$c]}$BENCH_PATH" || true
    done

    local r k order t0 t1 r0 r1 out rows=$dir/rows.txt
    : >"$rows"
    for ((r = 0; r < ROUNDS; r++)); do
        order=()
        for ((k = 0; k < 3; k++)); do order+=("${cfgs[$(((r + k) % 3))]}"); done
        log "round $((r + 1))/$ROUNDS: ${order[*]}"
        for c in "${order[@]}"; do
            out=$dir/wrk/$c-$r.txt
            t0=$(proc_ticks "${opid[$c]}")
            r0=$(redis_calls)
            run_wrk "$out" "$CLIENT_CPU" -t1 -c64 "-d$DURATION" "http://127.0.0.1:${oport[$c]}$BENCH_PATH" || die "wrk failed against $c"
            t1=$(proc_ticks "${opid[$c]}")
            r1=$(redis_calls)
            # config round rps total ticks non2xx errors redis_commands
            echo "$c $r $(wrk_get "$out" rps) $(wrk_get "$out" total) $((t1 - t0)) $(wrk_get "$out" non2xx) $(wrk_get "$out" errors) $((r1 - r0))" >>"$rows"
            log "  $c: $(wrk_get "$out" rps) req/s"
        done
    done
    local fail_local fail_redis up_redis
    fail_local=$(metric "${oadmin[local]}" ringway_traffic_store_failures_total)
    fail_redis=$(metric "${oadmin[redis]}" ringway_traffic_store_failures_total)
    up_redis=$(metric "${oadmin[redis]}" ringway_traffic_store_up)

    report "## Overhead of a limit that is never hit"
    report ""
    report "ringway workers = 1 and the backend (nginx, /hello.txt, 6 bytes) on CPU $SERVER_CPU; wrk on CPU $CLIENT_CPU; Redis $(redis_where). $ROUNDS rounds, order rotated each round; medians."
    report ""
    report '```'
    report "taskset -c $CLIENT_CPU wrk -t1 -c64 -d$DURATION http://127.0.0.1:PORT$BENCH_PATH"
    report '```'
    report ""
    report '```toml'
    report "# (b) local; (c) the same with: store = \"redis\", redis_url = \"redis://127.0.0.1:$REDIS_PORT/0\""
    report "$(sed -n '/^\[traffic\]/,/^$/p; /limits\]\]/,/^per/p' "$dir/local.toml")"
    report '```'
    report ""
    report "| config | req/s (median) | req/s per round | ringway CPU µs/req | non-2xx | socket errors | Redis commands / 1k req | store failures | ratio to (a) |"
    report "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    awk -v tck="$CLK_TCK" -v fl="$fail_local" -v fr="$fail_redis" "$AWK_STATS"'
        { add(rps, $1, $3); add(cpu, $1, ($4 > 0) ? $5 / tck * 1e6 / $4 : 0)
          pr[$1] = pr[$1] sprintf("%s%.0f", (pr[$1] == "") ? "" : ", ", $3)
          non[$1] += $6; err[$1] += $7; rc[$1] += $8; tot[$1] += $4 }
        END {
            base = median(rps["none"])
            split("none local redis", order, " ")
            name["none"] = "(a) no limit"; name["local"] = "(b) local store"; name["redis"] = "(c) redis store"
            for (i = 1; i <= 3; i++) {
                c = order[i]; m = median(rps[c])
                cmd = (c == "redis" && tot[c] > 0) ? sprintf("%.2f", rc[c] / tot[c] * 1000) : "-"
                f = (c == "local") ? fl : (c == "redis") ? fr : "-"
                printf "| %s | %.0f | %s | %.1f | %d | %d | %s | %s | %s |\n", name[c], m, pr[c], median(cpu[c]), non[c], err[c], cmd, f, (base > 0) ? sprintf("%.3f", m / base) : "-"
            }
        }' "$rows" >>"$REPORT"
    report ""
    awk "$AWK_STATS"'
        { add(rps, $1, $3) }
        END {
            a = median(rps["none"]); b = median(rps["local"]); c = median(rps["redis"])
            rb = (a > 0) ? b / a : 0; rc = (a > 0) ? c / a : 0
            printf "- local store, b/a = %.3f (target >= 0.97): **%s**\n", rb, (rb >= 0.97) ? "PASS" : "FAIL"
            printf "- redis store, c/a = %.3f (target >= 0.93): **%s**\n", rc, (rc >= 0.93) ? "PASS" : "FAIL"
        }' "$rows" >>"$REPORT"
    report "- Redis store up at the end: ${up_redis} (1 = yes); Redis commands count every command Redis ran during the run (INFO stats), the script's own INFO included."
    report ""

    for c in "${cfgs[@]}"; do stop_pid "${opid[$c]}"; done
    stop_pid "$backend_pid"
}

# ---------------------------------------------------------------------------------------
# Part 2: memory with many client IPs

mem_conf() {
    local file=$1 maxkeys=$2 limit='' traffic=''
    if [[ $maxkeys != nolimit ]]; then
        traffic=$'[traffic]\nstore = "local"\nmax_keys = '"$maxkeys"
        limit=$'[[services.apis.limits]]\nkey = "ip"\nrequests = 10\nper = "second"'
    fi
    {
        server_conf "${PORT_LIST[0]}" "${ADMIN_LIST[0]}" 1 "proxy_protocol = true"
        cat <<EOF
$traffic

[[services]]
name = "mem"

[[services.apis]]
name = "one"
path = "/"
$limit
[services.apis.backend]
type = "mock"
mock_body = "ok"
EOF
    } >"$file"
}

part_memory() {
    log "== memory: $MEM_BATCHES x $MEM_IPS distinct client IPs through PROXY v1, cases: $MEM_CASES"
    local dir=$T/memory case p port=${PORT_LIST[0]} c0 k rss=() jsons=() heads='' lines=''
    mkdir -p "$dir"
    for ((k = 1; k <= MEM_BATCHES; k++)); do
        heads+=" after $((k * MEM_IPS)) MiB |"
        lines+="---:|"
    done
    report "## Memory with many client IPs"
    report ""
    report "ringway workers = 1 on CPU $SERVER_CPU, proxy_protocol = true, one mock API with an API limit key = \"ip\", 10 per second. The client, on CPU $CLIENT_CPU, opens one connection per address (PROXY v1 header with a distinct 10.x.y.z source, one GET with Connection: close, read, close), $MEM_CONCURRENCY at a time, $MEM_IPS new addresses per batch, $MEM_BATCHES batches. VmRSS from /proc/PID/status, 0.5 s after each batch; the start is after one request. \"no limit\" is the same API without the limit: what the connections alone leave behind."
    report ""
    report '```'
    report "taskset -c $CLIENT_CPU python3 benches/traffic/many_ips.py $port $MEM_IPS --first 0 --concurrency $MEM_CONCURRENCY"
    report "taskset -c $CLIENT_CPU python3 benches/traffic/many_ips.py $port $MEM_IPS --first $MEM_IPS --concurrency $MEM_CONCURRENCY   # and so on"
    report '```'
    report ""
    report '```toml'
    report "$(mem_conf /dev/stdout 100000 | sed -n '/^proxy_protocol/p; /^\[traffic\]/,/^$/p; /limits\]\]/,/^per/p')"
    report '```'
    report ""
    report "| max_keys | VmRSS start MiB |$heads growth in the last batch MiB | seconds per batch (connections/s) | answers 200 | 429 | other / errors |"
    report "|---|---:|$lines---:|---|---:|---:|---:|"
    local bound=$((MEM_IPS / 500 + 90))
    for case in $MEM_CASES; do
        mem_conf "$dir/$case.toml" "$case"
        rw_start "mem-$case" "$dir/$case.toml" "$port" "$SERVER_CPU"
        p=$LAST_PID
        # One request through a PROXY header first (wait_port's probe connections carry
        # none; ringway closes them after header_timeout_ms).
        c0=$(taskset -c "$CLIENT_CPU" python3 "$BENCH_DIR/../traffic/many_ips.py" "$port" 1 --first 16777215 --timeout 3 || true)
        [[ $c0 == *'"200": 1'* ]] || die "memory: the preflight through PROXY v1 did not get 200: $c0 (log $T/mem-$case/ringway.stderr)"
        sleep 0.5
        rss=("$(rss_kb "$p")")
        jsons=()
        log "memory $case: start VmRSS ${rss[0]} kB"
        for ((k = 0; k < MEM_BATCHES; k++)); do
            timeout -k 5 "$bound" taskset -c "$CLIENT_CPU" python3 "$BENCH_DIR/../traffic/many_ips.py" "$port" "$MEM_IPS" \
                --first $((k * MEM_IPS)) --concurrency "$MEM_CONCURRENCY" >"$dir/$case-$k.json" ||
                die "memory: client batch $((k + 1)) failed ($dir/$case-$k.json)"
            sleep 0.5
            rss+=("$(rss_kb "$p")")
            jsons+=("$(cat "$dir/$case-$k.json")")
            log "memory $case: after batch $((k + 1)) VmRSS ${rss[k + 1]} kB ${jsons[k]}"
        done
        alive "$p" || die "memory: ringway exited (log $T/mem-$case/ringway.stderr)"
        python3 - "$case" "${rss[*]}" "${jsons[@]}" >>"$REPORT" <<'EOF'
import json, sys
case, rss, batches = sys.argv[1], [int(x) for x in sys.argv[2].split()], [json.loads(j) for j in sys.argv[3:]]
codes, errors = {}, 0
for j in batches:
    errors += j["errors"]
    for k, v in j["codes"].items():
        codes[k] = codes.get(k, 0) + v
ok, lim = codes.pop("200", 0), codes.pop("429", 0)
other = sum(codes.values()) + errors
mib = lambda kb: "%.1f" % (kb / 1024)
name = "no limit" if case == "nolimit" else f"{int(case):,}"
times = ", ".join("%.1f (%.0f)" % (j["seconds"], j["per_second"]) for j in batches)
print(f"| {name} | {mib(rss[0])} | {' | '.join(mib(r) for r in rss[1:])} | {(rss[-1] - rss[-2]) / 1024:+.1f} | "
      f"{times} | {ok} | {lim} | {other} |")
EOF
        stop_pid "$p"
    done
    report ""
}

# ---------------------------------------------------------------------------------------
# Part 3: accuracy

acc1_conf() {
    {
        server_conf "${PORT_LIST[0]}" "${ADMIN_LIST[0]}" 2
        cat <<EOF
[traffic]
store = "local"

[[services]]
name = "rps"
[[services.limits]]
key = "service"
requests = $ACC_RATE
per = "second"
[[services.apis]]
name = "rps"
path = "=/rps"
[services.apis.backend]
type = "mock"
mock_body = "ok"

[[services]]
name = "rpm"
[[services.limits]]
key = "service"
requests = $ACC_RATE_MIN
per = "minute"
[[services.apis]]
name = "rpm"
path = "=/rpm"
[services.apis.backend]
type = "mock"
mock_body = "ok"

[[services]]
name = "probe"
[[services.apis]]
name = "probe"
path = "=/probe"
[services.apis.backend]
type = "mock"
mock_body = "ok"
EOF
    } >"$1"
}

PLAN_ID=AKIDbench0001
PLAN_KEY=bench-secret-key-0001
fleet_conf() { # FILE INDEX
    {
        server_conf "${PORT_LIST[$2]}" "${ADMIN_LIST[$2]}" 1
        cat <<EOF
[traffic]
store = "redis"
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"

[[services]]
name = "fleet"
[[services.limits]]
key = "service"
requests = $ACC_RATE
per = "second"
[[services.apis]]
name = "fleet"
path = "=/fleet"
[services.apis.backend]
type = "mock"
mock_body = "ok"

[[services]]
name = "plan"
[[services.apis]]
name = "plan"
path = "=/plan"
auth = "key_pair"
[services.apis.backend]
type = "mock"
mock_body = "ok"

[[key_pairs]]
secret_id = "$PLAN_ID"
secret_key = "$PLAN_KEY"
services = ["plan"]

[[usage_plans]]
name = "bench"
max_requests = $PLAN_QUOTA
quota_period = "total"
secret_ids = ["$PLAN_ID"]
services = ["plan"]

[[services]]
name = "probe"
[[services.apis]]
name = "probe"
path = "=/probe"
[services.apis.backend]
type = "mock"
mock_body = "ok"
EOF
    } >"$1"
}

part_accuracy() {
    local dir=$T/accuracy admin=${ADMIN_LIST[0]} port=${PORT_LIST[0]} p out b4 b4n s w t e
    mkdir -p "$dir/wrk"
    local acc_s plan_s
    acc_s=$(secs "$ACC_DURATION")
    plan_s=$(secs "$PLAN_DURATION")

    # (i) one host, two workers, local store
    log "== accuracy (i): one ringway, workers = 2, $ACC_RATE/s and $ACC_RATE_MIN/min for $ACC_DURATION"
    acc1_conf "$dir/one.toml"
    rw_start acc-one "$dir/one.toml" "$port" "$ALL_CPUS"
    p=$LAST_PID
    [[ $(get_code "http://127.0.0.1:$port/probe") == 200 ]] || die "accuracy: GET /probe did not answer 200"
    report "## Accuracy"
    report ""
    report "Admitted = the 200s ringway counted (ringway_requests_total on /metrics, after minus before), refused = its 429s. Per-second limits: expected = requests (the burst) + requests x T, T = wrk's measured duration (for three wrk at once, the longest). Per-minute: a run shorter than the minute may use the window's requests, no more."
    report ""
    report "### (i) One host, workers = 2, store = \"local\""
    report ""
    report "ringway, wrk and everything else unpinned (CPUs $ALL_CPUS)."
    report ""
    report '```'
    report "wrk -t2 -c64 -d$ACC_DURATION http://127.0.0.1:$port/rps    # then /rpm"
    report '```'
    report ""
    report '```toml'
    report "$(sed -n '/^\[traffic\]/,/^$/p; /^\[\[services.limits\]\]/,/^per/p' "$dir/one.toml")"
    report '```'
    report ""
    report "| limit | T s | wrk req/s | admitted | refused (429) | 503 | other | expected | admitted / expected |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    local svc lim b4u u
    for svc in rps rpm; do
        sleep 1.2 # the per-second allowance is whole again after the probe
        b4=$(codes "$admin" "$svc" 200)
        b4n=$(codes "$admin" "$svc" 429)
        b4u=$(codes "$admin" "$svc" 503)
        out=$dir/wrk/one-$svc.txt
        run_wrk "$out" "$ALL_CPUS" -t2 -c64 "-d$ACC_DURATION" "http://127.0.0.1:$port/$svc" || die "wrk failed against /$svc"
        s=$(($(codes "$admin" "$svc" 200) - b4))
        w=$(($(codes "$admin" "$svc" 429) - b4n))
        u=$(($(codes "$admin" "$svc" 503) - b4u))
        t=$(wrk_get "$out" seconds)
        if [[ $svc == rps ]]; then
            lim="$ACC_RATE / second"
            e=$(awk -v r="$ACC_RATE" -v t="$t" 'BEGIN { printf "%.0f", r + r * t }')
        else
            lim="$ACC_RATE_MIN / minute"
            e=$ACC_RATE_MIN
        fi
        report "| $lim | $t | $(wrk_get "$out" rps) | $s | $w | $u | $(($(wrk_get "$out" total) - s - w - u)) | $e | $(ratio "$s" "$e") |"
        log "  $svc: admitted $s refused $w expected $e"
    done
    report ""
    report "503 is ringway's count of 503 answers for the service (\`rate limit store unavailable\` when the store's answer did not come in time); \"other\" is wrk's completed requests minus ringway's 200s, 429s and 503s: negative when ringway answered requests that wrk cut off at its deadline."
    report ""
    stop_pid "$p"

    # (ii) and (iii): three instances on one Redis
    log "== accuracy (ii)/(iii): three instances on one Redis"
    redis_start
    local -a fp
    local i
    for i in 0 1 2; do
        fleet_conf "$dir/fleet-$i.toml" "$i"
        rw_start "acc-fleet-$i" "$dir/fleet-$i.toml" "${PORT_LIST[$i]}" "$ALL_CPUS"
        fp[i]=$LAST_PID
        [[ $(get_code "http://127.0.0.1:${PORT_LIST[$i]}/probe") == 200 ]] || die "accuracy: instance $i: GET /probe did not answer 200"
    done

    # fleet_load NAME PATH SECONDS [wrk args]: three wrk -t1 -c32 at once, one per instance.
    fleet_load() {
        local name=$1 path=$2 d=$3 j wpids=()
        shift 3
        for j in 0 1 2; do
            run_wrk "$dir/wrk/$name-$j.txt" "$ALL_CPUS" -t1 -c32 "-d${d}s" "$@" "http://127.0.0.1:${PORT_LIST[$j]}$path" &
            wpids+=($!)
        done
        for j in "${wpids[@]}"; do wait "$j" || die "wrk failed in $name (see $dir/wrk/$name-*.txt)"; done
    }
    # fleet_sum SERVICE CODE | fleet_sum_metric NAME
    fleet_sum() {
        local j n=0
        for j in 0 1 2; do n=$((n + $(codes "${ADMIN_LIST[$j]}" "$1" "$2"))); done
        echo "$n"
    }
    fleet_metric() {
        local j n=0
        for j in 0 1 2; do n=$((n + $(metric "${ADMIN_LIST[$j]}" "$1"))); done
        echo "$n"
    }

    sleep 1.2
    local f0 f1 r0 r1 per_inst=() tmax=0 rps_sum=0 tot=0 b4u u
    f0=$(fleet_metric ringway_traffic_store_failures_total)
    r0=$(redis_calls)
    b4=$(fleet_sum fleet 200)
    b4n=$(fleet_sum fleet 429)
    b4u=$(fleet_sum fleet 503)
    local -a inst_b4
    for i in 0 1 2; do inst_b4[i]=$(codes "${ADMIN_LIST[$i]}" fleet 200); done
    fleet_load fleet /fleet "$acc_s"
    s=$(($(fleet_sum fleet 200) - b4))
    w=$(($(fleet_sum fleet 429) - b4n))
    u=$(($(fleet_sum fleet 503) - b4u))
    f1=$(fleet_metric ringway_traffic_store_failures_total)
    r1=$(redis_calls)
    for i in 0 1 2; do
        per_inst+=("$(($(codes "${ADMIN_LIST[$i]}" fleet 200) - inst_b4[i]))")
        t=$(wrk_get "$dir/wrk/fleet-$i.txt" seconds)
        tmax=$(awk -v a="$tmax" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
        rps_sum=$(awk -v a="$rps_sum" -v b="$(wrk_get "$dir/wrk/fleet-$i.txt" rps)" 'BEGIN { printf "%.0f", a + b }')
        tot=$((tot + $(wrk_get "$dir/wrk/fleet-$i.txt" total)))
    done
    e=$(awk -v r="$ACC_RATE" -v t="$tmax" 'BEGIN { printf "%.0f", r + r * t }')
    local q
    q=$(ratio "$s" "$e")
    report "### (ii) Three instances, one Redis, store = \"redis\""
    report ""
    report "Three ringway processes (workers = 1 each, unpinned) on ports ${PORT_LIST[*]}, Redis $(redis_where), three wrk started together, unpinned:"
    report ""
    report '```'
    report "wrk -t1 -c32 -d${acc_s}s http://127.0.0.1:PORT/fleet    # one per instance, at once"
    report '```'
    report ""
    report '```toml'
    report "$(sed -n '/^\[traffic\]/,/^$/p' "$dir/fleet-0.toml")"
    report "$(sed -n '/^\[\[services.limits\]\]/,/^per/p' "$dir/fleet-0.toml")"
    report '```'
    report ""
    report "| limit | T s | wrk req/s (sum) | admitted per instance | admitted | refused (429) | 503 | other | expected | admitted / expected | store failures | Redis commands |"
    report "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    report "| $ACC_RATE / second, key service | $tmax | $rps_sum | ${per_inst[*]} | $s | $w | $u | $((tot - s - w - u)) | $e | $q | $((f1 - f0)) | $((r1 - r0)) |"
    report ""
    report "- within +-5% of expected: **$(awk -v q="$q" 'BEGIN { print (q != "-" && q >= 0.95 && q <= 1.05) ? "PASS" : "FAIL" }')**"
    report ""
    log "  fleet: admitted $s (${per_inst[*]}) refused $w expected $e"

    # (iii) the usage-plan quota
    local xdate sig auth
    xdate=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
    sig=$(printf 'x-date: %s' "$xdate" | openssl dgst -sha256 -hmac "$PLAN_KEY" -binary | openssl base64 -A)
    auth="hmac id=\"$PLAN_ID\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"$sig\""
    local pre
    pre=$(get_code "http://127.0.0.1:${PORT_LIST[0]}/plan" -H "X-Date: $xdate" -H "Authorization: $auth")
    [[ $pre == 200 ]] || die "accuracy: the signed preflight GET /plan answered $pre, not 200"
    f0=$(fleet_metric ringway_traffic_store_failures_total)
    r0=$(redis_calls)
    log "== accuracy (iii): usage plan, max_requests = $PLAN_QUOTA, three instances for $PLAN_DURATION"
    fleet_load plan /plan "$plan_s" -H "X-Date: $xdate" -H "Authorization: $auth"
    sleep 1.5 # let leases go back before reading /usage
    s=$(fleet_sum plan 200)
    w=$(fleet_sum plan 429)
    u=$(fleet_sum plan 503)
    f1=$(fleet_metric ringway_traffic_store_failures_total)
    r1=$(redis_calls)
    local other401 used
    other401=$(fleet_sum plan 401)
    used=$(curl -sS -m 3 "http://127.0.0.1:${ADMIN_LIST[0]}/usage" | python3 -c 'import json,sys; p=json.load(sys.stdin)["plans"]; print(p[0]["used"] if p else "-")' 2>/dev/null || echo "-")
    per_inst=()
    for i in 0 1 2; do per_inst+=("$(codes "${ADMIN_LIST[$i]}" plan 200)"); done
    report "### (iii) Usage-plan quota shared by the three instances"
    report ""
    report "One signed request (hmac-sha256 over \`x-date: <date>\`, signed once with \`openssl dgst -sha256 -hmac KEY -binary | base64\`) replayed by three wrk at once, one per instance, for ${plan_s}s; admitted includes the one signed preflight."
    report ""
    report '```'
    report "wrk -t1 -c32 -d${plan_s}s -H 'X-Date: <date>' -H 'Authorization: hmac id=\"$PLAN_ID\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"<base64>\"' http://127.0.0.1:PORT/plan"
    report '```'
    report ""
    report '```toml'
    report "$(sed -n '/^\[\[usage_plans\]\]/,/^services/p' "$dir/fleet-0.toml")"
    report '```'
    report ""
    report "| quota | admitted per instance | admitted | refused (429) | 503 | 401 | /usage used | admitted / quota | store failures | Redis commands |"
    report "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    report "| $PLAN_QUOTA | ${per_inst[*]} | $s | $w | $u | $other401 | $used | $(ratio "$s" "$PLAN_QUOTA") | $((f1 - f0)) | $((r1 - r0)) |"
    report ""
    report "- admitted <= $PLAN_QUOTA: **$( ((s <= PLAN_QUOTA)) && echo PASS || echo FAIL)**; short of the quota by $((PLAN_QUOTA - s))"
    report ""
    log "  plan: admitted $s (${per_inst[*]}) refused $w used $used"
    for i in 0 1 2; do stop_pid "${fp[$i]}"; done
}

# ---------------------------------------------------------------------------------------

START=$(date +%s)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
for part in $PARTS; do
    "part_$part"
done
[[ -n $REDIS_PID ]] && stop_pid "$REDIS_PID"

{
    echo "# Traffic control benchmarks"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_DIR" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), $NCPU CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average at start $LOAD_AT_START; QUICK=${QUICK:-0}, $(($(date +%s) - START)) s."
    echo
    cat "$REPORT"
}
