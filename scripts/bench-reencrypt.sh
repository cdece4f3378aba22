#!/usr/bin/env bash
# Benchmark of `eargate reencrypt`: rewrite OBJECTS Secrets through the in-process
# Kubernetes API stand-in (crates/reencrypt/tests/support/standin.rs, served by the
# `reencrypt-standin` example) with LATENCY_MS added to every request. Reports objects/s
# and the peak RSS of the eargate process (targets: >= 2,000 objects/s at concurrency 16,
# RSS < 64 MiB), and for comparison the floor of the usual shell loop: starting two
# `kubectl` processes per object (`kubectl version --client`, no API call at all).
#
# Environment: OBJECTS (20000), LATENCY_MS (1), CONCURRENCY (16), PAGE_SIZE (500),
# KUBECTL_SAMPLES (50 objects = 100 kubectl starts), KUBECTL (kubectl), CARGO (cargo),
# SKIP_BUILD=1 to use the release binaries already built.
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-20000}
LATENCY_MS=${LATENCY_MS:-1}
CONCURRENCY=${CONCURRENCY:-16}
PAGE_SIZE=${PAGE_SIZE:-500}
KUBECTL_SAMPLES=${KUBECTL_SAMPLES:-50}
KUBECTL=${KUBECTL:-kubectl}
CARGO=${CARGO:-cargo}
TIME=/usr/bin/time

if [ ! -x "$TIME" ]; then
  echo "bench-reencrypt: $TIME (GNU time, Debian package 'time') is needed to measure peak RSS" >&2
  exit 2
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== building (release)" >&2
  $CARGO build --release --quiet --bin eargate
  $CARGO build --release --quiet -p eargate-reencrypt --example reencrypt-standin
fi
target_dir=$($CARGO metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}

work=$(mktemp -d)
standin_pid=
cleanup() {
  if [ -n "$standin_pid" ]; then kill -INT "$standin_pid" 2>/dev/null || true; wait "$standin_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$target_dir/release/examples/reencrypt-standin" --objects "$OBJECTS" --latency-ms "$LATENCY_MS" \
  --kubeconfig "$work/kubeconfig" >"$work/standin.out" 2>"$work/standin.err" &
standin_pid=$!
for _ in $(seq 1 600); do
  grep -q '^ready' "$work/standin.out" 2>/dev/null && break
  kill -0 "$standin_pid" 2>/dev/null || { cat "$work/standin.err" >&2; exit 2; }
  sleep 0.1
done
grep -q '^ready' "$work/standin.out" || { echo "bench-reencrypt: the stand-in did not start" >&2; exit 2; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== eargate reencrypt: $OBJECTS objects, ${LATENCY_MS} ms latency per request, concurrency $CONCURRENCY, page size $PAGE_SIZE" >&2
set +e
"$TIME" -f '%M %e' -o "$work/time" "$target_dir/release/eargate" reencrypt --kubeconfig "$work/kubeconfig" \
  --resources secrets --concurrency "$CONCURRENCY" --page-size "$PAGE_SIZE" --output json \
  >"$work/summary.json" 2>"$work/progress.txt"
rc=$?
set -e
cat "$work/progress.txt" >&2
read -r rss_kib wall_s <"$work/time"

field() { # field NAME: a number from the JSON summary's "totals" object
  grep -o '"totals":{[^}]*}' "$work/summary.json" | grep -o "\"$1\":[0-9]*" | cut -d: -f2
}
rewritten=$(field rewritten)
listed=$(field listed)
duration=$(grep -o '"duration_seconds":[0-9.]*' "$work/summary.json" | head -1 | cut -d: -f2)
if [ "$rc" -ne 0 ] || [ "$rewritten" != "$OBJECTS" ] || [ "$listed" != "$OBJECTS" ]; then
  echo "bench-reencrypt: run failed (exit $rc, listed $listed, rewritten $rewritten of $OBJECTS)" >&2
  cat "$work/summary.json" >&2
  exit 1
fi

rate=$(awk -v n="$rewritten" -v s="$duration" 'BEGIN { printf "%.0f", n / s }')
rate_wall=$(awk -v n="$rewritten" -v s="$wall_s" 'BEGIN { printf "%.0f", n / s }')
rss_mib=$(awk -v k="$rss_kib" 'BEGIN { printf "%.1f", k / 1024 }')

echo "== kubectl floor: 2 x '$KUBECTL version --client' per object, $KUBECTL_SAMPLES objects" >&2
kubectl_line="kubectl not found: shell-loop floor not measured"
if command -v "$KUBECTL" >/dev/null 2>&1; then
  start=$(date +%s.%N)
  for _ in $(seq 1 "$KUBECTL_SAMPLES"); do
    "$KUBECTL" version --client >/dev/null 2>&1
    "$KUBECTL" version --client >/dev/null 2>&1
  done
  end=$(date +%s.%N)
  kubectl_line=$(awk -v a="$start" -v b="$end" -v n="$KUBECTL_SAMPLES" -v total="$OBJECTS" -v r="$rate" 'BEGIN {
    per = (b - a) / n;
    printf "%.1f ms per object (2 process starts), %.1f objects/s; %d objects would take >= %.0f s (%.0fx slower than eargate)",
      per * 1000, 1 / per, total, per * total, r * per }')
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<EOF
bench-reencrypt ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average before/after: $load_before / $load_after)
  eargate reencrypt: $rewritten objects in ${duration} s = $rate objects/s (wall incl. start and discovery: ${wall_s} s = $rate_wall objects/s)
                     concurrency $CONCURRENCY, page size $PAGE_SIZE, ${LATENCY_MS} ms added per request
                     peak RSS ${rss_mib} MiB
  targets:           >= 2000 objects/s: $( [ "$rate" -ge 2000 ] && echo met || echo NOT met ); RSS < 64 MiB: $(awk -v k="$rss_kib" 'BEGIN { print (k < 65536) ? "met" : "NOT met" }')
  shell-loop floor:  $kubectl_line
EOF
