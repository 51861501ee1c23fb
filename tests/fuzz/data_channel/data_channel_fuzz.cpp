// The data channel's header parsers (what the runner reads from anyone who completes a TLS
// handshake) on arbitrary bytes: they never crash, never claim more bytes than they were given,
// ask for more only up to the limit, and give the same verdict for a complete header whatever
// follows it. Whatever parses re-encodes to a header that parses to the same message.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "offload/tunnel/data_channel.h"

namespace dc = offload::tunnel::data_channel;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto open = dc::parse_open(input);
  if (open.status == dc::ParseStatus::complete) {
    if (open.consumed > input.size()) std::abort();
    // Trailing bytes (the first chunk, pipelined) change nothing.
    auto again = dc::parse_open(std::string(input.substr(0, open.consumed)) + "trailing");
    if (again.status != dc::ParseStatus::complete || again.consumed != open.consumed) std::abort();
    // "ODC1", "ODC2" or "ODC3": the version comes back too.
    if (open.version < 1 || open.version > 3) std::abort();
    auto round = dc::parse_open(dc::encode_open(open.message, open.version));
    if (round.status != dc::ParseStatus::complete || round.version != open.version ||
        round.message.SerializeAsString() != open.message.SerializeAsString())
      std::abort();
  } else if (open.status == dc::ParseStatus::need_more) {
    if (open.needed <= input.size() || open.needed > 8 + dc::kMaxMessageBytes) std::abort();
  }

  auto accept = dc::parse_accept(input);
  if (accept.status == dc::ParseStatus::complete) {
    if (accept.consumed > input.size()) std::abort();
  } else if (accept.status == dc::ParseStatus::need_more) {
    if (accept.needed <= input.size() || accept.needed > 4 + dc::kMaxMessageBytes) std::abort();
  }
  auto target = dc::parse_target(input);
  if (target.status == dc::ParseStatus::complete) {
    if (target.consumed > input.size()) std::abort();
    auto round = dc::parse_target(dc::encode_target(target.message));
    if (round.status != dc::ParseStatus::complete) std::abort();
  } else if (target.status == dc::ParseStatus::need_more) {
    if (target.needed <= input.size() || target.needed > 4 + dc::kMaxMessageBytes) std::abort();
  }
  return 0;
}
