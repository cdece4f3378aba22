#!/usr/bin/env bash
# Builds the real control plane the tests run (kube-apiserver, kubectl, etcd) from Go modules,
# once per version, into a cache; a later run reuses it. No Kubernetes or etcd source is kept
# in this repository: tools/kubernetes and tools/etcd hold only go.mod, go.sum and the mains.
#
#   bash scripts/build-control-plane.sh      # prints the directory that holds the binaries
#
# Cache: $EARGATE_TOOLS_CACHE (default ~/.cache/eargate-tools)/<name>-<version>-<wrapper hash>/.
# The repository's .tools/bin then links to the cached binaries; the tests look there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cache=${EARGATE_TOOLS_CACHE:-$HOME/.cache/eargate-tools}
mkdir -p "$cache" .tools/bin

command -v go >/dev/null || {
  echo "build-control-plane: 'go' is not on PATH. kube-apiserver, kubectl and etcd are built" >&2
  echo "from Go modules; install Go 1.26 or later." >&2
  exit 1
}

# The version a wrapper pins, read from its go.mod (the one place it is written).
pinned() { sed -n "s|^\s*\(require \)\?$2 \(v[^ ]*\)$|\2|p" "tools/$1/go.mod" | head -1; }
# A wrapper's content hash: a changed go.mod, go.sum or main builds anew.
wrapper_hash() { (cd "tools/$1" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12; }

# build NAME MODULE-PATH OUTPUTS... : go build every cmd/<output> of tools/NAME into the cache.
build() {
  local name=$1 module=$2; shift 2
  local version hash dir ldflags=()
  version=$(pinned "$name" "$module")
  [ -n "$version" ] || { echo "build-control-plane: no 'require $module vX' line in tools/$name/go.mod" >&2; exit 1; }
  hash=$(wrapper_hash "$name")
  dir="$cache/$name-$version-$hash"
  local missing=0 out
  for out in "$@"; do [ -x "$dir/$out" ] || missing=1; done
  if [ $missing = 1 ]; then
    echo "build-control-plane: building $name $version ($*) into $dir" >&2
    if [ "$name" = kubernetes ]; then
      # /version and kubectl version tell the truth: the release, not v0.0.0-master.
      local minor=${version#v1.}; minor=${minor%%.*}
      local date; date=$(cd "tools/$name" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$module" 2>/dev/null || true)
      local x
      for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=("-X $x.gitVersion=$version" "-X $x.gitMajor=1" "-X $x.gitMinor=$minor"
                  "-X $x.gitTreeState=clean" "-X $x.buildDate=${date:-unknown}")
      done
    fi
    mkdir -p "$dir.partial"
    local start=$SECONDS
    for out in "$@"; do
      # -pgo=off: upstream's default.pgo profile would only slow a cold build on two cores.
      (cd "tools/$name" && CGO_ENABLED=0 go build -trimpath -pgo=off -buildvcs=false \
         -ldflags "-s -w ${ldflags[*]}" -o "$dir.partial/$out" "./cmd/$out")
    done
    rm -rf "$dir" && mv "$dir.partial" "$dir"
    echo "build-control-plane: $name $version built in $((SECONDS - start)) s" >&2
  fi
  for out in "$@"; do ln -sfn "$dir/$out" "$repo/.tools/bin/$out"; done
}

build etcd go.etcd.io/etcd/server/v3 etcd etcdctl
build kubernetes k8s.io/kubernetes kube-apiserver kubectl
echo "$repo/.tools/bin"
