// The docker CLI's config.json as we read it before touching it: arbitrary bytes may only give a
// context name or a one-line ContextError.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "offload/dockerctx/context_store.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    if (offload::parse_current_context(text, "config.json").empty()) std::abort();
  } catch (const offload::ContextError& e) {
    if (std::string_view(e.what()).find('\n') != std::string_view::npos) std::abort();
  }
  return 0;
}
