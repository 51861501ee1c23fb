#!/usr/bin/env bash
# Installs every Debian 12 package docker-offload needs to build, run and test.
# Idempotent: safe to run again; apt skips what is already installed.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev
  libgtest-dev libgmock-dev libsystemd-dev dpkg-dev prometheus-cpp-dev go-md2man graphviz
  docker.io busybox-static iproute2 iptables util-linux mount e2fsprogs uidmap procps curl
  docker-registry
  docker-compose bash-completion fish zsh
  libnghttp2-dev libgcrypt20-dev
)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get install needs it)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
