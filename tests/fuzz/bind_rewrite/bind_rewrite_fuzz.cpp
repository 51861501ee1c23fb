// find_bind_mounts / replace_bind_sources on arbitrary JSON: each either answers or throws
// std::invalid_argument; replacing every source with itself changes nothing, and replacing
// them all with fresh paths yields exactly those paths in the same places.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include "offload/daemon/bind_rewrite.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using offload::daemon::BindMount;
  auto body = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return 0;
  std::vector<BindMount> found;
  try {
    found = offload::daemon::find_bind_mounts(body);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  std::map<std::string, std::string> same, fresh;
  for (const auto& m : found) {
    if (m.source.empty() || m.source.front() != '/') std::abort();
    same[m.source] = m.source;
    fresh.emplace(m.source, "/runner/" + std::to_string(fresh.size()));
  }
  auto copy = body;
  offload::daemon::replace_bind_sources(copy, same);  // must not throw: find did not
  if (copy != body) std::abort();
  offload::daemon::replace_bind_sources(copy, fresh);
  auto after = offload::daemon::find_bind_mounts(copy);
  if (after.size() != found.size()) std::abort();
  for (std::size_t i = 0; i < found.size(); ++i) {
    if (after[i].source != fresh.at(found[i].source)) std::abort();
    if (after[i].read_only != found[i].read_only || after[i].from_mounts != found[i].from_mounts)
      std::abort();
  }
  return 0;
}
