// The opening side of ODC3's sealed records (sealed_records.h) on arbitrary bytes: what anyone
// between the two ends, or a peer with a session's token, can put on the wire after the
// accept. The bytes are cut into records as TlsSocket's reader cuts them (a 4-byte length,
// then the body and tag) and each whole one is opened, under keys that change every few
// records. Whatever they are, nothing crashes, reads out of bounds or opens: a record that
// opens is one this target sealed itself. Then the same bytes, sealed and opened in pieces of
// sizes they choose, must come back unchanged.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "offload/tunnel/sealed_records.h"

namespace tunnel = offload::tunnel;

namespace {
tunnel::SealingKeys keys() {
  return [](std::uint64_t epoch, tunnel::SealingSecret& out) {
    out.key.fill(static_cast<std::uint8_t>(0x5a + epoch));
    out.iv.fill(static_cast<std::uint8_t>(0xa5 ^ epoch));
    return true;
  };
}
const tunnel::SealingLimits kLimits{.frames_per_key = 3, .bytes_per_key = 1 << 16};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  {
    tunnel::RecordCipher opener(keys(), kLimits);
    std::string plaintext;
    for (std::size_t at = 0; at + tunnel::kSealedHeaderBytes <= size;) {
      std::size_t length = 0;
      if (tunnel::RecordCipher::parse_length(bytes + at, length)) break;
      if (length > tunnel::kMaxSealedPlaintext) std::abort();
      const std::size_t record = tunnel::kSealedHeaderBytes + length + tunnel::kSealedTagBytes;
      if (size - at < record) break;
      plaintext.resize(length);
      // Random bytes never carry a valid tag (2^-128): the first record ends it.
      if (!opener.open({bytes + at, record}, plaintext.data())) std::abort();
      break;
    }
  }
  if (size == 0) return 0;
  // Round trip: records of the sizes the first byte picks, over key changes.
  tunnel::RecordCipher sealer(keys(), kLimits), opener(keys(), kLimits);
  const std::size_t piece = 1 + data[0] % 97;
  std::string record, opened;
  for (std::size_t at = 0; at < size; at += piece) {
    const std::size_t n = std::min(piece, size - at);
    record.resize(tunnel::kSealedHeaderBytes + n + tunnel::kSealedTagBytes);
    if (sealer.seal({bytes + at, n}, record.data())) std::abort();
    opened.resize(n);
    if (opener.open(record, opened.data())) std::abort();
    if (std::memcmp(opened.data(), bytes + at, n) != 0) std::abort();
  }
  return 0;
}
