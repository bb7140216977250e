#!/usr/bin/env sh
# Prints a DEMO OAuth 2.0 token (RS256 JWT) signed with conf/demo/jwt-demo.key, the private
# half of the demo service's public key in conf/ringway.toml. Made with the openssl CLI only.
#   sh conf/demo/make-token.sh [subject] [lifetime-seconds]
set -eu
dir=$(dirname "$0")
sub=${1:-demo-user}
ttl=${2:-3600}
now=$(date +%s)
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","iat":%s,"exp":%s}' "$sub" "$now" $((now + ttl)) | b64url)
sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$dir/jwt-demo.key" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$sig"
