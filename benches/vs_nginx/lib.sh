# Shared helpers for benches/vs_nginx.sh, benches/vs_nginx_tls.sh, benches/idle_rss.sh and
# the other end-to-end benches (bash; sourced, not run).
#
# Everything listens on 127.0.0.1 with fixed high ports; every process started here is
# recorded in BENCH_PIDS and stopped by bench_cleanup (installed as an EXIT trap by
# bench_init), and every wait is a bounded loop.

BACKEND_PORT=${BACKEND_PORT:-18080} # nginx serving the static file
NGINX_PORT=${NGINX_PORT:-18081}     # nginx as a reverse proxy in front of the backend
RINGWAY_PORT=${RINGWAY_PORT:-18082} # ringway in front of the same backend
HAPROXY_PORT=${HAPROXY_PORT:-18083}         # HAProxy, HTTP mode, in front of the backend
HAPROXY_TCP_PORT=${HAPROXY_TCP_PORT:-18084} # HAProxy, TCP mode (L4)
RELAY_PORT=${RELAY_PORT:-18085}             # benches/l4relay, the monoio copy relay (L4)
TLS_NAME=localhost                  # the name the TLS benchmarks' certificate covers (SNI)
SERVER_CPU=${SERVER_CPU:-1}         # backend and proxies are pinned here
CLIENT_CPU=${CLIENT_CPU:-0}         # wrk / the idle client are pinned here

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/../.." && pwd)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
RINGWAY=${RINGWAY:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/ringway}
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
# benches/l4relay is its own crate (own workspace); its binary goes to its own target dir.
RELAY_TARGET_DIR=${RELAY_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/l4relay}
L4RELAY=${L4RELAY:-$RELAY_TARGET_DIR/release/l4relay}
# The path every preflight GETs (benches/vs_nginx.sh's ORIGIN changes it).
BENCH_PATH=/index.html

BENCH_PIDS=()
BENCH_TMP=

# awk functions the benches' report programs share: median of a space-separated list ("" for
# none), and add, which appends a value to such a list. Use: awk ... "$AWK_STATS"' { ... }'.
# shellcheck disable=SC2034
AWK_STATS='
function median(s,    a, n, i, j, x) {
    n = split(s, a, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(arr, k, v) { arr[k] = (k in arr) ? arr[k] " " v : v }
'

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# need_tools CMD...: stop with an install hint if a tool is missing.
need_tools() {
    local t missing=()
    for t in "$@"; do
        case $t in
        nginx) [[ -x $NGINX ]] || missing+=(nginx) ;;
        *) command -v "$t" >/dev/null 2>&1 || missing+=("$t") ;;
        esac
    done
    if ((${#missing[@]})); then
        die "missing: ${missing[*]}. On Debian/Ubuntu: apt-get update && apt-get install -y nginx wrk curl python3 util-linux procps"
    fi
}

# bench_durations REPS: wrk's DURATION (default 10s) and the repetitions REPS (default
# REPS), unless the environment sets them; with QUICK=1, 2s and one repetition.
bench_durations() {
    if [[ ${QUICK:-0} == 1 ]]; then
        DURATION=${DURATION:-2s}
        REPS=${REPS:-1}
    fi
    DURATION=${DURATION:-10s}
    REPS=${REPS:-$1}
}

# bench_init NAME: temp dir, traps, a raised file-descriptor limit.
bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringway-$1.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # 10,000 idle connections need more than the usual 1024 descriptors. Root may raise the
    # hard limit; anyone may raise the soft limit up to the hard one.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    NOFILE=$(ulimit -n)
    [[ $NOFILE == unlimited ]] && NOFILE=65536
    log "temp dir $BENCH_TMP; open files limit $NOFILE"
}

# alive PID: the process exists and is not a zombie.
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# children PID: the direct children of PID (nginx workers of a master).
children() { pgrep -P "$1" 2>/dev/null || true; }

bench_cleanup() {
    local rc=$? pid all=() i
    trap - EXIT INT TERM
    for pid in "${BENCH_PIDS[@]}"; do
        all+=("$pid")
        for i in $(children "$pid"); do all+=("$i"); done
    done
    if ((${#all[@]})); then
        for pid in "${BENCH_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for ((i = 0; i < 50; i++)); do # at most 5 s of grace
            local left=0
            for pid in "${all[@]}"; do alive "$pid" && left=1; done
            ((left)) || break
            sleep 0.1
        done
        for pid in "${all[@]}"; do
            if alive "$pid"; then
                log "pid $pid still alive after SIGTERM; SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
        if [[ ${KEEP_TMP:-0} == 1 ]]; then
            log "kept $BENCH_TMP"
        else
            rm -rf -- "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT (1 s bound).
port_open() {
    timeout --foreground 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# port_free PORT: stop if something already listens there.
port_free() {
    if port_open "$1"; then
        die "127.0.0.1:$1 is already in use; stop what listens there or set the *_PORT variables"
    fi
}

# wait_port PORT PID NAME LOG: wait (at most ~10 s) until PORT accepts; stop if PID exits.
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$2" || die "$3 exited during startup; its log ($4):$(printf '\n'; tail -n 20 "$4" 2>/dev/null)"
        port_open "$1" && return 0
        sleep 0.1
    done
    die "$3 does not accept connections on 127.0.0.1:$1 after 10 s; log: $4"
}

# write_index DIR: the small static file every target serves (616 bytes of HTML).
write_index() {
    mkdir -p "$1"
    {
        printf '<!DOCTYPE html>\n<html>\n<head>\n<title>ringway bench</title>\n</head>\n<body>\n'
        printf '<h1>ringway bench</h1>\n<p>'
        printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 11)
        printf '</p>\n</body>\n</html>\n'
    } >"$1/index.html"
}

# Lines every nginx instance shares: no daemon, its own pid/log/temp paths under DIR.
nginx_main_conf() {
    local dir=$1
    # As root the master would switch its workers to "nobody", who cannot read a mktemp dir.
    if ((EUID == 0)); then echo "user root;"; fi
    local conns=$((NOFILE - 128))
    ((conns > 65536)) && conns=65536
    ((conns < 1024)) && conns=1024
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections $conns;
}
EOF
}

nginx_http_common() {
    local dir=$1
    cat <<EOF
    access_log off;
    types { text/html html; text/plain txt; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
EOF
}

# write_backend_conf DIR: nginx, one worker, on BACKEND_PORT, serving DIR/html/index.html
# (616 bytes), DIR/html/hello.txt (6 bytes, "hello\n") and /hello from memory (`return 200
# "hello\n"`, no file; DIR/hello.expected holds its body for the preflight).
write_backend_conf() {
    local dir=$1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    write_index "$dir/html"
    printf 'hello\n' >"$dir/html/hello.txt"
    printf 'hello\n' >"$dir/hello.expected"
    {
        nginx_main_conf "$dir"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        server_name _;
        root $dir/html;
        location / { }
        location = /hello { default_type text/plain; return 200 "hello\\n"; }
    }
}
EOF
    } >"$dir/conf/nginx.conf"
}

# write_nginx_proxy_conf DIR: nginx, one worker, reverse proxy on NGINX_PORT to the backend
# with an upstream keepalive pool of 1024. With NGINX_PARITY=1 (the default) it also does the
# per-request work ringway does by contract (SPEC §3: keep Host, X-Forwarded-For, X-Real-IP,
# X-Forwarded-Proto, a request id sent upstream and returned to the client).
write_nginx_proxy_conf() {
    local dir=$1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    local parity=
    if [[ ${NGINX_PARITY:-1} == 1 ]]; then
        parity='
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Api-RequestId $request_id;
            add_header X-Api-RequestId $request_id always;'
    fi
    {
        nginx_main_conf "$dir"
        echo "http {"
        nginx_http_common "$dir"
        cat <<EOF
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        server_name _;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$parity
        }
    }
}
EOF
    } >"$dir/conf/nginx.conf"
}

# make_tls_cert DIR: DIR/key.pem and DIR/cert.pem, one self-signed ECDSA P-256 certificate for
# TLS_NAME (valid 2 days), made with openssl. Both proxies serve it; clients send TLS_NAME as
# SNI and trust DIR/cert.pem as their CA.
make_tls_cert() {
    mkdir -p "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$TLS_NAME" -addext "subjectAltName=DNS:$TLS_NAME" \
        -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null || die "openssl could not make a certificate in $1"
}

# nginx_conf_tls DIR CERT_DIR: make the listener of write_nginx_proxy_conf's DIR/conf/nginx.conf
# terminate TLS 1.2/1.3 with CERT_DIR's certificate (make_tls_cert), with a session cache.
nginx_conf_tls() {
    local conf=$1/conf/nginx.conf cert=$2
    sed -i "s|listen 127.0.0.1:$NGINX_PORT backlog=4096;|listen 127.0.0.1:$NGINX_PORT ssl backlog=4096;\n        ssl_certificate $cert/cert.pem;\n        ssl_certificate_key $cert/key.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache shared:SSL:10m;|" \
        "$conf"
    grep -q "listen 127.0.0.1:$NGINX_PORT ssl" "$conf" || die "nginx_conf_tls: no listener to change in $conf"
}

# write_ringway_conf FILE [EXTRA_SERVER_LINES] [CERT_DIR]: one worker, no admin, no access log;
# every GET goes to the backend with the path unchanged (a plain "/" prefix onto backend path
# "/": /index.html -> /index.html). With CERT_DIR (make_tls_cert), RINGWAY_PORT is an HTTPS
# listener serving that certificate for TLS_NAME (and plain HTTP moves to RINGWAY_PORT + 100).
write_ringway_conf() {
    local listen="listen_http = [\"127.0.0.1:$RINGWAY_PORT\"]" certs=
    if [[ -n ${3:-} ]]; then
        listen="listen_http = [\"127.0.0.1:$((RINGWAY_PORT + 100))\"]
listen_https = [\"127.0.0.1:$RINGWAY_PORT\"]"
        certs="
[[certificates]]
hosts = [\"$TLS_NAME\"]
cert = \"$3/cert.pem\"
key = \"$3/key.pem\"
"
    fi
    cat >"$1" <<EOF
[server]
$listen
admin_listen = "off"
workers = 1
access_log = "off"
${2:-}
$certs
[[upstreams]]
name = "backend"
url = "http://127.0.0.1:$BACKEND_PORT"
keepalive = 1024

[[services]]
name = "bench"

[[services.apis]]
name = "all"
path = "/"
[services.apis.backend]
type = "vpc"
upstream = "backend"
path = "/"
EOF
}

# start_nginx NAME DIR PORT: check the config, start nginx pinned to SERVER_CPU in the
# foreground (daemon off, so $! is the master), wait for PORT. Sets LAST_PID.
start_nginx() {
    local name=$1 dir=$2 port=$3
    port_free "$port"
    "$NGINX" -t -q -p "$dir/" -c "$dir/conf/nginx.conf" -e "$dir/logs/error.log" ||
        die "$name: nginx -t failed for $dir/conf/nginx.conf (see $dir/logs/error.log)"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/conf/nginx.conf" -e "$dir/logs/error.log" \
        </dev/null >"$dir/logs/stdout" 2>&1 &
    LAST_PID=$!
    BENCH_PIDS+=("$LAST_PID")
    wait_port "$port" "$LAST_PID" "$name" "$dir/logs/error.log"
    log "$name: nginx pid $LAST_PID on 127.0.0.1:$port (workers: $(children "$LAST_PID" | tr '\n' ' '))"
}

# start_ringway CONF LOGDIR: validate, start pinned to SERVER_CPU, wait for the port and (at
# most 5 s more) for the "listening http" line. Sets LAST_PID.
start_ringway() {
    local conf=$1 logs=$2 i
    [[ -x $RINGWAY ]] || die "no ringway binary at $RINGWAY (cargo build --release)"
    port_free "$RINGWAY_PORT"
    "$RINGWAY" check --config "$conf" >&2 || die "ringway check failed for $conf"
    taskset -c "$SERVER_CPU" "$RINGWAY" run --config "$conf" \
        </dev/null >"$logs/ringway.stdout" 2>"$logs/ringway.stderr" &
    LAST_PID=$!
    BENCH_PIDS+=("$LAST_PID")
    wait_port "$RINGWAY_PORT" "$LAST_PID" ringway "$logs/ringway.stderr"
    for ((i = 0; i < 50; i++)); do
        grep -q "ringway: listening http" "$logs/ringway.stderr" 2>/dev/null && break
        sleep 0.1
    done
    if grep -q "ringway: listening http" "$logs/ringway.stderr" 2>/dev/null; then
        log "ringway: pid $LAST_PID, $(grep -m1 "ringway: listening http" "$logs/ringway.stderr")"
    else
        log "ringway: pid $LAST_PID; port open but no 'ringway: listening http' line on stderr (data path not there yet?)"
    fi
}

# preflight NAME PORT EXPECTED_FILE [CA_FILE]: one GET $BENCH_PATH (/index.html unless the
# script changed it) must answer 200 with the file. With CA_FILE, over TLS:
# https://TLS_NAME:PORT (resolved to 127.0.0.1), trusting CA_FILE.
preflight() {
    local name=$1 port=$2 want=$3 ca=${4:-} body code url args=()
    mkdir -p "$BENCH_TMP/preflight"
    body=$(mktemp "$BENCH_TMP/preflight/$name.XXXXXX")
    url=http://127.0.0.1:$port$BENCH_PATH
    if [[ -n $ca ]]; then
        url=https://$TLS_NAME:$port$BENCH_PATH
        args=(--cacert "$ca" --resolve "$TLS_NAME:$port:127.0.0.1")
    fi
    code=$(curl -sS -m 3 "${args[@]}" -o "$body" -w '%{http_code}' "$url" 2>"$body.err") || true
    if [[ $code == 200 ]] && cmp -s "$body" "$want"; then
        log "$name: preflight GET $BENCH_PATH -> 200, body matches"
        return 0
    fi
    if [[ $code == 200 ]]; then
        log "$name: preflight GET $BENCH_PATH -> 200 but the body differs from the backend's file"
    else
        log "$name: preflight GET $BENCH_PATH failed: HTTP ${code:-000} $(tr '\n' ' ' <"$body.err")"
    fi
    return 1
}

# proc_ticks PID: utime+stime of PID (all its threads), in clock ticks; 0 if gone.
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    s=${s##*) } # fields from 3 (state) on; the command name may hold spaces
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13})) # fields 14 (utime) and 15 (stime)
}

# tree_ticks PID: proc_ticks of PID plus its direct children (an nginx master + workers).
tree_ticks() {
    local total c
    total=$(proc_ticks "$1")
    for c in $(children "$1"); do total=$((total + $(proc_ticks "$c"))); done
    echo "$total"
}

# rss_kb PID: VmRSS in kB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# fd_count PID: open descriptors.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# The scripts take no arguments: `--help` prints the script's header comment.
handle_args() {
    local script=$1
    shift
    case ${1:-} in
    -h | --help)
        sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    "") ;;
    *)
        echo "usage: $script [--help]  (settings are environment variables, see --help)" >&2
        exit 2
        ;;
    esac
}

# Builds the release binary when ringway is among $TARGETS (SKIP_BUILD=1 skips it).
build_ringway_if_needed() {
    if [[ ${SKIP_BUILD:-0} != 1 && " $TARGETS " == *" ringway "* ]]; then
        log "cargo build --release"
        cargo build --release >&2 || die "cargo build --release failed"
    fi
}

# write_haproxy_conf FILE MODE: HAProxy in front of the backend, one process with one thread
# (`nbthread 1`), no logs. MODE http: on HAPROXY_PORT, keep-alive on both sides
# (`option http-keep-alive`), idle backend connections shared between clients
# (`http-reuse always`), and with NGINX_PARITY=1 (the default) the per-request work of
# write_nginx_proxy_conf's nginx: Host kept (HAProxy does not rewrite it), X-Forwarded-For
# added (`option forwardfor`), X-Real-IP, X-Forwarded-Proto, a random request id (a UUID)
# sent upstream and returned on every response. MODE tcp: on HAPROXY_TCP_PORT, forwards the
# bytes, one backend connection per client connection (L4).
write_haproxy_conf() {
    local file=$1 mode=$2 maxconn=$((NOFILE / 2 - 64))
    ((maxconn > 100000)) && maxconn=100000
    {
        cat <<EOF
global
    nbthread 1
    maxconn $maxconn
defaults
    mode $mode
    maxconn $maxconn
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout client-fin 5s
    timeout server-fin 5s
EOF
        if [[ $mode == http ]]; then
            cat <<EOF
    timeout http-request 10s
    timeout http-keep-alive 600s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend origin
EOF
            if [[ ${NGINX_PARITY:-1} == 1 ]]; then
                cat <<'EOF'
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    unique-id-format %[uuid()]
    unique-id-header X-Api-RequestId
    http-after-response set-header X-Api-RequestId %[unique-id]
EOF
            fi
            cat <<EOF
backend origin
    server origin 127.0.0.1:$BACKEND_PORT
EOF
        else
            cat <<EOF
listen l4
    bind 127.0.0.1:$HAPROXY_TCP_PORT
    server origin 127.0.0.1:$BACKEND_PORT
EOF
        fi
    } >"$file"
}

# start_haproxy NAME CONF PORT LOGDIR: check the config, start HAProxy pinned to SERVER_CPU in
# the foreground (-db: no daemon, no master process; $! is the one process), wait for PORT.
# Sets LAST_PID.
start_haproxy() {
    local name=$1 conf=$2 port=$3 logs=$4
    port_free "$port"
    "$HAPROXY" -c -q -f "$conf" >"$logs/$name.check" 2>&1 ||
        die "$name: haproxy -c failed for $conf:$(printf '\n'; cat "$logs/$name.check")"
    taskset -c "$SERVER_CPU" "$HAPROXY" -db -f "$conf" \
        </dev/null >"$logs/$name.stdout" 2>"$logs/$name.stderr" &
    LAST_PID=$!
    BENCH_PIDS+=("$LAST_PID")
    wait_port "$port" "$LAST_PID" "$name" "$logs/$name.stderr"
    log "$name: haproxy pid $LAST_PID on 127.0.0.1:$port"
}

# build_relay: cargo build --release --locked of benches/l4relay (a standalone crate) into
# RELAY_TARGET_DIR, unless SKIP_BUILD=1 and the binary exists. Fails (and says why) when
# there is no binary after it.
build_relay() {
    if [[ ${SKIP_BUILD:-0} == 1 && -x $L4RELAY ]]; then
        return 0
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "l4relay: no cargo to build benches/l4relay"
        [[ -x $L4RELAY ]]
        return
    fi
    log "l4relay: cargo build --release (benches/l4relay)"
    if ! (cd "$REPO_DIR/benches/l4relay" &&
        CARGO_TARGET_DIR=$RELAY_TARGET_DIR cargo build --release --locked >&2); then
        log "l4relay: cargo build failed"
        return 1
    fi
    [[ -x $L4RELAY ]]
}

# start_relay LOGDIR: benches/l4relay pinned to SERVER_CPU, RELAY_PORT -> the backend, wait for
# the port. Sets LAST_PID.
start_relay() {
    local logs=$1
    port_free "$RELAY_PORT"
    taskset -c "$SERVER_CPU" "$L4RELAY" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$BACKEND_PORT" \
        </dev/null >"$logs/l4relay.stdout" 2>"$logs/l4relay.stderr" &
    LAST_PID=$!
    BENCH_PIDS+=("$LAST_PID")
    wait_port "$RELAY_PORT" "$LAST_PID" l4relay "$logs/l4relay.stderr"
    log "l4relay: pid $LAST_PID on 127.0.0.1:$RELAY_PORT"
}
