#!/usr/bin/env bash
# Builds the edgenode image FROM scratch with a binary built on this host
# (no registry needed). Used by `make image`.
#   deploy/docker/build-image.sh [IMAGE]      default edgenode:local
# Env: GO (go command), VERSION (stamped into the binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-edgenode:local}
go=${GO:-go}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/data" && chmod 700 "$ctx/rootfs/data"
CGO_ENABLED=0 "$go" build -tags hashicorpmetrics -trimpath \
  -ldflags "-s -w -X main.version=$version" -o "$ctx/edgenode" ./cmd/edgenode
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
else
  echo "build-image: no /etc/ssl/certs/ca-certificates.crt on this host; push (APNs/FCM) TLS will fail in the image" >&2
  : >"$ctx/ca-certificates.crt"
fi
docker build -q -f deploy/docker/Dockerfile.prebuilt -t "$image" "$ctx" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
