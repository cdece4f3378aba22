#!/usr/bin/env bash
# Load benchmark of `eargate serve`: a typical rotation UPDATE review (old
# Cluster examples/cluster-active.yaml, new examples/rotation-1-add-secondary.yaml, ~6 KB
# each, compact JSON) POSTed to /validate over keep-alive TLS by `wrk` (Debian), 32
# connections, 20 s — and, in the same run, the same load against the transport ceiling:
# the tls_ceiling example, the same TLS stack answering a fixed reply without decoding.
# Reports throughput, p50/p99 latency, errors and eargate's peak RSS.
# Targets: >= 50% of the ceiling's throughput, p99 < 5 ms, peak RSS < 32 MiB, zero errors.
#
# Environment: CONNECTIONS (32), DURATION (20s), THREADS (2), CARGO (cargo), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CARGO=${CARGO:-cargo}
PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import yaml' 2>/dev/null; then PYTHON=.venv/bin/python; fi

if ! command -v wrk >/dev/null; then
  echo "bench-webhook: installing wrk (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
  echo "bench-webhook: installing python3-yaml (Debian) to build the review from examples/" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
  PYTHON=python3
fi

echo "== building (release)" >&2
$CARGO build --release --quiet --bin eargate
$CARGO build --release --quiet -p eargate-admission --example tls_ceiling
target_dir=$($CARGO metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
eargate="$target_dir/release/eargate"
ceiling="$target_dir/release/examples/tls_ceiling"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$eargate" certs --out-dir "$work/certs" --dns-name localhost --ip 127.0.0.1 >/dev/null

"$PYTHON" - "$work/review.json" <<'PY'
import json, sys, yaml
old = yaml.safe_load(open("examples/cluster-active.yaml"))
new = yaml.safe_load(open("examples/rotation-1-add-secondary.yaml"))
gvk = {"group": "kubermatic.k8c.io", "version": "v1", "kind": "Cluster"}
gvr = {"group": "kubermatic.k8c.io", "version": "v1", "resource": "clusters"}
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": gvk, "resource": gvr,
    "requestKind": gvk, "requestResource": gvr, "name": new["metadata"]["name"],
    "operation": "UPDATE", "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
    "object": new, "oldObject": old, "dryRun": False,
    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}}}
open(sys.argv[1], "w").write(json.dumps(review, separators=(",", ":")))
PY
cat > "$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/review.json", "rb")
wrk.body = f:read("*all")
f:close()
EOF

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null --cacert "$work/certs/ca.crt" "https://localhost:$1/" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-webhook: nothing listening on $1" >&2; exit 2
}

port=$(free_port); mport=$(free_port)
"$eargate" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
  --tls-cert-file "$work/certs/tls.crt" --tls-key-file "$work/certs/tls.key" 2>"$work/eargate.log" &
eargate_pid=$!; pids+=("$eargate_pid")
wait_port "$port"
# The real reply, for the ceiling to send back (same size on the wire).
curl -s --cacert "$work/certs/ca.crt" -H 'Content-Type: application/json' --data-binary @"$work/review.json" \
  "https://localhost:$port/validate" > "$work/reply.json"
grep -q '"allowed":true' "$work/reply.json" || { echo "bench-webhook: the review was not allowed: $(head -c 400 "$work/reply.json")" >&2; exit 2; }

cport=$(free_port)
"$ceiling" "127.0.0.1:$cport" "$work/certs/tls.crt" "$work/certs/tls.key" "$work/reply.json" 2>/dev/null &
pids+=("$!")
wait_port "$cport"

run_wrk() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "https://localhost:$1$2"; }
# CPU time (user + system, clock ticks) a server process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_hz=$(getconf CLK_TCK)

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run" >&2
ceiling_pid=${pids[-1]}
echo "== ceiling: fixed reply on the same TLS stack" >&2
c0=$(cpu_ticks "$ceiling_pid")
run_wrk "$cport" /validate | tee "$work/ceiling.txt"
c_ticks=$(( $(cpu_ticks "$ceiling_pid") - c0 ))
echo "== eargate serve /validate" >&2
e0=$(cpu_ticks "$eargate_pid")
run_wrk "$port" /validate | tee "$work/eargate.txt"
e_ticks=$(( $(cpu_ticks "$eargate_pid") - e0 ))
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$eargate_pid/status")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
pct() { awk -v p="$2" '$1 == p {print $2}' "$1"; }
errors() { grep -E 'Socket errors|Non-2xx' "$1" | grep -oE '[0-9]+' | awk '{s += $1} END {print s + 0}'; }
# Server CPU per request (µs): what the review costs on top of the transport, less sensitive
# to how much of the shared cores the machine gives this run than req/s and latency are.
cpu_us() { awk -v t="$1" -v hz="$tick_hz" -v n="$(awk '/requests in/ {print $1}' "$2")" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}'; }
c_rps=$(rps "$work/ceiling.txt"); e_rps=$(rps "$work/eargate.txt")
ratio=$(awk -v e="$e_rps" -v c="$c_rps" 'BEGIN {printf "%.0f", 100*e/c}')
reviews=$(grep -c '"review"\| review ' "$work/eargate.log" || true)
review_bytes=$(wc -c < "$work/review.json")
echo
echo "bench-webhook: review ${review_bytes} B (UPDATE, rotation step 1), ${CONNECTIONS} connections, ${DURATION}, keep-alive TLS (wrk, HTTP/1.1)"
printf '%-10s %12s %10s %10s %8s %14s\n' "" "req/s" "p50" "p99" "errors" "cpu µs/req"
printf '%-10s %12s %10s %10s %8s %14s\n' ceiling "$c_rps" "$(pct "$work/ceiling.txt" 50%)" "$(pct "$work/ceiling.txt" 99%)" "$(errors "$work/ceiling.txt")" "$(cpu_us "$c_ticks" "$work/ceiling.txt")"
printf '%-10s %12s %10s %10s %8s %14s\n' eargate "$e_rps" "$(pct "$work/eargate.txt" 50%)" "$(pct "$work/eargate.txt" 99%)" "$(errors "$work/eargate.txt")" "$(cpu_us "$e_ticks" "$work/eargate.txt")"
echo "eargate: ${ratio}% of the ceiling's throughput; peak RSS $((rss_kib / 1024)) MiB (${rss_kib} KiB); ${reviews} review log lines; load average after: ${load_after}"
echo "targets: >= 50% of ceiling, p99 < 5 ms, peak RSS < 32 MiB, 0 errors"
