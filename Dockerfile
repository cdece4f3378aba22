# syntax=docker/dockerfile:1.7
# eargate: one image for the webhook (`eargate serve`), the reconciler (`eargate reconcile`)
# and its re-encryption Jobs (`eargate reencrypt`). Build with `make image`.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: release binary from the locked dependency set
FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# protoc and the protobuf well-known types: the etcd client's build step compiles .proto files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin eargate \
 && install -D -m 0755 target/release/eargate /out/eargate \
 && /out/eargate --version

# ---- runtime: glibc + libgcc only, no shell, no package manager, uid/gid 65532
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="eargate" \
      org.opencontainers.image.description="Admission gate and reconciler for Kubernetes encryption at rest on Kubermatic Clusters" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/eargate /usr/local/bin/eargate
# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/eargate"]
CMD ["--help"]
