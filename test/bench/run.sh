#!/usr/bin/env bash
# Measures Portcullis beside the Go floor, nginx, HAProxy, Caddy, Traefik
# and oauth2-proxy with the shared harness, in one run, so ratios compare
# like with like. PORTCULLIS_BENCH_CONFIG picks the configuration
# (portcullis.yaml: device certificate and posture; portcullis-bearer.yaml:
# a bearer JWT verified and its user checked on every request as well).
# Extra arguments go to the harness, e.g.:
#   test/bench/run.sh --quick
#   test/bench/run.sh --scenarios tls_h1_64,tls_h2_64,mtls_h1_64,mtls_h2_64 --rounds 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
harness="${BENCH_HARNESS:-$repo/../shared/bench/run.sh}"
[ -x "$harness" ] || { echo "bench: no harness at $harness (set BENCH_HARNESS)"; exit 1; }
mkdir -p "$repo/bin"
(cd "$repo" && go build -trimpath -o bin/portcullis ./cmd/portcullis)
export PORTCULLIS_BIN="$repo/bin/portcullis"
config="$here/${PORTCULLIS_BENCH_CONFIG:-portcullis.yaml}"
exec "$harness" --portcullis-cmd "$here/portcullis.sh" --portcullis-config "$config" "$@"
