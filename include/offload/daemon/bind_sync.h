// What the Docker API proxy needs from bind-mount synchronisation (implemented by SyncManager).
//
// Completion callbacks run on a synchroniser thread, never inline on the caller's stack: the
// caller posts back to its own executor.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "offload/daemon/path_restore.h"

namespace offload::daemon {

class BindSync {
 public:
  virtual ~BindSync() = default;

  struct Prepared {
    bool ok = true;
    int status = 0;       // when !ok: the HTTP status to answer with (400 bad mount, 500/503 ...)
    std::string message;  // when !ok: a user-facing line for the JSON error body
    bool rewritten = false;  // false: forward the original body unchanged
    std::string body;        // when rewritten: the new JSON body
  };
  // For the JSON body of a `POST /containers/create`: makes sure every bind source is
  // synchronised to the session (first sync complete, local changes so far applied on the
  // runner) and returns the body with each bind source replaced by the runner-side path.
  // Named volumes, tmpfs and everything else are left alone; a body without bind mounts comes
  // back with rewritten = false.
  virtual void prepare_create(std::string body, std::function<void(Prepared)> done) = 0;

  // A barrier on every synchronised mount, in both directions: local changes made so far are
  // applied on the runner and changes containers made so far are applied locally. Used before
  // `POST /containers/{id}/start` is forwarded and before the body of a `wait` response is
  // delivered, so that `docker run` returns only after its output files are local.
  virtual void flush(std::function<void()> done) = 0;

  // The runner paths of the replicas bind sources were rewritten to, and the local paths to
  // show for them in the engine's answers (see path_restore.h).
  virtual std::vector<PathMapping> path_mappings() const { return {}; }

  // True once any mount is synchronised (no flush is needed before that).
  virtual bool has_mounts() const = 0;
};

}  // namespace offload::daemon
