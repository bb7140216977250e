#!/usr/bin/env bash
# Abusive clients against ringway and nginx, on 127.0.0.1: how available does each proxy stay
# to a well-behaved client while slow or greedy clients hold its connections?
#
#   benches/abuse.sh                   # 4 attacks x 2 proxies, 30 s each (about 6 minutes)
#   QUICK=1 benches/abuse.sh           # smoke run: 10 s each, 500 slow connections (3 min)
#   ATTACKS="slowloris fds" benches/abuse.sh
#
# One backend (nginx, one worker, on CPU 1): GET /hello (`return 200` from memory), GET
# /large.bin (a SLOWREAD_SIZE static file) and POST /upload, which reads the whole body
# before it answers (it proxies to itself: nginx buffers a request body before it connects
# upstream; a plain `return 200` answers at once and discards the body behind the answer).
# In front of it, one at a time and each started afresh for every attack, pinned to CPU 1
# with one worker each and their own defaults for timeouts:
#   ringway  workers = 1, one API for every method onto the backend, nothing tuned
#            (header_timeout_ms 10 s, client_idle_timeout_ms 60 s, max_connections 65536)
#   nginx    the reverse proxy of benches/vs_nginx/lib.sh (upstream keepalive 1024, the
#            forwarding headers), client_max_body_size 16m (ringway's max_body_bytes),
#            worker_connections 65536 (ringway's max_connections), worker_rlimit_nofile =
#            the process's limit, keepalive_timeout 600 s to clients and upstream (the
#            lib's); nginx's own defaults otherwise (client_header_timeout,
#            client_body_timeout and send_timeout 60 s; proxy_buffering on, so an answer
#            the client does not take is spooled to a temp file)
# Each proxy runs under `prlimit --nofile=L:L`: L is the script's own limit (bench_init)
# except for the descriptor attack, where it is FD_LIMIT.
#
# The attacks (on CPU 0), each measured for DURATION seconds at full strength, against each
# proxy in turn (the order alternates from one attack to the next):
#   slowloris  slowhttptest -H: SLOW_CONNS connections (SLOW_RATE new ones a second), each
#              sending a header line of up to 24 bytes every SLOW_INTERVAL s and never
#              ending the head. 5 s stays under any "no byte for 10 s" timeout, so only a
#              bound on the whole head stops it.
#   slowbody   slowhttptest -B: POST /upload with Content-Length 8192 on SLOW_CONNS
#              connections, up to 10 body bytes every SLOW_INTERVAL s (about 1 byte/s).
#   slowread   slowhttptest -X: SLOW_CONNS connections each asking for /large.bin three
#              times, pipelined (-k 3), with a receive buffer of 512-1024 bytes (-w/-y;
#              Linux raises it to its minimum, 2,304 bytes, about a 1 KiB window), reading
#              32 bytes every 5 s (-z/-n): practically nothing. A 616-byte answer would
#              fit in the kernel and test nothing; so would one 1 MiB answer, as over
#              loopback the proxy's send buffer to such a client grows to about 1.7 MB
#              (measured with `ss -tm`). Three 1 MiB answers do not: the proxy has to keep
#              the rest somewhere (memory, a temp file, or the backend connection) for
#              the whole attack.
#   fds        benches/vs_nginx/idle_client.py opens IDLE_CONNS (2 x FD_LIMIT) keep-alive
#              connections, one GET /hello on each, and holds them idle: past the proxy's
#              FD_LIMIT descriptors. Connections the proxy cannot take time out after 2 s
#              on the client (or are refused).
# slowhttptest gives up once the proxy has closed all its connections; the script starts it
# again (SLOW_CONNS more at SLOW_RATE) until the attack's time is up, as a persistent
# attacker would.
#
# Each run: a fresh proxy; benches/vs_nginx/probe.py (CPU 0, at nice -10 when root so that
# the attacker on the same CPU delays it less) starts and opens its keep-alive connection;
# the attack starts; once it is at full strength (slowhttptest: RAMP s, the time to open
# SLOW_CONNS at SLOW_RATE plus 2 s; the idle client: when it says READY, at most RAMP_MAX s)
# the probe measures for DURATION s while the attack goes on: GET /hello every
# PROBE_INTERVAL s on a fresh connection and every PROBE_INTERVAL s on the keep-alive one;
# a request not answered 200 within PROBE_TIMEOUT s failed (what it saw while the attack
# built up is counted apart). A sampler reads the proxy's descriptors (/proc/PID/fd), VmRSS
# (nginx: its worker) and its listen queue (ss) every 0.25 s. Then the attacker stops
# (slowhttptest by itself, RAMP + DURATION + 2 s after it started; the idle client when
# told), and one GET /hello on a fresh connection must answer within 2 s ("answers after";
# else it is retried for RECOVER_MAX s). Every process and wait is bounded (`timeout`, loop
# counts); bench_cleanup stops whatever is left.
#
# Prints a markdown table per (attack, proxy): attack connections open (the mean over the
# measured window and the most at once, from slowhttptest's CSVs; the idle client's held
# connections), how many of them the proxy closed (and slowhttptest's runs), well-behaved
# requests answered / failed and their p50 / p99 (fresh, keep-alive), the proxy's
# descriptors and VmRSS (at the start, most during the attack), its CPU seconds in the
# measured window, its new log lines during the attack, "answers after"; a note per run
# (failures by kind and by second, the ramp, the most connections in the listen queue); the
# proxy's new log lines by kind go to stderr. Then one verdict per attack: ringway at least
# as available as nginx, "yes" when ringway failed no more probe requests than nginx and
# answers after the attack if nginx does.
#
# Environment: QUICK=1, DURATION=30 (seconds per attack; QUICK 10), SLOW_CONNS=1000 (QUICK
# 500), SLOW_RATE=200, SLOW_INTERVAL=5, SLOWREAD_SIZE=1048576, FD_LIMIT=1024,
# IDLE_CONNS=2*FD_LIMIT, PROBE_INTERVAL=0.05, PROBE_TIMEOUT=2, RECOVER_MAX=15,
# ATTACKS="slowloris slowbody slowread fds", SKIP_BUILD=1, KEEP_TMP=1, RINGWAY=path (another
# build), and the ports/CPUs of benches/vs_nginx/lib.sh. Needs nginx, slowhttptest, curl,
# python3, taskset, prlimit, ss (apt-get install -y nginx slowhttptest curl python3
# util-linux iproute2).
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-10}
    SLOW_CONNS=${SLOW_CONNS:-500}
fi
DURATION=${DURATION:-30}
DURATION=${DURATION%s}
SLOW_CONNS=${SLOW_CONNS:-1000}
SLOW_RATE=${SLOW_RATE:-200}
SLOW_INTERVAL=${SLOW_INTERVAL:-5}
SLOWREAD_SIZE=${SLOWREAD_SIZE:-1048576}
FD_LIMIT=${FD_LIMIT:-1024}
IDLE_CONNS=${IDLE_CONNS:-$((2 * FD_LIMIT))}
PROBE_INTERVAL=${PROBE_INTERVAL:-0.05}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-2}
RECOVER_MAX=${RECOVER_MAX:-15}
ATTACKS=${ATTACKS:-slowloris slowbody slowread fds}
RAMP=$(((SLOW_CONNS + SLOW_RATE - 1) / SLOW_RATE + 2)) # slowhttptest's connections all open
RAMP_MAX=60                                             # at most this for the idle client's
TARGETS="ringway nginx"
BENCH_PATH=/hello
# The probe goes before the attacker on the CPU they share (root may raise a priority).
PROBE_NICE=()
((EUID == 0)) && PROBE_NICE=(nice -n -10)
for a in $ATTACKS; do
    case $a in slowloris | slowbody | slowread | fds) ;; *) die "unknown attack '$a' (slowloris slowbody slowread fds)" ;; esac
done
need_tools nginx slowhttptest curl python3 taskset prlimit pgrep getconf timeout ss
CLK_TCK=$(getconf CLK_TCK)

cd "$REPO_DIR"
build_ringway_if_needed
bench_init abuse
T=$BENCH_TMP
mkdir -p "$T/bin" "$T/attack" "$T/probe" "$T/samples" "$T/backend/conf" "$T/backend/logs" \
    "$T/backend/tmp" "$T/backend/html"

# The backend: nginx, normal limit, on CPU 1.
write_index "$T/backend/html"
head -c "$SLOWREAD_SIZE" /dev/urandom >"$T/backend/html/large.bin"
printf 'hello\n' >"$T/backend/hello.expected"
{
    nginx_main_conf "$T/backend"
    echo "http {"
    nginx_http_common "$T/backend"
    cat <<EOF
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        server_name _;
        root $T/backend/html;
        location / { }
        location = /hello { default_type text/plain; return 200 "hello\\n"; }
        # Reads the whole body first: the request is buffered, then proxied to /sink.
        location = /upload {
            client_max_body_size 16m;
            proxy_pass http://127.0.0.1:$BACKEND_PORT/sink;
        }
        location = /sink { default_type text/plain; return 200 "ok\\n"; }
    }
}
EOF
} >"$T/backend/conf/nginx.conf"
start_nginx backend "$T/backend" "$BACKEND_PORT"
code=$(printf 'x%.0s' $(seq 100) | curl -sS -m 5 -o /dev/null -w '%{http_code}' --data-binary @- \
    "http://127.0.0.1:$BACKEND_PORT/upload") || true
[[ $code == 200 ]] || die "backend: POST /upload answered ${code:-nothing}"

# Each proxy starts through a wrapper that sets its descriptor limit (soft and hard, so it
# cannot raise it) from PROXY_NOFILE; exec all the way down, so $! is still the proxy.
REAL_NGINX=$NGINX REAL_RINGWAY=$RINGWAY
[[ -x $REAL_RINGWAY ]] || die "no ringway binary at $REAL_RINGWAY (cargo build --release)"
for p in nginx ringway; do
    real=$REAL_NGINX
    [[ $p == ringway ]] && real=$REAL_RINGWAY
    # shellcheck disable=SC2016 # $PROXY_NOFILE and "$@" are the wrapper's, expanded when it runs
    printf '#!/bin/sh\nexec prlimit --nofile="$PROXY_NOFILE:$PROXY_NOFILE" %q "$@"\n' "$real" >"$T/bin/$p"
    chmod +x "$T/bin/$p"
done
NGINX=$T/bin/nginx RINGWAY=$T/bin/ringway
export PROXY_NOFILE=$NOFILE

# start_proxy TARGET CASE LIMIT: a fresh proxy under `prlimit --nofile=LIMIT:LIMIT`. Sets
# PROXY_PID (what is stopped), MEASURE_PID (whose descriptors and RSS are read: nginx's
# worker), PORT and LOGFILE.
start_proxy() {
    local t=$1 limit=$3 dir=$T/$1-$2
    export PROXY_NOFILE=$limit
    mkdir -p "$dir"
    case $t in
    nginx)
        write_nginx_proxy_conf "$dir"
        sed -i -e "s|^worker_rlimit_nofile .*|worker_rlimit_nofile $limit;|" \
            -e "s|worker_connections .*|worker_connections 65536;|" \
            -e 's|proxy_set_header Connection "";|proxy_set_header Connection "";\n            client_max_body_size 16m;|' \
            "$dir/conf/nginx.conf"
        grep -q 'client_max_body_size 16m' "$dir/conf/nginx.conf" || die "could not set nginx's body size"
        start_nginx nginx "$dir" "$NGINX_PORT"
        PROXY_PID=$LAST_PID PORT=$NGINX_PORT LOGFILE=$dir/logs/error.log
        MEASURE_PID=$(children "$LAST_PID")
        [[ $(wc -w <<<"$MEASURE_PID") == 1 ]] || die "nginx: expected one worker, got: $MEASURE_PID"
        ;;
    ringway)
        write_ringway_conf "$dir/ringway.toml"
        # The shared config's API is GET only (the default); the slow body needs POST.
        sed -i '0,/^path = "\/"$/s//path = "\/"\nmethod = "ANY"/' "$dir/ringway.toml"
        grep -q '^method = "ANY"' "$dir/ringway.toml" || die "could not open the API to POST"
        start_ringway "$dir/ringway.toml" "$dir"
        PROXY_PID=$LAST_PID MEASURE_PID=$LAST_PID PORT=$RINGWAY_PORT LOGFILE=$dir/ringway.stderr
        ;;
    esac
    local got
    got=$(awk '/Max open files/ { print $4 }' "/proc/$MEASURE_PID/limits")
    [[ $got == "$limit" ]] || die "$t: open files limit $got, wanted $limit"
}

# stop_proxy: SIGTERM, at most 5 s, then SIGKILL; drop it from BENCH_PIDS.
stop_proxy() {
    local all=("$PROXY_PID") i p
    for p in $(children "$PROXY_PID"); do all+=("$p"); done
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        local left=0
        for p in "${all[@]}"; do alive "$p" && left=1; done
        ((left)) || break
        sleep 0.1
    done
    for p in "${all[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
    wait "$PROXY_PID" 2>/dev/null || true
    local keep=()
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$PROXY_PID" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

# sampler PID PORT OUT STOP: "fds rss_kb accept_queue" every 0.25 s until STOP exists
# (bounded); accept_queue: connections waiting in PORT's listen queue (ss's Recv-Q).
sampler() {
    local pid=$1 port=$2 out=$3 stop=$4 i q
    for ((i = 0; i < (RAMP_MAX + DURATION + 120) * 4; i++)); do
        [[ -e $stop ]] && break
        alive "$pid" || break
        q=$(ss -Hltn "sport = :$port" 2>/dev/null | awk '{ q += $2 } END { print q + 0 }')
        echo "$(fd_count "$pid") $(rss_kb "$pid") $q" >>"$out"
        sleep 0.25
    done
}

# answers PORT: one GET /hello on a fresh connection answers 200 within 2 s.
answers() {
    [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/hello" 2>/dev/null) == 200 ]]
}

lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# start_attack ATTACK PORT NAME: the attacker on CLIENT_CPU, in the background, bounded by
# `timeout`. Sets ATTACK_PID.
start_attack() {
    local a=$1 port=$2 name=$3 url=http://127.0.0.1:$2 args=()
    case $a in
    slowloris) args=(-H -i "$SLOW_INTERVAL" -x 24 -t GET -u "$url/hello") ;;
    slowbody) args=(-B -i "$SLOW_INTERVAL" -x 10 -s 8192 -t POST -u "$url/upload") ;;
    slowread) args=(-X -w 512 -y 1024 -n 5 -z 32 -k 3 -u "$url/large.bin") ;;
    esac
    if [[ $a == fds ]]; then
        timeout --foreground $((RAMP_MAX + DURATION + 60)) taskset -c "$CLIENT_CPU" \
            python3 "$BENCH_DIR/idle_client.py" --port "$port" -n "$IDLE_CONNS" --path /hello \
            --concurrency 400 --timeout 2 --release-file "$T/attack/$name.release" \
            --hold-max $((RAMP_MAX + DURATION + 30)) </dev/null >"$T/attack/$name.out" 2>"$T/attack/$name.err" &
    else
        # slowhttptest stops once the proxy has closed all its connections: start it again
        # (at most 100 times) until RAMP + DURATION + 2 s have passed, as a persistent
        # attacker would. Run N writes $name.N.start (its start time) and $name.N.csv.
        (
            end=$((SECONDS + RAMP + DURATION + 2))
            for ((run = 0; run < 100; run++)); do
                left=$((end - SECONDS))
                ((left > 1)) || break
                date +%s.%N >"$T/attack/$name.$run.start"
                timeout --foreground $((left + 30)) taskset -c "$CLIENT_CPU" \
                    slowhttptest "${args[@]}" -c "$SLOW_CONNS" -r "$SLOW_RATE" -l "$left" -p 3 \
                    -g -o "$T/attack/$name.$run" </dev/null >"$T/attack/$name.$run.out" 2>&1 || true
                sleep 0.2
            done
        ) &
    fi
    ATTACK_PID=$!
    BENCH_PIDS+=("$ATTACK_PID")
}

# attack_stats NAME ATTACK: "MEAN MAX CLOSED RUNS": attack connections open on average in the
# measured window and at most, how many the proxy closed, how many slowhttptest runs (from
# their CSVs: seconds,closed,pending,connected,service available); for the idle client its
# held connections, and how many of them the proxy closed.
attack_stats() {
    local name=$1 a=$2
    if [[ $a == fds ]]; then
        local held still
        held=$(sed -nE 's/^READY .* held=([0-9]+).*/\1/p' "$T/attack/$name.out" | head -n1)
        held=${held:-0}
        still=$(sed -nE 's/^DONE .* still_open=([0-9]+).*/\1/p' "$T/attack/$name.out" | head -n1)
        echo "$held $held $((held - ${still:-$held})) 1"
        return
    fi
    local w0 r s runs=0
    w0=$(cat "$T/probe/$name.gostart" 2>/dev/null || echo 0)
    while ((runs < 100)) && [[ -f $T/attack/$name.$runs.start ]]; do runs=$((runs + 1)); done
    for ((r = 0; r < runs; r++)); do
        s=$(cat "$T/attack/$name.$r.start")
        awk -F, -v s0="$s" -v r="$r" 'NR > 1 && NF >= 4 { printf "%.3f %d %d %d\n", s0 + $1, $2, $4, r }' \
            "$T/attack/$name.$r.csv" 2>/dev/null || true
    done | awk -v w0="$w0" -v d="$DURATION" -v runs="$runs" '
        { if ($3 > max) max = $3; if ($2 > closed[$4]) closed[$4] = $2
          if ($1 >= w0 && $1 < w0 + d) { sum += $3; n++ } }
        END { for (k in closed) c += closed[k]; printf "%d %d %d %d\n", n ? sum / n : 0, max, c, runs }'
}

RESULTS=$T/results.tsv
: >"$RESULTS"
# run_case ATTACK TARGET
run_case() {
    local a=$1 t=$2 name=$1-$2 limit=$NOFILE
    [[ $a == fds ]] && limit=$FD_LIMIT
    start_proxy "$t" "$a" "$limit"
    preflight "$t" "$PORT" "$T/backend/hello.expected" || die "$t: preflight failed before $a"
    local stop=$T/samples/$name.stop samples=$T/samples/$name.txt go=$T/probe/$name.go
    sampler "$MEASURE_PID" "$PORT" "$samples" "$stop" &
    local spid=$!
    BENCH_PIDS+=("$spid")
    local log0 p0 p1 log1 i
    log0=$(lines "$LOGFILE")

    # The probe starts first (its keep-alive connection predates the attack) and measures
    # DURATION s from when $go appears: once the attack is at full strength.
    timeout --foreground $((RAMP_MAX + DURATION + 30)) taskset -c "$CLIENT_CPU" "${PROBE_NICE[@]}" \
        python3 "$BENCH_DIR/probe.py" --port "$PORT" --path /hello --duration "$DURATION" \
        --interval "$PROBE_INTERVAL" --timeout "$PROBE_TIMEOUT" --start-file "$go" \
        --start-max "$RAMP_MAX" </dev/null >"$T/probe/$name.out" 2>"$T/probe/$name.err" &
    local ppid=$!
    BENCH_PIDS+=("$ppid")
    for ((i = 0; i < 100; i++)); do # at most 10 s for the probe to start
        grep -qs '^PROBE started' "$T/probe/$name.out" && break
        sleep 0.1
    done
    sleep 0.5
    start_attack "$a" "$PORT" "$name"
    if [[ $a == fds ]]; then
        for ((i = 0; i < RAMP_MAX * 5; i++)); do
            grep -qs '^READY ' "$T/attack/$name.out" && break
            alive "$ATTACK_PID" || break
            sleep 0.2
        done
        grep -qs '^READY ' "$T/attack/$name.out" || log "$name: the idle client is not ready after $RAMP_MAX s; measuring anyway"
        log "$name: $(grep -sm1 '^READY ' "$T/attack/$name.out" || echo 'no READY line')"
    else
        sleep "$RAMP"
    fi
    log "$a against $t (pid $PROXY_PID, open files $limit): measuring for $DURATION s"
    p0=$(tree_ticks "$PROXY_PID")
    date +%s.%N >"$T/probe/$name.gostart"
    touch "$go"
    wait "$ppid" || log "$name: the probe exited with $?: $(tail -n 3 "$T/probe/$name.err" | tr '\n' ' ')"
    p1=$(tree_ticks "$PROXY_PID")
    [[ $a == fds ]] && touch "$T/attack/$name.release"
    wait "$ATTACK_PID" || true
    log1=$(lines "$LOGFILE")
    local after=yes
    if ! alive "$PROXY_PID"; then
        after="no: the proxy exited"
    elif ! answers "$PORT"; then
        after="no: not within $RECOVER_MAX s"
        for ((i = 1; i <= RECOVER_MAX * 2; i++)); do
            sleep 0.5
            if answers "$PORT"; then
                after="no: answered $((i / 2)).$((i % 2 * 5)) s later"
                break
            fi
        done
    fi
    touch "$stop"
    wait "$spid" || true
    local fd0 rss0 fdmax rssmax qmax
    read -r fd0 rss0 < <(head -n1 "$samples" 2>/dev/null || echo "0 0")
    read -r fdmax rssmax qmax < <(awk '$1 > f { f = $1 } $2 > r { r = $2 } $3 > q { q = $3 }
        END { print f + 0, r + 0, q + 0 }' "$samples")
    declare -A pa=() pf=() pk=() pr=()
    local m f line
    for m in all fresh keepalive ramp; do
        line=$(grep -m1 "^PROBE mode=$m " "$T/probe/$name.out" ||
            echo "PROBE mode=$m sent=0 ok=0 failed=0 p50_ms=-1 p99_ms=-1 errors={} fails_by_s=-")
        for f in $line; do
            [[ $f == *=* ]] || continue
            case $m in
            all) pa[${f%%=*}]=${f#*=} ;;
            fresh) pf[${f%%=*}]=${f#*=} ;;
            keepalive) pk[${f%%=*}]=${f#*=} ;;
            ramp) pr[${f%%=*}]=${f#*=} ;;
            esac
        done
    done
    local amean amax aclosed aruns
    read -r amean amax aclosed aruns < <(attack_stats "$name" "$a")
    printf '%s\t' "$a" "$t" "$amean / $amax" "$aclosed ($aruns)" \
        "${pf[ok]}" "${pf[failed]}" "${pf[p50_ms]}" "${pf[p99_ms]}" \
        "${pk[ok]}" "${pk[failed]}" "${pk[p50_ms]}" "${pk[p99_ms]}" "${pa[failed]}" \
        "$fd0" "$fdmax" "$rss0" "$rssmax" "$((p1 - p0))" "$((log1 - log0))" "$after" \
        "${pf[errors]}" "${pk[errors]}" "${pa[fails_by_s]}" "${pr[ok]}/${pr[sent]}" "${pr[errors]}" >>"$RESULTS"
    printf '%s\n' "$qmax" >>"$RESULTS"
    log "$name: fresh ${pf[ok]} ok / ${pf[failed]} failed ${pf[errors]} (p50 ${pf[p50_ms]}, p99 ${pf[p99_ms]} ms)," \
        "keep-alive ${pk[ok]} ok / ${pk[failed]} failed ${pk[errors]} (p50 ${pk[p50_ms]}, p99 ${pk[p99_ms]} ms);" \
        "failures by second ${pa[fails_by_s]}; ramp ${pr[ok]}/${pr[sent]} ok; fds $fd0 -> max $fdmax;" \
        "VmRSS max $rssmax kB; listen queue max $qmax; attack open mean $amean, max $amax, closed by the proxy $aclosed, runs $aruns; CPU $((p1 - p0)) ticks; log +$((log1 - log0)) lines; after: $after"
    if ((log1 > log0)); then
        log "$name: the proxy's new log lines by kind (digits as N), most frequent first:"
        sed -n "$((log0 + 1)),${log1}p" "$LOGFILE" | sed -E 's/^[0-9/: T.Z-]+ //; s/[0-9]+/N/g' |
            sort | uniq -c | sort -rn | head -n 5 >&2
    fi
    stop_proxy
}

ai=0
for a in $ATTACKS; do
    order=$TARGETS
    ((ai % 2)) && order="nginx ringway"
    for t in $order; do run_case "$a" "$t"; done
    ai=$((ai + 1))
done

COMMIT=$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown)
RW_WHAT="ringway $COMMIT"
[[ $REAL_RINGWAY == "${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/ringway" ]] ||
    RW_WHAT="ringway $REAL_RINGWAY (repository at $COMMIT)"
echo "$RW_WHAT vs $("$REAL_NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(slowhttptest -h 2>&1 | grep -om1 'version [0-9.]*' | sed 's/version /slowhttptest /');" \
    "$(date -u +%Y-%m-%d); ${DURATION} s per attack; slow attacks: $SLOW_CONNS connections at $SLOW_RATE/s;" \
    "fds: $IDLE_CONNS idle connections against open files $FD_LIMIT; probe: GET /hello every ${PROBE_INTERVAL} s fresh and keep-alive," \
    "timeout ${PROBE_TIMEOUT} s; proxies + backend on CPU $SERVER_CPU, attacker + probe on CPU $CLIENT_CPU; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)."
echo
awk -F'\t' -v clk="$CLK_TCK" '
BEGIN {
    print "| attack | proxy | attack conns open: mean / max | closed by the proxy (attacker runs) | fresh ok / failed | fresh p50 / p99 ms | keep-alive ok / failed | keep-alive p50 / p99 ms | fds start → max | VmRSS MiB start → max | CPU s | new log lines | answers after |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
}
{
    printf "| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s → %s | %.1f → %.1f | %.2f | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16 / 1024, $17 / 1024, $18 / clk, $19, $20
    fail[$1, $2] = $13; sent[$1, $2] = $5 + $6 + $9 + $10; p99[$1, $2] = $8; after[$1, $2] = $20
    if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
    notes = notes sprintf("- %s, %s: failures fresh %s, keep-alive %s, by second of the window %s; while the attack built up: %s answered, failures %s; listen queue at most %s\n",
        $1, $2, $21, $22, $23, $24, $25, $26)
}
END {
    printf "\n%s\n", notes
    for (i = 1; i <= n; i++) {
        a = order[i]
        if (!((a, "ringway") in fail) || !((a, "nginx") in fail)) continue
        ok = fail[a, "ringway"] <= fail[a, "nginx"] && (after[a, "ringway"] == "yes" || after[a, "nginx"] != "yes")
        printf "%s: ringway at least as available as nginx: %s (failed probe requests %d of %d against %d of %d; fresh p99 %s against %s ms; answers after: %s / %s)\n",
            a, ok ? "yes" : "no", fail[a, "ringway"], sent[a, "ringway"], fail[a, "nginx"], sent[a, "nginx"],
            p99[a, "ringway"], p99[a, "nginx"], after[a, "ringway"], after[a, "nginx"]
    }
}' "$RESULTS"
