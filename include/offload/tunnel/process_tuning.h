// Process-wide settings for a program that moves tunnel bytes (offloadd, offload-runner). Call
// once at start-up, before any thread exists.
#pragma once

namespace offload::tunnel {

// - glibc malloc keeps freed tunnel buffers (256 KiB frames, gRPC's slices) for the next frame
//   instead of handing them back to the kernel and faulting them in again: a profile of the
//   throughput benchmark showed 5-7 % of the runner's CPU in page faults and unmapping. The
//   thresholds are fixed (which also stops glibc's own adjustment of them): chunks below 1 MiB
//   come from the heap, an arena keeps up to 16 MiB free at its top, and at most 4 arenas
//   exist, so what is kept stays bounded (measured: runner peak RSS with 16 bulk streams about
//   the same as before, 135-150 MiB; with 32 MiB kept per arena and no arena limit it was 240).
// - Abseil's mutex deadlock detection (on in Debian's build) is off: it records every lock
//   order of gRPC's mutexes in a graph, about 2 % of the CPU of a request/response run.
void tune_for_data_plane();

}  // namespace offload::tunnel
