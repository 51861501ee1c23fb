// offloadd's config parser on arbitrary bytes: it may only ever throw ConfigError, with a one-line
// printable message, and whatever it accepts must survive to_json unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "offload/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto config = offload::parse_config(text, "config.json");
    auto again = offload::parse_config(offload::to_json(config), "to_json");
    if (again.version != config.version || again.default_account != config.default_account ||
        again.start_timeout != config.start_timeout || again.log_level != config.log_level ||
        again.local.address_pool != config.local.address_pool ||
        again.idle_timeout != config.idle_timeout || again.client_ttl != config.client_ttl ||
        again.max_session_duration != config.max_session_duration ||
        again.accounts.size() != config.accounts.size() ||
        offload::to_json(again) != offload::to_json(config))
      std::abort();
  } catch (const offload::ConfigError& e) {
    for (const char* p = e.what(); *p; ++p)
      if (static_cast<unsigned char>(*p) < 0x20 || static_cast<unsigned char>(*p) >= 0x7f)
        std::abort();
  }
  return 0;
}
