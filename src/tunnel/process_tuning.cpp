#include "offload/tunnel/process_tuning.h"

#include <malloc.h>

#include <absl/synchronization/mutex.h>

namespace offload::tunnel {

void tune_for_data_plane() {
  ::mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
  ::mallopt(M_ARENA_MAX, 4);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace offload::tunnel
