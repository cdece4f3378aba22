#!/usr/bin/env bash
# Benchmark for `eargate verify`: 50,000 Secrets of ~1 KB in a real etcd; eargate's
# scan (which opens every value) next to `etcdctl get --prefix /registry/secrets` written to
# /dev/null, in the same run. Target: eargate <= 1.5x etcdctl.
#
#   scripts/bench-verify.sh [COUNT] [SIZE] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50000}
size=${2:-1024}
rounds=${3:-5}
# The pinned etcd 3.6 build the tests use (scripts/build-control-plane.sh).
PATH="$(bash scripts/build-control-plane.sh):$PATH"

cargo build --release -q --bin eargate
cargo build --release -q -p eargate-storage --example seed_secrets
eargate=target/release/eargate
seed=target/release/examples/seed_secrets

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); pport=$(free_port)
endpoint=http://127.0.0.1:$cport
etcd --name bench --data-dir "$work/data" --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "bench=http://127.0.0.1:$pport" --quota-backend-bytes=$((4*1024*1024*1024)) \
  --log-level=error >"$work/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill $etcd_pid 2>/dev/null || true; wait $etcd_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do etcdctl --endpoints "$endpoint" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

"$seed" "$endpoint" "$count" "$size" "$work/config.yaml"

now() { date +%s.%N; }
best() { sort -g | head -1; }
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
etcd_times=(); eargate_times=()
for r in $(seq "$rounds"); do
  t0=$(now); ETCDCTL_API=3 etcdctl --endpoints "$endpoint" get --prefix /registry/secrets >/dev/null; t1=$(now)
  etcd_times+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now)
  set +e; "$eargate" verify --etcd-endpoints "$endpoint" --encryption-config "$work/config.yaml" --output json >"$work/out.json"; rc=$?; set -e
  t1=$(now)
  [ $rc -eq 0 ] || { echo "bench-verify: eargate verify exited $rc" >&2; head -c 2000 "$work/out.json" >&2; exit 1; }
  eargate_times+=("$(echo "$t1 - $t0" | bc -l)")
done
objects=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["sealed-with-primary"])' "$work/out.json")
e_best=$(printf '%s\n' "${etcd_times[@]}" | best)
g_best=$(printf '%s\n' "${eargate_times[@]}" | best)
ratio=$(echo "$g_best / $e_best" | bc -l)
printf 'etcdctl get --prefix /registry/secrets > /dev/null : best %.3fs  (all: %s)\n' "$e_best" "${etcd_times[*]}"
printf 'eargate verify (opened %s values)              : best %.3fs  (all: %s)\n' "$objects" "$g_best" "${eargate_times[*]}"
printf 'ratio eargate/etcdctl: %.2f (target <= 1.5)\n' "$ratio"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$objects" -eq "$count" ] || { echo "bench-verify: expected $count objects, eargate saw $objects" >&2; exit 1; }
if (( $(echo "$ratio > 1.5" | bc -l) )); then echo "bench-verify: SLOWER than target"; exit 1; fi
echo "bench-verify: within target"
