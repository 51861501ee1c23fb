#!/usr/bin/env bash
# Builds the two Debian packages, docker-offload and offload-runner, into $BUILD_DIR/packages/
# (default build/packages/), from the build directory the tests use when it exists.
#   scripts/package.sh            # build (if needed) and package
# The version comes from `git describe` (see packaging/CMakeLists.txt) and the file times from
# the last commit (SOURCE_DATE_EPOCH), so the same commit gives the same package contents.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOFFLOAD_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target docker-offload offloadd offload-runner man-pages
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
rm -rf "$build/packages"
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/packages/*.deb
