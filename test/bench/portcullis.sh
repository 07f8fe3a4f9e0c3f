#!/usr/bin/env bash
# The --portcullis-cmd of ../shared/bench/run.sh: records the bench
# device's posture (the harness probes the mTLS port as soon as it opens),
# then runs the gateway. PORTCULLIS_BIN is set by run.sh beside this file.
set -euo pipefail
bin="${PORTCULLIS_BIN:?}"
# The bearer variant names a client secret it never uses (bearer tokens
# need none), but an OIDC provider must have one.
[ -f "$BENCH_WORKDIR/client.secret" ] || echo bench-client-secret > "$BENCH_WORKDIR/client.secret"
"$bin" posture set --config "$BENCH_CONFIG" --ca bench --device "${BENCH_DEVICE_ID##*/}" \
  --user "$BENCH_DEVICE_EMAIL" --compliant true --threat none >/dev/null
exec "$bin" serve --config "$BENCH_CONFIG" --log-level warn
