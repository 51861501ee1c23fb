// Sealed records: the multiplexed data channel's record protection after its TLS handshake
// ("ODC3", data_channel.h).
//
// TLS authenticates the runner (its pinned certificate) and, with the session's token inside,
// the client; then both sides derive one AES-128-GCM key and IV per direction from the TLS
// session with the TLS 1.3 exporter (RFC 8446 7.5) and frame the bytes themselves, as QUIC
// does with its TLS handshake and as kernel TLS does with TLS's own keys. The protection is
// TLS 1.3's: the same AEAD, a nonce that is the IV XOR a per-direction sequence number, the
// header authenticated with the payload. What it saves is the part of OpenSSL's record layer
// that costs copies: SSL_write copies the plaintext into a record buffer of its own that the
// socket's BIO copies out again, and SSL_read takes records through a copy into its buffer and
// another out of it. Sealing here encrypts from the sender's bytes straight into the batch for the socket,
// and opening decrypts from the received bytes straight into the reader's buffer: one pass
// over every byte per side (docs/benchmarks.md, "Sealed records").
//
// A record: a 4-byte big-endian plaintext length (1 ... kMaxSealedPlaintext), the ciphertext,
// a 16-byte GCM tag; the 4 length bytes are the additional authenticated data. A record that
// does not open (a changed bit, a record replayed, dropped or reordered: the nonce is the
// sequence number) ends the connection. Keys change every kFramesPerKey records or
// kBytesPerKey plaintext bytes, whichever comes first, far inside AES-GCM's limits (RFC 8446
// 5.5 allows 2^24.5 full-size TLS records); both sides count, so no message is needed: epoch n's
// key and IV are the exporter's output for the direction's label and the context n.
#pragma once

#include <boost/system/error_code.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace offload::tunnel {

inline constexpr std::size_t kSealedHeaderBytes = 4;
inline constexpr std::size_t kSealedTagBytes = 16;
// The largest plaintext of one record: a receiver holds a whole record before it opens it.
inline constexpr std::size_t kMaxSealedPlaintext = 64 * 1024;
inline constexpr std::size_t kMaxSealedRecord =
    kSealedHeaderBytes + kMaxSealedPlaintext + kSealedTagBytes;

// One direction's key material for one epoch.
struct SealingSecret {
  std::array<std::uint8_t, 16> key{};
  std::array<std::uint8_t, 12> iv{};
};

// Where each epoch's secret comes from (the TLS exporter; a fixed function in tests). An empty
// result (false) means the secret cannot be had: the connection ends.
using SealingKeys = std::function<bool(std::uint64_t epoch, SealingSecret& out)>;

// When keys change. Tests make these small to cross epochs quickly.
struct SealingLimits {
  std::uint64_t frames_per_key = std::uint64_t{1} << 24;
  std::uint64_t bytes_per_key = std::uint64_t{1} << 34;  // 16 GiB
};

enum class SealedRecordError {
  empty_record = 1,  // a length of zero: never sent by us
  too_long,          // a length over kMaxSealedPlaintext
  forged,            // the tag does not match: changed, replayed, reordered or not ours
  no_key,            // the key source failed
  crypto,            // the AEAD library failed (out of memory, say)
};
const boost::system::error_category& sealed_record_category();
boost::system::error_code make_error_code(SealedRecordError e);

// One direction's AEAD state: the epoch's key, the sequence number, the byte count.
class RecordCipher {
 public:
  RecordCipher(SealingKeys keys, SealingLimits limits = {});
  ~RecordCipher();
  RecordCipher(const RecordCipher&) = delete;
  RecordCipher& operator=(const RecordCipher&) = delete;

  // Seals `plaintext` (1 ... kMaxSealedPlaintext bytes) into `out`, which has room for
  // kSealedHeaderBytes + plaintext.size() + kSealedTagBytes. `out` may not overlap `plaintext`.
  boost::system::error_code seal(std::span<const char> plaintext, char* out);

  // A record's plaintext length from its first kSealedHeaderBytes bytes, or an error for a
  // length no sender of ours writes.
  static boost::system::error_code parse_length(const char* header, std::size_t& length);

  // Opens one whole record (`record.size()` == header + length + tag, as parse_length said)
  // into `out` (room for the plaintext; `out` may be the record's ciphertext itself, i.e.
  // record.data() + kSealedHeaderBytes, to open in place). On error, `out` holds garbage that
  // nobody may use, and the connection must end.
  boost::system::error_code open(std::span<const char> record, char* out);

  std::uint64_t epoch() const { return epoch_; }

 private:
  boost::system::error_code advance(std::size_t plaintext);
  void nonce(std::uint8_t out[12]) const;

  struct Handle;
  SealingKeys keys_;
  SealingLimits limits_;
  std::unique_ptr<Handle> handle_;
  SealingSecret secret_;
  bool keyed_ = false;
  std::uint64_t epoch_ = 0;
  std::uint64_t sequence_ = 0;  // records in this epoch so far
  std::uint64_t bytes_ = 0;     // plaintext bytes in this epoch so far
};

}  // namespace offload::tunnel

namespace boost::system {
template <>
struct is_error_code_enum<offload::tunnel::SealedRecordError> : std::true_type {};
}  // namespace boost::system
