#include "offload/sync/reconcile.h"

#include <algorithm>
#include <set>

namespace offload::sync {
namespace {

const Entry* find(const Manifest& m, const std::string& path) {
  auto it = m.find(path);
  return it == m.end() ? nullptr : &it->second;
}

bool same(const Entry* a, const Entry* b) {
  if (!a || !b) return a == b;
  return a->same_as(*b);
}

bool is_dir(const Entry* e) { return e && e->type == EntryType::directory; }

Action::Kind decide(const Entry* local, const Entry* remote, const Entry* base) {
  if (same(local, remote)) return Action::agree;
  if (same(local, base)) return remote ? Action::pull : Action::delete_local;
  if (same(remote, base)) return local ? Action::push : Action::delete_remote;
  // Both sides changed it. A deletion loses to a modification: nothing is lost that way.
  if (!local) return Action::pull;
  if (!remote) return Action::push;
  // Two directories can only differ in mode, and there is no second copy of a directory to keep.
  if (is_dir(local) && is_dir(remote)) return Action::push;
  return Action::conflict;
}

bool is_deletion(Action::Kind k) { return k == Action::delete_local || k == Action::delete_remote; }

}  // namespace

std::vector<Action> reconcile(const Manifest& local, const Manifest& remote, const Manifest& base) {
  std::set<std::string> paths;
  for (const auto* m : {&local, &remote, &base})
    for (const auto& [path, entry] : *m) paths.insert(path);

  std::vector<Action> actions;
  actions.reserve(paths.size());
  // Directories that must exist on the local (remote) side because something below them is
  // pulled (pushed): a deletion of one of them would take the change below with it.
  std::set<std::string> needed_local, needed_remote;
  for (const auto& path : paths) {
    Action::Kind kind = decide(find(local, path), find(remote, path), find(base, path));
    actions.push_back({kind, path});
    if (kind != Action::pull && kind != Action::push) continue;
    auto& needed = kind == Action::pull ? needed_local : needed_remote;
    for (std::string dir = parent_path(path); !path.empty();) {
      if (!needed.insert(dir).second || dir.empty()) break;
      dir = parent_path(dir);
    }
  }
  for (auto& a : actions) {
    const Entry* l = find(local, a.path);
    const Entry* r = find(remote, a.path);
    if (needed_local.count(a.path)) {
      // The local side deleted the directory (or replaced it) but the remote side changed
      // something inside: bring the directory back rather than lose that change.
      if (a.kind == Action::delete_remote) a.kind = Action::pull;
      else if (a.kind == Action::push && !is_dir(l) && is_dir(r)) a.kind = Action::conflict;
    }
    if (needed_remote.count(a.path)) {
      if (a.kind == Action::delete_local) a.kind = Action::push;
      else if (a.kind == Action::pull && !is_dir(r) && is_dir(l)) a.kind = Action::conflict;
    }
  }

  // Deletions first, deepest first (reverse path order puts children before their parents),
  // then everything else in path order (parents before children).
  std::vector<Action> ordered;
  ordered.reserve(actions.size());
  for (auto it = actions.rbegin(); it != actions.rend(); ++it)
    if (is_deletion(it->kind)) ordered.push_back(*it);
  for (auto& a : actions)
    if (!is_deletion(a.kind)) ordered.push_back(std::move(a));
  return ordered;
}

std::string conflict_name(const std::string& path, const std::string& side,
                          const std::string& stamp) {
  auto slash = path.rfind('/');
  std::size_t name_start = slash == std::string::npos ? 0 : slash + 1;
  std::string suffix = ".offload-conflict-" + side + "-" + stamp;
  auto dot = path.rfind('.');
  // No extension: none at all, a dotfile's leading dot (".env"), or a trailing dot ("name.").
  if (dot == std::string::npos || dot <= name_start || dot + 1 == path.size())
    return path + suffix;
  return path.substr(0, dot) + suffix + path.substr(dot);
}

}  // namespace offload::sync
