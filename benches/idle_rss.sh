#!/usr/bin/env bash
# Memory held by idle keep-alive client connections: ringway (and nginx, for comparison).
#
#   benches/idle_rss.sh                 # 10,000 connections to ringway, then to nginx
#   CONNS=1000 benches/idle_rss.sh      # fewer, for a smoke test
#   TLS=1 benches/idle_rss.sh           # the same over TLS (both proxies terminate it)
#
# It builds ringway (cargo build --release), starts the same backend (nginx serving a small
# index.html on 127.0.0.1:18080) and proxies as benches/vs_nginx.sh (ringway on 18082 with
# workers = 1, nginx on 18081 with one worker), then for each target:
#   1. one GET /index.html must answer 200 (else the target is skipped; FORCE=1 goes on);
#   2. reads VmRSS (/proc/PID/status) and the open descriptors of the proxy: "before";
#   3. benches/vs_nginx/idle_client.py opens CONNS connections, sends one GET /index.html on
#      each through to the backend, reads the whole answer and keeps the connection open;
#   4. once all are done and SETTLE seconds have passed: VmRSS and descriptors again, "after";
#   5. releases the client, which reports how many connections the proxy had not closed.
# The process measured is ringway itself, and nginx's worker (the master does not hold
# connections). ringway's client_idle_timeout_ms is raised to 10 minutes for this run so the
# connections stay open; nginx's keepalive_timeout is 600s.
#
# TLS=1: both proxies terminate TLS on the same ports, with the one ECDSA P-256 certificate
# for localhost that benches/vs_nginx_tls.sh uses (made here with openssl; lib.sh's
# make_tls_cert, nginx_conf_tls, write_ringway_conf with a certificate directory), nginx
# with TLS 1.2/1.3 and a 10 MB session cache as there. The preflight GET goes over TLS, and
# the client does a full TLS handshake on each connection (SNI localhost, the certificate
# trusted as the CA, ALPN http/1.1) before its GET; whatever TLS state each proxy keeps for
# an idle connection is then in the "after" reading. The backend hop stays plain HTTP.
# Prints one markdown table on stdout (its mode column: plain, or the negotiated TLS version
# and cipher suite); progress goes to stderr.
#
# Environment:
#   CONNS=10000        connections per target
#   TLS=0              1: clients connect over TLS (see above)
#   CONCURRENCY=200    connections being set up at once
#   TARGETS="ringway nginx"
#   SETTLE=6           seconds between the last answer and the "after" reading, and between the
#                      clients leaving and the last reading (ringway moves a plain connection
#                      idle for 2 s out of its task, so a reading sooner sees the tasks)
#   SKIP_BUILD=1  RINGWAY=path  FORCE=1  KEEP_TMP=1  NGINX_PARITY=0  (as in vs_nginx.sh)
#   BACKEND_PORT=18080 NGINX_PORT=18081 RINGWAY_PORT=18082 SERVER_CPU=1 CLIENT_CPU=0
#
# The open files limit is raised (ulimit -n 65536 as root, else up to the hard limit); it must
# allow CONNS plus some hundreds, for the client and for the proxy.
# Needs: nginx (Debian: apt-get install -y nginx), python3, curl, taskset, pgrep, cargo; openssl
# with TLS=1.
set -euo pipefail


# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

CONNS=${CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-200}
TARGETS=${TARGETS:-ringway nginx}
SETTLE=${SETTLE:-6}
TLS=${TLS:-0}
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
[[ $TLS == 0 || $TLS == 1 ]] || die "TLS must be 0 or 1"
for t in $TARGETS; do
    case $t in nginx | ringway) ;; *) die "unknown target '$t' (ringway nginx)" ;; esac
done
need_tools nginx python3 curl taskset pgrep timeout
((TLS)) && need_tools openssl

cd "$REPO_DIR"
build_ringway_if_needed

bench_init idle-rss
T=$BENCH_TMP
((NOFILE >= CONNS + 512)) ||
    die "open files limit $NOFILE is too low for $CONNS connections (run as root, or raise the hard limit)"

write_backend_conf "$T/backend"
start_nginx backend "$T/backend" "$BACKEND_PORT"
INDEX=$T/backend/html/index.html
preflight backend "$BACKEND_PORT" "$INDEX" || die "the backend does not serve $INDEX"

# With TLS=1: the certificate both proxies serve, the client's and the preflight's CA.
CA= CERT_DIR= CLIENT_TLS=() MODE=plain
if ((TLS)); then
    CERT_DIR=$T/tls
    make_tls_cert "$CERT_DIR"
    CA=$CERT_DIR/cert.pem
    CLIENT_TLS=(--tls --server-name "$TLS_NAME" --cafile "$CA")
    MODE=TLS
fi

ROWS=()
for t in $TARGETS; do
    case $t in
    nginx)
        write_nginx_proxy_conf "$T/nginx"
        [[ -z $CERT_DIR ]] || nginx_conf_tls "$T/nginx" "$CERT_DIR"
        start_nginx nginx "$T/nginx" "$NGINX_PORT"
        workers=$(children "$LAST_PID")
        [[ $(wc -w <<<"$workers") == 1 ]] || die "nginx: expected one worker, got: $workers"
        pid=$workers port=$NGINX_PORT what="nginx worker pid $pid"
        ;;
    ringway)
        mkdir -p "$T/ringway"
        write_ringway_conf "$T/ringway/ringway.toml" "client_idle_timeout_ms = 600000" "$CERT_DIR"
        start_ringway "$T/ringway/ringway.toml" "$T/ringway"
        pid=$LAST_PID port=$RINGWAY_PORT what="ringway pid $pid"
        ;;
    esac
    if ! preflight "$t" "$port" "$INDEX" "$CA"; then
        if [[ ${FORCE:-0} != 1 ]]; then
            log "$t: skipped (FORCE=1 to run the client against it anyway)"
            ROWS+=("| $t | $MODE | $CONNS | skipped: no 200 at preflight | | | | | | |")
            continue
        fi
        log "$t: FORCE=1, going on"
    fi
    sleep 1
    rss0=$(rss_kb "$pid") fd0=$(fd_count "$pid")
    log "$t: before: VmRSS $rss0 kB, $fd0 fds ($what)"

    out=$T/client-$t.out release=$T/release-$t
    # The client bounds itself: each step times out after 10 s, and it holds at most 300 s.
    taskset -c "$CLIENT_CPU" python3 "$BENCH_DIR/idle_client.py" --port "$port" -n "$CONNS" \
        --concurrency "$CONCURRENCY" --release-file "$release" --hold-max 300 "${CLIENT_TLS[@]}" \
        </dev/null >"$out" 2>"$T/client-$t.err" &
    cpid=$!
    BENCH_PIDS+=("$cpid")
    # Bounded: CONNS/CONCURRENCY batches of at most ~20 s each (connect + answer timeouts).
    limit=$(((CONNS / CONCURRENCY + 1) * 20 + 30))
    for ((i = 0; i < limit * 5; i++)); do
        grep -q '^READY ' "$out" && break
        alive "$cpid" || break
        sleep 0.2
    done
    ready=$(grep -m1 '^READY ' "$out" || true)
    if [[ -z $ready ]]; then
        log "$t: the client did not finish: $(tail -n 5 "$T/client-$t.err" | tr '\n' ' ')"
        kill -TERM "$cpid" 2>/dev/null || true
        ROWS+=("| $t | $MODE | $CONNS | client did not finish | | | | | | | |")
        continue
    fi
    log "$t: $ready"
    sleep "$SETTLE"
    rss1=$(rss_kb "$pid") fd1=$(fd_count "$pid")
    log "$t: after: VmRSS $rss1 kB, $fd1 fds"
    touch "$release"
    for ((i = 0; i < 100; i++)); do
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

    ok=$(sed -E 's/.* ok=([0-9]+).*/\1/' <<<"$ready")
    held=$(sed -E 's/.* held=([0-9]+).*/\1/' <<<"$ready")
    still=$(sed -nE 's/.* still_open=([0-9]+).*/\1/p' <<<"$doneline")
    fails=$(sed -E 's/.* non200=(\{[^ ]*\}) errors=(\{[^ ]*\}).*/non-200 \1, errors \2/' <<<"$ready")
    mode=$MODE
    if ((TLS)); then
        neg=$(sed -nE 's/.* tls=([^ ]*) .*/\1/p' <<<"$ready")
        mode=${neg//\// }
        [[ -n $neg && $neg != - ]] || mode=TLS
    fi
    delta=$((rss1 - rss0))
    per=$(awk -v d="$delta" -v n="$held" 'BEGIN { if (n > 0) printf "%.2f", d / n; else print "—" }')
    ROWS+=("| $t | $mode | $CONNS | $ok | $held | ${still:-?} | $(awk -v a="$rss0" -v b="$rss1" 'BEGIN { printf "%.1f → %.1f", a / 1024, b / 1024 }') | $(awk -v d="$delta" 'BEGIN { printf "%.1f", d / 1024 }') | $per | $fd0 → $fd1 | $(awk -v a="$rss2" 'BEGIN { printf "%.1f", a / 1024 }') |")
    [[ $fails == *'non-200 {}, errors {}'* ]] || log "$t: $fails"
done

what_conns="Idle keep-alive connections"
((TLS)) && what_conns="Idle keep-alive TLS connections (ECDSA P-256, a full handshake each)"
echo "$what_conns, one GET /index.html each through to the backend; $(date -u +%Y-%m-%dT%H:%MZ);" \
    "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown) (workers = 1)," \
    "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (worker_processes 1); RSS = VmRSS of ringway / of the nginx worker, read $SETTLE s after the last answer."
echo
echo "| target | mode | connections | got 200 | held open | still open after reading | VmRSS MiB before → after | Δ MiB | Δ KiB per held connection | fds before → after | VmRSS MiB after they left |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do echo "$row"; done
