// The small parsers that read files and flags: the runner's token file, offloadd's state.json,
// durations, certificate fingerprints, join strings and the session state a --live-restore
// runner keeps. Each either parses or says why; nothing else.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "offload/common/duration.h"
#include "offload/common/join_string.h"
#include "offload/common/token.h"
#include "offload/daemon/state_file.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session_snapshot.h"
#include "offload/tls/tls.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  try {
    auto tokens = offload::runner::parse_token_file(input, "tokens");
    for (const auto& [name, token] : tokens)
      if (name.empty() || token.size() < 16) std::abort();
  } catch (const std::runtime_error& e) {
    // The message names the file and line, and never echoes a token back.
    if (std::string(e.what()).rfind("tokens", 0) != 0) std::abort();
  }
  try {
    auto s = offload::daemon::parse_persisted_session(input, "state.json");
    // Round trip: what we write, we read back the same.
    auto again = offload::daemon::parse_persisted_session(offload::daemon::to_json(s), "again");
    if (again.session_id != s.session_id || again.previous_context != s.previous_context)
      std::abort();
  } catch (const std::runtime_error&) {
  }
  try {
    const std::string id = "0123456789abcdef0123456789abcdef";
    auto snap = offload::runner::parse_session_snapshot(input, id);
    // Only the session's own id, a SHA-256 and mounts that stay one path component get through;
    // and what we write, we read back the same.
    if (snap.id != id || snap.token_sha256.size() != 64) std::abort();
    for (const auto& [mount, file] : snap.mounts)
      if (mount.size() != 16 || (file && (file->find('/') != std::string::npos || *file == "..")))
        std::abort();
    if (offload::runner::parse_session_snapshot(offload::runner::snapshot_json(snap), id) != snap)
      std::abort();
  } catch (const std::runtime_error&) {
  }
  if (auto d = offload::parse_duration(input)) {
    if (d->count() < 0) std::abort();
    if (offload::parse_duration(offload::format_duration(*d)) != d) std::abort();
  }
  auto fp = offload::normalize_fingerprint(input);
  if (!fp.empty() && (fp.size() != 71 || offload::normalize_fingerprint(fp) != fp))
    std::abort();
  try {
    // A join string that parses formats back to one that parses the same; the error never
    // echoes the token.
    auto join = offload::parse_join_string(input);
    auto again = offload::parse_join_string(offload::format_join_string(join));
    if (again.address != join.address || again.fingerprint != join.fingerprint ||
        again.token != join.token || join.token.size() < 16)
      std::abort();
  } catch (const offload::JoinStringError& e) {
    if (std::string(e.what()).find("join string") == std::string::npos) std::abort();
  }
  return 0;
}
