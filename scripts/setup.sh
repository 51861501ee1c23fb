#!/usr/bin/env bash
# One command on a fresh Debian 12 machine, as root: install the dependencies, build and install
# docker-offload, start an offload session on the embedded local runner, and load a small
# busybox image into it so that `docker run --rm offload/busybox echo hello` works right away
# (there may be no registry to pull from).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (the local runner creates network namespaces and engines)" >&2
  exit 1
fi
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOFFLOAD_BUILD_TESTS=OFF \
  -DOFFLOAD_PLUGIN_DIR=lib/docker/cli-plugins >/dev/null
cmake --build build -j"$(nproc)"
cmake --install build --prefix /usr/local >/dev/null
echo "installed: $(command -v offloadd), $(command -v offload-runner), /usr/local/lib/docker/cli-plugins/docker-offload"

# Idempotent: a second run keeps the session that is already there.
if ! docker offload status --format json | grep -q '"state":"started"'; then
  docker offload start
fi

# A tiny image made offline from busybox-static, imported into the session engine.
if ! docker image inspect offload/busybox >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
  cp /usr/bin/busybox "$rootfs/bin/busybox"
  for applet in $(/usr/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  tar -C "$rootfs" -c . | docker import - offload/busybox >/dev/null
fi
echo
docker offload status
echo
echo "Try: docker run --rm offload/busybox echo hello"
