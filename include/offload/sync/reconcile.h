// Deciding what to do when both sides of a tree are known: the three-way merge of the local
// manifest, the remote manifest and the base (what both sides last agreed on).
#pragma once

#include <string>
#include <vector>

#include "offload/sync/entry.h"

namespace offload::sync {

struct Action {
  enum Kind {
    push,           // send the local entry to the remote side (create or replace)
    pull,           // fetch the remote entry to the local side
    delete_remote,  // the local side deleted it
    delete_local,   // the remote side deleted it
    conflict,       // both changed it differently since the base: keep both (see below)
    agree,          // both sides are already equal: just record the base
  };
  Kind kind;
  std::string path;
};

// For every path in local ∪ remote ∪ base, in path order (parents before children; deletions
// are returned children first so that directories are emptied before they are removed):
//   local == remote            → agree
//   local == base (unchanged)  → the remote change wins: pull / delete_local
//   remote == base             → the local change wins: push / delete_remote
//   both changed              → conflict, except: a side that deleted loses to a side that
//                               modified (push or pull of the modification: nothing is lost),
//                               and two directories with different modes are a push.
// With an empty base (first contact) every difference between two present entries is a
// conflict, and a path on one side only is pushed or pulled.
std::vector<Action> reconcile(const Manifest& local, const Manifest& remote, const Manifest& base);

// The name a conflicting copy gets next to the original: "dir/name.ext" →
// "dir/name.offload-conflict-<side>-<stamp>.ext" (the extension is kept so editors still know
// the type). `side` is "remote" or "local"; `stamp` e.g. "20261129-174501".
std::string conflict_name(const std::string& path, const std::string& side,
                          const std::string& stamp);

}  // namespace offload::sync
