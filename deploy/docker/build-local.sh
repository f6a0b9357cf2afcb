#!/usr/bin/env bash
# Build an image here without a Docker engine or a registry of base images: a Debian 12
# base made from Debian's packages (mmdebstrap; Python 3.11 like python:3.11-slim-bookworm),
# then `buildah bud` with chroot isolation. Opt-in, not CI: as root, about 6 minutes for
# the serving image on 2 busy cores. Needs: apt-get install mmdebstrap buildah podman.
#
#   deploy/docker/build-local.sh serving            # -> localhost/streamsim-serving:dev
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt deploy/docker/build-local.sh serving
#
# CA_BUNDLE: behind a TLS-inspecting proxy, pip in the build must trust the proxy's CA; the
# file is mounted read-only for the build only and is not part of the image.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:?which image: serving, dataflow, refresh or jobs}
work=${WORK_DIR:-/tmp/streamsim-images}
storage=(--storage-driver vfs)
base=localhost/streamsim-base:bookworm-py3.11
mkdir -p "$work"

if ! buildah "${storage[@]}" inspect --type image "$base" >/dev/null 2>&1; then
  mmdebstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates bookworm "$work/base.tar"
  podman "${storage[@]}" import "$work/base.tar" "$base"
fi

mounts=()
if [ -n "${CA_BUNDLE:-}" ]; then
  printf '[global]\ncert = /etc/ssl/certs/build-ca.crt\n' > "$work/pip.conf"
  mounts=(-v "$CA_BUNDLE:/etc/ssl/certs/build-ca.crt:ro" -v "$work/pip.conf:/etc/pip.conf:ro")
fi
buildah "${storage[@]}" bud --isolation chroot --network host --layers=false "${mounts[@]}" \
  --build-arg BASE="$base" -f "deploy/docker/$image.Dockerfile" -t "localhost/streamsim-$image:dev" .
echo "built localhost/streamsim-$image:dev; run it with:"
echo "  buildah ${storage[*]} run --isolation chroot --network host \$(buildah ${storage[*]} from localhost/streamsim-$image:dev) -- streamsim ..."
