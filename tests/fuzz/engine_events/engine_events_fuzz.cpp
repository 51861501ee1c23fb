// Feeds arbitrary bytes to what the runner reads from a session engine for port forwarding: the
// /events stream splitter (whole, and cut at points the input chooses, which must not change
// the result), the event classifier, and the container list parser.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "offload/runner/port_watcher.h"

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "engine events contract violated: %s\n", what);
  std::abort();
}

struct Split {
  std::vector<std::string> events;
  std::error_code error;
};

Split split(std::string_view stream, std::size_t max, std::string_view cuts) {
  offload::runner::EngineEventSplitter splitter(max);
  Split out;
  std::size_t at = 0, next_cut = 0;
  while (at < stream.size() && !out.error) {
    const std::size_t n =
        cuts.empty() ? stream.size()
                     : std::max(1, static_cast<unsigned char>(cuts[next_cut++ % cuts.size()]) % 64);
    out.error = splitter.feed(stream.substr(at, n), out.events);
    at += n;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace offload::runner;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The first byte picks the size limit, the next few the read sizes; the rest is the stream.
  const std::size_t max = input.empty() ? 1 << 20 : 16 + static_cast<unsigned char>(input[0]) * 64;
  const std::string_view cuts = input.substr(std::min<std::size_t>(1, input.size()), 4);
  const std::string_view stream = input.substr(std::min<std::size_t>(5, input.size()));

  const Split whole = split(stream, max, {});
  const Split pieces = split(stream, max, cuts);
  check(whole.events == pieces.events, "read sizes changed the events");
  check(!whole.error == !pieces.error, "read sizes changed the outcome");
  for (const auto& event : whole.events) {
    check(event.size() >= 2 && event.front() == '{' && event.back() == '}', "not an object");
    check(event.size() <= max, "event over the limit");
    (void)event_may_change_ports(event);
  }
  (void)event_may_change_ports(input);

  try {
    const auto ports = published_ports_from_containers_json(input);
    check(std::is_sorted(ports.begin(), ports.end(),
                         [](const auto& a, const auto& b) {
                           return a.container_id() < b.container_id();
                         }),
          "snapshot not sorted by container");
    check(same_ports(ports, ports), "snapshot differs from itself");
    for (const auto& p : ports)
      check(p.host_port() > 0 && p.host_port() <= 65535 && p.container_port() <= 65535,
            "port out of range");
  } catch (const std::runtime_error&) {
    // The documented rejection.
  }
  return 0;
}
