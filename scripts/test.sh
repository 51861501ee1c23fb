#!/usr/bin/env bash
# Builds docker-offload and runs every test: unit, fuzz-corpus replays, in-process integration,
# and end to end with the real docker CLI against real dockerd engines (needs root); then the
# Debian packages are built and checked.
#   sudo scripts/test.sh              # everything
#   sudo scripts/test.sh -L unit      # extra arguments go to ctest (here: one label)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOFFLOAD_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
# The whole suite (no ctest arguments) also builds the Debian packages and checks them.
if [ $# -eq 0 ]; then
  BUILD_DIR="$build" scripts/package.sh
  tests/packaging/check-debs.sh "$build/packages"
  tests/packaging/package-e2e.sh "$build/packages"
fi
