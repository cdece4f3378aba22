# eargate — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
VENV := $(CURDIR)/.venv
LISTEN ?= 127.0.0.1:8443
METRICS_LISTEN ?= 127.0.0.1:9090
EARGATE := target/debug/eargate

.PHONY: all build run certs test test-deps lint fmt fuzz test-rust test-chart test-rollout bench bench-rollout scale bench-webhook bench-reencrypt bench-verify image crd docs clean-certs

all: build

# --workspace --all-targets resolves features as `cargo test --workspace --all-targets` does
# (dev-dependencies turn on extra features of tokio, syn, ...), so `make run` after `make test`
# reuses the test build's binary instead of rebuilding about a hundred crates.
build:
	$(CARGO) build --workspace --all-targets

## certs: development CA + serving certificate in certs/ (kept when present)
certs: build
	@if [ ! -f certs/tls.crt ] || [ ! -f certs/tls.key ] || [ ! -f certs/ca.crt ]; then \
	  $(EARGATE) certs --force --out-dir certs --dns-name localhost --ip 127.0.0.1 \
	    --dns-name eargate-webhook.eargate-system.svc; \
	else echo "certs/: using the existing development certificates"; fi

## run: start the admission server locally with dev certificates
run: certs
	@echo
	@echo "eargate serve on https://$(LISTEN) (metrics on http://$(METRICS_LISTEN)/metrics). Try it from another shell:"
	@echo
	@echo "  curl --cacert certs/ca.crt -H 'Content-Type: application/json' \\"
	@echo "       --data @examples/review-remove-active-key.json https://localhost:$(lastword $(subst :, ,$(LISTEN)))/validate"
	@echo
	@echo "  ($(EARGATE) check --old examples/cluster-active.yaml -f examples/cluster-remove-active-key.yaml tries the same edit offline)"
	@echo
	$(EARGATE) serve --listen $(LISTEN) --metrics-listen $(METRICS_LISTEN) \
	  --tls-cert-file certs/tls.crt --tls-key-file certs/tls.key

## test: install what the tests need, then run every test (what CI runs)
test: test-deps lint test-rust test-chart

test-deps:
	bash scripts/install-test-deps.sh

## lint: rustfmt, clippy and cargo-machete (unused dependencies); a machine without one of them says so loudly instead of failing
lint:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then $(CARGO) fmt --all -- --check; \
	else echo; echo "!!!!!!!! make lint: 'cargo fmt' is NOT INSTALLED on this machine; formatting was NOT checked (rustup component add rustfmt) !!!!!!!!"; echo; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then $(CARGO) clippy --workspace --all-targets -- -D warnings; \
	else echo; echo "!!!!!!!! make lint: 'cargo clippy' is NOT INSTALLED on this machine; lints were NOT checked (rustup component add clippy) !!!!!!!!"; echo; fi
	@if $(CARGO) machete --version >/dev/null 2>&1; then $(CARGO) machete; \
	else echo; echo "!!!!!!!! make lint: 'cargo machete' is NOT INSTALLED on this machine; unused dependencies were NOT checked (make test-deps installs it) !!!!!!!!"; echo; fi

# EARGATE_FUZZ_SECONDS: the time-bounded round of the decoder fuzzing (crates/policy/tests/fuzz_review.rs).
test-rust:
	EARGATE_REQUIRE_TOOLS=1 EARGATE_PYTHON=$(VENV)/bin/python EARGATE_FUZZ_SECONDS=60 $(CARGO) test --workspace --all-targets

## test-rollout: only the whole rollout on real API servers (tests/k8s_rollout.rs: the journey and the faults; test-rust runs it too)
test-rollout:
	EARGATE_REQUIRE_TOOLS=1 EARGATE_PYTHON=$(VENV)/bin/python $(CARGO) test --test k8s_rollout -- --nocapture

test-chart:
	@if [ -d tests/chart ]; then EARGATE_REQUIRE_TOOLS=1 $(VENV)/bin/python -m pytest -q tests/chart; fi

fmt:
	$(CARGO) fmt --all

## fuzz: coverage-guided fuzzing of the admission decoder against its serde_json reference
## (nightly Rust and `cargo install cargo-fuzz`); FUZZ_SECONDS=1800 for a long run. New
## inputs go to target/fuzz-corpus; the committed seeds stay in crates/policy/fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz:
	mkdir -p target/fuzz-corpus
	cd crates/policy/fuzz && $(CARGO) +nightly fuzz run review ../../../target/fuzz-corpus corpus/review -- -max_total_time=$(FUZZ_SECONDS)

## bench: the criterion benchmarks of every crate (the control-plane benchmarks are bench-rollout and scale)
bench:
	$(CARGO) bench --workspace --exclude eargate

## bench-rollout: on real kube-apiservers: re-encrypt 20,000 Secrets (eargate reencrypt vs.
## kubectl get | kubectl replace), enabling -> Active for 2,000 and 20,000 Secrets, verify vs.
## etcdctl get --prefix (benches/rollout.rs; report in target/bench/rollout.md)
bench-rollout: test-deps
	EARGATE_REQUIRE_TOOLS=1 $(CARGO) bench --bench rollout

## scale: one seed holding 300 Clusters and 10,000 unrelated Secrets: time until all are
## Active, reconciler RSS (benches/scale.rs; report in target/bench/scale.md)
scale: test-deps
	EARGATE_REQUIRE_TOOLS=1 $(CARGO) bench --bench scale

## bench-webhook: eargate serve vs. a bare TLS endpoint (same stack, fixed reply): rotation UPDATE review, 32 keep-alive TLS connections, 20 s (wrk)
bench-webhook:
	CARGO=$(CARGO) bash scripts/bench-webhook.sh

## bench-reencrypt: eargate reencrypt vs. the API stand-in (20,000 objects, 1 ms/request): objects/s, peak RSS, kubectl-loop floor
bench-reencrypt:
	CARGO=$(CARGO) bash scripts/bench-reencrypt.sh


## image: build the container image (needs docker with BuildKit, or CONTAINER_TOOL=podman)
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= eargate:$(VERSION)
CONTAINER_TOOL ?= docker
image:
	DOCKER_BUILDKIT=1 $(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

## crd: regenerate the chart's copy of the Cluster CRD from the Rust types
crd: build
	$(EARGATE) crd > charts/eargate/files/crd-clusters.yaml.tmp
	mv charts/eargate/files/crd-clusters.yaml.tmp charts/eargate/files/crd-clusters.yaml

## bench-verify: eargate verify vs. etcdctl get --prefix over 50,000 sealed ~1 KB Secrets in a real etcd (target <= 1.5x)
bench-verify:
	bash scripts/bench-verify.sh
