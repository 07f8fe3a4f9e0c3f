#!/usr/bin/env bash
# Open-loop latency scenario (issue #15): for each of TLS and mTLS over
# HTTP/1.1 and HTTP/2, measure the Go floor's closed-loop maximum rate
# with the shared harness's reqload, then send fixed-rate load at 50 %
# and 80 % of it with openload (beside this file) to every target, and
# record p50, p99 and p99.9 measured from each request's scheduled time.
#
#   test/bench/latency.sh                      # goproxy, caddy, traefik (if built), portcullis
#   test/bench/latency.sh --only goproxy --duration 5 --loads 50
#   test/bench/latency.sh --max-rate 400 --loads 50   # a light check: no closed-loop probe
#
# Targets run as in ../shared/bench/run.sh (same ports, configurations,
# certificates and CPU pinning: load on CPU 0, target and upstream on
# CPU 1). Results go to ../shared/bench/results/<timestamp>-latency/
# latency.tsv, which test/bench/charts draws; nothing is left running.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
shared="${BENCH_HARNESS_DIR:-$repo/../shared/bench}"
[ -f "$shared/run.sh" ] || { echo "latency: no harness in $shared (set BENCH_HARNESS_DIR)" >&2; exit 1; }
BUILD="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-bench}"; BIN="$BUILD/bin"
LOAD_CPU=${BENCH_LOAD_CPU:-0}; TARGET_CPU=${BENCH_TARGET_CPU:-1}; UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-1}
DURATION=10; LOADS="50 80"; ONLY="goproxy caddy traefik portcullis"
SCENARIOS="tls_h1 tls_h2 mtls_h1 mtls_h2"; MAX_N=${BENCH_MAX_REQUESTS:-400000}; MAX_RATE=""
OFF=${BENCH_PORT_OFFSET:-0}   # added to every port, to run beside a harness that holds the usual ones
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift ;;
    --loads) LOADS="${2//,/ }"; shift ;;
    --only) ONLY="${2//,/ }"; shift ;;
    --scenarios) SCENARIOS="${2//,/ }"; shift ;;
    --max-rate) MAX_RATE="$2"; shift ;;   # take this as the floor's maximum instead of measuring it
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "latency: unknown option $1" >&2; exit 2 ;;
  esac; shift
done
case " $ONLY " in *" goproxy "*) ;; *) ONLY="goproxy $ONLY" ;; esac   # the floor sets the rates
log() { echo "latency: $*" >&2; }

mkdir -p "$BIN"
( cd "$shared" && for p in upstream goproxy reqload; do GOWORK=off go build -trimpath -o "$BIN/$p" "./$p"; done )
( cd "$repo" && go build -trimpath -o "$BIN/openload" ./test/bench/openload && go build -trimpath -o "$BIN/portcullis" ./cmd/portcullis )
export PORTCULLIS_BIN="$BIN/portcullis"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latencybench.XXXXXX")"
RESULTS="$shared/results/$(date +%Y%m%d-%H%M%S)-latency"; mkdir -p "$RESULTS"
declare -A PID=()
cleanup() {
  local p
  for p in "${PID[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PID[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
start() { local name="$1" cpu="$2"; shift 2; setsid taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 </dev/null & PID[$name]=$!; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { local i; for i in $(seq 100); do port_open "$1" && return 0; sleep 0.1; done; return 1; }
render() { perl -pe 's/\$\{(BENCH_[A-Z0-9_]+)\}/exists $ENV{$1} ? $ENV{$1} : $&/ge' "$1" >"$2"; }

# Certificates as the harness makes them: a server certificate for
# localhost, a device CA and a device certificate with a URI and an email SAN.
K="$WORK/tls"; mkdir -p "$K"; EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
DEVICE_UUID="$(cat /proc/sys/kernel/random/uuid)"
{
  openssl req -x509 "${EC[@]}" -nodes -days 3 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$K/key.pem" -out "$K/cert.pem"
  openssl req -x509 "${EC[@]}" -nodes -days 3 -subj "/CN=Bench Device CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$K/device-ca.key" -out "$K/device-ca.pem"
  openssl req -new "${EC[@]}" -nodes -subj "/CN=device-$DEVICE_UUID" -keyout "$K/client.key" -out "$K/client.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" \
    "subjectAltName=URI:spiffe://portcullis.test/device/$DEVICE_UUID,email:bench-user@portcullis.test" >"$K/client.ext"
  openssl x509 -req -in "$K/client.csr" -CA "$K/device-ca.pem" -CAkey "$K/device-ca.key" -CAcreateserial -days 3 \
    -extfile "$K/client.ext" -out "$K/client.pem"
} >"$K/openssl.log" 2>&1 || { cat "$K/openssl.log" >&2; exit 1; }
export BENCH_UPSTREAM=127.0.0.1:$((18080+OFF)) BENCH_UPSTREAM_URL=http://127.0.0.1:$((18080+OFF))
export BENCH_CERT="$K/cert.pem" BENCH_KEY="$K/key.pem" BENCH_CA="$K/cert.pem" BENCH_PEM="$K/bundle.pem"
cat "$K/cert.pem" "$K/key.pem" >"$BENCH_PEM"
export BENCH_DEVICE_CA="$K/device-ca.pem" BENCH_CLIENT_CERT="$K/client.pem" BENCH_CLIENT_KEY="$K/client.key"
export BENCH_DEVICE_ID="spiffe://portcullis.test/device/$DEVICE_UUID" BENCH_DEVICE_EMAIL=bench-user@portcullis.test

port_open $((18080+OFF)) && { echo "latency: port $((18080+OFF)) is in use (is the harness running? set BENCH_PORT_OFFSET)" >&2; exit 1; }
start upstream "$UPSTREAM_CPU" "$BIN/upstream" -addr "$BENCH_UPSTREAM"
wait_port $((18080+OFF)) || { cat "$WORK/upstream.log" >&2; exit 1; }

declare -A BASE=([goproxy]=$((18101+OFF)) [caddy]=$((18131+OFF)) [traefik]=$((18141+OFF)) [portcullis]=$((18161+OFF)))
ACTIVE=""
for t in $ONLY; do
  [ -n "${BASE[$t]:-}" ] || { log "unknown target $t"; continue; }
  b=${BASE[$t]}; dir="$WORK/$t"; mkdir -p "$dir"
  export BENCH_PLAIN_PORT=$b BENCH_LISTEN_PLAIN=127.0.0.1:$b BENCH_TLS_PORT=$((b+1)) BENCH_LISTEN_TLS=127.0.0.1:$((b+1)) \
    BENCH_MTLS_PORT=$((b+2)) BENCH_LISTEN_MTLS=127.0.0.1:$((b+2)) BENCH_H3_PORT=$((b+3)) BENCH_LISTEN_H3=127.0.0.1:$((b+3)) \
    BENCH_WORKDIR="$dir" BENCH_CONFIG="$dir/config"
  case "$t" in
    goproxy) start "$t" "$TARGET_CPU" "$BIN/goproxy" -plain "$BENCH_LISTEN_PLAIN" -tls "$BENCH_LISTEN_TLS" \
               -mtls "$BENCH_LISTEN_MTLS" -client-ca "$BENCH_DEVICE_CA" -cert "$BENCH_CERT" -key "$BENCH_KEY" -upstream "$BENCH_UPSTREAM" ;;
    caddy) command -v caddy >/dev/null || { log "caddy is not installed: skipped"; continue; }
           render "$shared/conf/Caddyfile" "$dir/Caddyfile"
           XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" HOME="$dir" start "$t" "$TARGET_CPU" caddy run --adapter caddyfile --config "$dir/Caddyfile" ;;
    traefik) [ -x "$BIN/traefik" ] || { log "traefik is not built (run ../shared/bench/run.sh once): skipped"; continue; }
             render "$shared/conf/traefik.yml" "$dir/traefik.yml"; render "$shared/conf/traefik-dynamic.yml" "$dir/traefik-dynamic.yml"
             start "$t" "$TARGET_CPU" "$BIN/traefik" --configFile="$dir/traefik.yml" ;;
    portcullis) render "$here/${PORTCULLIS_BENCH_CONFIG:-portcullis.yaml}" "$BENCH_CONFIG"
                sed -i "s/127\.0\.0\.1:18169/127.0.0.1:$((18169+OFF))/" "$BENCH_CONFIG"   # the admin listener
                start "$t" "$TARGET_CPU" "$here/portcullis.sh" ;;
  esac
  if wait_port $((b+1)) && wait_port $((b+2)); then ACTIVE="$ACTIVE $t"; else log "$t did not start: skipped"; tail -5 "$WORK/$t.log" >&2; fi
done

# args SCENARIO TARGET: the load generator arguments of one scenario
args() {
  local b=${BASE[$2]}
  case "$1" in
    tls_h1) echo "-proto h1 -c 64 -k -url https://127.0.0.1:$((b+1))/64" ;;
    tls_h2) echo "-proto h2 -c 16 -m 16 -k -url https://127.0.0.1:$((b+1))/64" ;;
    mtls_h1) echo "-proto h1 -c 64 -k -cert $BENCH_CLIENT_CERT -key $BENCH_CLIENT_KEY -url https://localhost:$((b+2))/64 -addr 127.0.0.1:$((b+2))" ;;
    mtls_h2) echo "-proto h2 -c 16 -m 16 -k -cert $BENCH_CLIENT_CERT -key $BENCH_CLIENT_KEY -url https://localhost:$((b+2))/64 -addr 127.0.0.1:$((b+2))" ;;
  esac
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p"; }

OUT="$RESULTS/latency.tsv"
printf 'scenario\ttarget\tload_pct\trate\trequests\terrors\tachieved\tp50_ms\tp99_ms\tp999_ms\tmax_ms\tlate\tmax_rps_goproxy\n' >"$OUT"
for s in $SCENARIOS; do
  # The floor's closed-loop maximum sets this scenario's rates.
  if [ -n "$MAX_RATE" ]; then max="$MAX_RATE"; else
    max="$(taskset -c "$LOAD_CPU" "$BIN/reqload" $(args "$s" goproxy) -d 5s | field rps)"
    log "$s: goproxy closed-loop maximum $max req/s"
  fi
  for pct in $LOADS; do
    rate=$(awk -v m="$max" -v p="$pct" 'BEGIN { printf "%.0f", m * p / 100 }')
    for t in $ACTIVE; do
      a="$(args "$s" "$t" | sed 's/ -m 16//')"   # openload: HTTP/2 streams are as many as the rate needs
      line="$(taskset -c "$LOAD_CPU" "$BIN/openload" $a -rate "$rate" -d "${DURATION}s" -n "$MAX_N" 2>&1 | tail -1)"
      log "$s $t ${pct}%: $line"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$t" "$pct" "$rate" \
        "$(field requests <<<"$line")" "$(field errors <<<"$line")" "$(field achieved <<<"$line")" \
        "$(field p50_ms <<<"$line")" "$(field p99_ms <<<"$line")" "$(field p999_ms <<<"$line")" \
        "$(field max_ms <<<"$line")" "$(field late <<<"$line")" "$max" >>"$OUT"
    done
  done
done
log "results: $OUT"
