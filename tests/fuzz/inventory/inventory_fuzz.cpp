// Feeds arbitrary bytes to both inventory parsers as the engine's answer. Each must either
// return messages that keep the documented invariants or throw the one documented
// std::runtime_error; anything else (another exception, a crash) aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "offload/runner/inventory.h"

namespace {

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "inventory contract violated: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) violated(what);
}

template <typename Parse>
void parse_or_reject(Parse parse, std::string_view input, std::string_view query) {
  const std::string prefix =
      "the session engine returned an unexpected answer to " + std::string(query) + ": ";
  try {
    parse(input);
  } catch (const std::runtime_error& e) {
    check(std::string_view(e.what()).starts_with(prefix), "error without the documented prefix");
  } catch (...) {
    violated("an exception other than std::runtime_error escaped");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace offload::runner;
  parse_or_reject(
      [](std::string_view in) {
        for (const auto& c : parse_containers(in)) {
          check(!c.id().empty(), "container without id");
          for (const auto& p : c.ports())
            check(p.host_port() <= 65535 && p.container_port() <= 65535, "port out of range");
        }
      },
      input, "GET /containers/json");
  parse_or_reject(
      [](std::string_view in) {
        for (const auto& i : parse_images(in)) {
          check(!i.id().empty(), "image without id");
          for (const auto& t : i.repo_tags()) check(t != "<none>:<none>", "placeholder tag kept");
        }
      },
      input, "GET /images/json");
  return 0;
}
