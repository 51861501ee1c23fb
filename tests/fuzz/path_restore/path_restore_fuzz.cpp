// ResponseRewriter on arbitrary engine responses: the first byte picks where the response is
// split into two reads. Whatever the bytes, it never crashes, consumes no more than it is given,
// gives the same output however the reads split, and with no mappings changes nothing.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "offload/daemon/path_restore.h"

using offload::daemon::PathMapping;
using offload::daemon::ResponseRewriter;

namespace {

const std::vector<PathMapping> kMappings = {
    {"/r/sync/m1", "/home/me/p", ""},
    {"/r/sync/m1/sub", "/home/me/p/sub", "/home/me/p/sub/"},
    {"/r/sync/m2", "/a \"b\" <c>", ""},
};

// Everything the rewriter makes of `input` fed in the given pieces, until it is done.
std::string run(const std::vector<PathMapping>& mappings, std::string_view input,
                std::size_t cut, std::size_t& consumed) {
  ResponseRewriter rw(mappings, 64);
  std::string out;
  consumed = 0;
  for (auto part : {input.substr(0, cut), input.substr(cut)}) {
    if (rw.done()) break;
    auto fed = rw.feed(part);
    if (fed.consumed > part.size()) std::abort();
    if (fed.consumed < part.size() && !rw.done()) std::abort();
    consumed += fed.consumed;
    out += fed.out;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t cut = data[0] % (input.size() + 1);
  std::size_t whole_consumed = 0, split_consumed = 0;
  const std::string whole = run(kMappings, input, input.size(), whole_consumed);
  const std::string split = run(kMappings, input, cut, split_consumed);
  if (whole != split || whole_consumed != split_consumed) std::abort();
  std::size_t plain_consumed = 0;
  const std::string plain = run({}, input, cut, plain_consumed);
  if (plain != input.substr(0, plain_consumed)) std::abort();
  return 0;
}
