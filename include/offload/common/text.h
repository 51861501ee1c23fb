// Small string helpers that several libraries need in the same form.
#pragma once

#include <string>
#include <string_view>

namespace offload {

// The items of `range` (anything iterable whose elements convert to std::string_view), with
// `separator` between them.
template <class Range>
std::string join(const Range& range, std::string_view separator = ", ") {
  std::string out;
  bool first = true;
  for (const auto& item : range) {
    if (!first) out += separator;
    first = false;
    out += std::string_view(item);
  }
  return out;
}

// How logs and messages name a session (or an engine's session): the first 8 characters of its
// 32-hex-digit id, enough to tell sessions apart and never the whole secret-looking string.
inline std::string short_session_id(std::string_view id) { return std::string(id.substr(0, 8)); }

}  // namespace offload
