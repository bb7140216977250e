#!/usr/bin/env sh
# Sends a key-pair (HMAC) signed request with curl, signed with the openssl CLI (SPEC §4):
# the signing string is "x-date: <date>\nsource: <source>", hmac-sha256, base64.
#   sh conf/demo/sign-request.sh [url] [secret_id] [secret_key]
# Defaults: the demo API and the demo key pair of conf/ringway.toml.
set -eu
url=${1:-http://127.0.0.1:8080/signed}
id=${2:-AKIDdemo0001}
key=${3:-demo-secret-key-0001}
source=demo-script
xdate=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
sig=$(printf 'x-date: %s\nsource: %s' "$xdate" "$source" | openssl dgst -sha256 -hmac "$key" -binary | openssl base64 -A)
exec curl -sS -i -X POST "$url" \
  -H "X-Date: $xdate" -H "Source: $source" \
  -H "Authorization: hmac id=\"$id\", algorithm=\"hmac-sha256\", headers=\"x-date source\", signature=\"$sig\"" \
  --data '{"hello":"signed"}'
