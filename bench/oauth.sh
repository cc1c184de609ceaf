#!/usr/bin/env bash
# oauth.sh: what auth mode `oauth` adds per request. Two workers side by side on one
# redis-server, fronting the demo server: one in auth mode `static` (token `demo`), one
# in auth mode `oauth` validating an RS256 JWT against a JWK Set it fetched once (every
# request is a cache hit of the key set: the figure is signature and claims checking).
# The same closed loop, `switchboard bench --scenario mcp` (tools/call echo with identical
# arguments: result-cache hits, no spawn), runs against each in turn, ROUNDS times
# alternating, so both see the same machine load.
#
# usage: bench/oauth.sh   (after `cargo build --release`; needs redis-server and the
#                          interop venv's python, which has `cryptography` and `jwt`)
# Knobs: OAUTH_CALLS=3000 (calls per run), OAUTH_ROUNDS=3, OAUTH_CONCURRENCY=1.
# Prints one line per run and the medians; loopback only; everything started here is
# stopped by pid.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
PY=${INTEROP_PYTHON:-${INTEROP_DIR:-$ROOT/target/interop}/venv/bin/python}
CALLS=${OAUTH_CALLS:-3000}
ROUNDS=${OAUTH_ROUNDS:-3}
CONCURRENCY=${OAUTH_CONCURRENCY:-1}
[[ -x $SB && -x $PY ]] || { echo "needs $SB (cargo build --release) and $PY (scripts/test.sh installs it)" >&2; exit 1; }

redis=$(port) issuer=$(port) static=$(port) oauth=$(port)
start_redis "$redis"
# The issuer: RFC 8414 metadata and a JWK Set on loopback; mints one token on stdout.
"$PY" - "$issuer" "http://127.0.0.1:$oauth/mcp" >"$TMP/token" 2>"$TMP/issuer.log" <<'EOF' &
import base64, http.server, json, sys, time
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
port, audience = int(sys.argv[1]), sys.argv[2]
issuer = f"http://127.0.0.1:{port}"
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
numbers = key.public_key().public_numbers()
b64 = lambda n: base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
jwks = {"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": b64(numbers.n), "e": b64(numbers.e)}]}
claims = {"iss": issuer, "sub": "bench", "aud": audience, "exp": int(time.time()) + 86400, "scope": "mcp"}
print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench", "typ": "at+jwt"}), flush=True)
documents = {"/.well-known/oauth-authorization-server": {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}, "/jwks": jwks}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(documents.get(self.path, {})).encode()
        self.send_response(200 if self.path in documents else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print(self.path, file=sys.stderr)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
EOF
pids+=($!)
key=$(head -c32 /dev/urandom | base64)
worker() { # PORT VAR=VALUE...
  local p=$1
  shift
  env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn SWITCHBOARD_LISTEN="127.0.0.1:$p" \
    SWITCHBOARD_REDIS_URL="redis://127.0.0.1:$redis" SWITCHBOARD_SECRET_KEY="$key" "$@" "$SB" serve 2>>"$TMP/workers.log" &
  pids+=($!)
}
wait_port "$redis" && wait_port "$issuer"
worker "$static" SWITCHBOARD_AUTH_STATIC_TOKENS=demo
worker "$oauth" SWITCHBOARD_AUTH_MODE=oauth SWITCHBOARD_AUTH_ISSUER="http://127.0.0.1:$issuer" \
  SWITCHBOARD_AUTH_AUDIENCE="http://127.0.0.1:$oauth/mcp" SWITCHBOARD_AUTH_REQUIRED_SCOPES=mcp
wait_port "$static" && wait_port "$oauth"
token=$(head -n1 "$TMP/token")

run() { # PORT TOKEN: p50 in ms
  "$SB" bench --url "http://127.0.0.1:$1/mcp" --scenario mcp -n "$CALLS" -d 120s -c "$CONCURRENCY" \
    --tool echo --arguments '{"text":"hi"}' --token "$2" --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["errors"] == 0, d; print(d["p50_ms"])'
}
static_p50=() oauth_p50=()
for round in $(seq "$ROUNDS"); do
  s=$(run "$static" demo)
  o=$(run "$oauth" "$token")
  static_p50+=("$s") oauth_p50+=("$o")
  echo "round $round: static p50 $s ms, oauth p50 $o ms"
done
fetches=$(grep -c '^/jwks' "$TMP/issuer.log" || true)
python3 - "${static_p50[*]}" "${oauth_p50[*]}" "$fetches" "$CALLS" "$CONCURRENCY" <<'EOF'
import statistics, sys
s = [float(x) for x in sys.argv[1].split()]
o = [float(x) for x in sys.argv[2].split()]
ms, mo = statistics.median(s), statistics.median(o)
print(f"median of p50s: static {ms:.3f} ms, oauth {mo:.3f} ms; added by JWT validation: {(mo - ms) * 1000:.0f} µs "
      f"({sys.argv[4]} calls per run, concurrency {sys.argv[5]}; the key set was fetched {sys.argv[3]} time(s))")
EOF
