#!/usr/bin/env bash
# The cost of the API-frontend stages, end to end: the same API with and without them.
#
#   benches/gateway_stages.sh          # wrk -t1 -c64 -d10s, interleaved, median of 5
#   QUICK=1 benches/gateway_stages.sh  # smoke test: -d2s, 1 repetition
#
# One ringway (workers = 1) in front of one backend (nginx, one worker, a 616-byte file),
# with two APIs that reach the same backend file:
#   plain  GET =/plain  — no params, no auth, no CORS
#   full   GET =/full   — 3 params (a required int header, an int query param mapped to a
#                         header, a string query param with a default) + key-pair auth
#                         (hmac-sha256 over x-date and source) + cors = true
# wrk sends GET /plain and GET /full (with a valid Authorization header, signed with the
# openssl CLI just before each run; the date stays within the 900 s window for the run).
# Backend and ringway are pinned to SERVER_CPU, wrk to CLIENT_CPU. Prints a markdown table:
# req/s, p50/p99 µs, ringway CPU µs per request (from /proc), and full/plain ratios.
#
# Environment: QUICK=1, DURATION=10s, REPS=5, CONNS=64, SKIP_BUILD=1, KEEP_TMP=1, and the
# ports/CPUs of benches/vs_nginx/lib.sh. Needs nginx, wrk, curl, openssl, taskset.
set -euo pipefail

# shellcheck source=vs_nginx/lib.sh
source "$(dirname "$0")/vs_nginx/lib.sh"
handle_args "$0" "$@"

bench_durations 5
CONNS=${CONNS:-64}
need_tools nginx wrk curl openssl taskset pgrep getconf timeout
CLK_TCK=$(getconf CLK_TCK)

cd "$REPO_DIR"
build_ringway_if_needed
bench_init gateway-stages
T=$BENCH_TMP
mkdir -p "$T/wrk" "$T/ringway"

write_backend_conf "$T/backend"
start_nginx backend "$T/backend" "$BACKEND_PORT"
BACKEND_PID=$LAST_PID

SECRET_ID=AKIDbench0001
SECRET_KEY=bench-secret-key-0001
cat >"$T/ringway/ringway.toml" <<EOF
[server]
listen_http = ["127.0.0.1:$RINGWAY_PORT"]
admin_listen = "off"
workers = 1
access_log = "off"

[[upstreams]]
name = "backend"
url = "http://127.0.0.1:$BACKEND_PORT"
keepalive = 1024

[[services]]
name = "bench"

[[services.apis]]
name = "plain"
path = "=/plain"
[services.apis.backend]
upstream = "backend"
path = "/index.html"

[[services.apis]]
name = "full"
path = "=/full"
auth = "key_pair"
cors = true
[[services.apis.params]]
name = "X-Tenant"
location = "header"
data_type = "int"
required = true
[[services.apis.params]]
name = "limit"
location = "query"
data_type = "int"
backend_name = "X-Limit"
backend_location = "header"
[[services.apis.params]]
name = "fields"
location = "query"
data_type = "string"
default = "id,name"
[services.apis.backend]
upstream = "backend"
path = "/index.html"

[[key_pairs]]
secret_id = "$SECRET_ID"
secret_key = "$SECRET_KEY"
services = ["bench"]
EOF
start_ringway "$T/ringway/ringway.toml" "$T/ringway"
RINGWAY_PID=$LAST_PID
LUA=$BENCH_DIR/report.lua
INDEX=$T/backend/html/index.html

# sign: prints the headers of a valid signed request for now.
sign() {
    local xdate sig
    xdate=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
    sig=$(printf 'x-date: %s\nsource: %s' "$xdate" bench | openssl dgst -sha256 -hmac "$SECRET_KEY" -binary | openssl base64 -A)
    printf '%s\n' "X-Date: $xdate" "Source: bench" "X-Tenant: 7" \
        "Authorization: hmac id=\"$SECRET_ID\", algorithm=\"hmac-sha256\", headers=\"x-date source\", signature=\"$sig\""
}

# run_wrk API CONNS DURATION OUT
run_wrk() {
    local api=$1 secs=${3%[smh]} url args=()
    if [[ $api == full ]]; then
        url="http://127.0.0.1:$RINGWAY_PORT/full?limit=20"
        while IFS= read -r h; do args+=(-H "$h"); done < <(sign)
    else
        url="http://127.0.0.1:$RINGWAY_PORT/plain"
    fi
    timeout --foreground $((secs + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$2" -d"$3" --timeout 2s -s "$LUA" "${args[@]}" "$url" >"$4" 2>&1 || true
}

# Preflight: both APIs answer 200 with the file; the full one refuses an unsigned request.
for api in plain full; do
    args=()
    [[ $api == full ]] && while IFS= read -r h; do args+=(-H "$h"); done < <(sign)
    q=""
    [[ $api == full ]] && q="?limit=20"
    code=$(curl -sS -m 2 -o "$T/pre-$api" -w '%{http_code}' "${args[@]}" "http://127.0.0.1:$RINGWAY_PORT/$api$q")
    [[ $code == 200 ]] && cmp -s "$T/pre-$api" "$INDEX" || die "$api: preflight got $code"
done
code=$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RINGWAY_PORT/full?limit=20" -H "X-Tenant: 7")
[[ $code == 401 ]] || die "full: an unsigned request got $code, not 401"
log "preflight: both APIs serve the file; an unsigned request to /full gets 401"

run_wrk plain 64 1s "$T/wrk/warmup-plain.txt"
run_wrk full 64 1s "$T/wrk/warmup-full.txt"

RESULTS=$T/results.tsv
: >"$RESULTS"
for c in $CONNS; do
    for ((r = 1; r <= REPS; r++)); do
        for api in plain full; do
            out=$T/wrk/$api-c$c-r$r.txt
            p0=$(tree_ticks "$RINGWAY_PID")
            run_wrk "$api" "$c" "$DURATION" "$out"
            p1=$(tree_ticks "$RINGWAY_PID")
            line=$(grep -m1 '^RWBENCH ' "$out" || echo "RWBENCH requests=0 duration_us=1 p50_us=-1 p99_us=-1 status=0")
            declare -A kv=()
            for f in $line; do [[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}; done
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$api" "$c" "${kv[requests]}" "${kv[duration_us]}" \
                "${kv[p50_us]}" "${kv[p99_us]}" "$((p1 - p0))" "${kv[status]}" >>"$RESULTS"
            log "$api -c$c #$r: $((${kv[requests]} * 1000000 / ${kv[duration_us]})) req/s, p50 ${kv[p50_us]} µs, status errors ${kv[status]}"
            unset kv
        done
    done
done

echo "ringway $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo unknown), workers = 1;" \
    "wrk -t1 -d$DURATION, median of $REPS, interleaved; backend + ringway on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU."
echo
awk -F'\t' -v clk="$CLK_TCK" "$AWK_STATS"'
{
    k = $1 SUBSEP $2; conns[$2] = 1
    add(rps, k, $3 * 1e6 / $4); add(p50, k, $5); add(p99, k, $6)
    if ($3 > 0) add(cpu, k, $7 * 1e6 / clk / $3)
    err[k] += $8
}
END {
    print "| conns | API | req/s | p50 µs | p99 µs | ringway CPU µs/req | errors | full/plain req/s | full/plain CPU |"
    print "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for (c in conns) for (i = 1; i <= 2; i++) {
        api = (i == 1) ? "plain" : "full"; k = api SUBSEP c
        r = median(rps[k]); u = median(cpu[k])
        rr = "—"; ru = "—"
        if (api == "full") {
            kp = "plain" SUBSEP c
            rr = sprintf("%.2f", r / median(rps[kp])); ru = sprintf("%.2f", u / median(cpu[kp]))
        }
        printf "| %s | %s | %.0f | %.0f | %.0f | %.1f | %d | %s | %s |\n", c, api, r, median(p50[k]), median(p99[k]), u, err[k], rr, ru
    }
}' "$RESULTS"
