#include "offload/tunnel/sealed_records.h"

#include <gcrypt.h>

#include <cstring>
#include <mutex>
#include <string>

namespace offload::tunnel {

namespace {

// libgcrypt wants one initialisation per process before any other call. Its AES-GCM, not
// OpenSSL 3.0's, because on CPUs with VAES it runs about a third faster here (6.1 against
// 4.7 GB/s per core for 64 KiB records on the benchmark machine; docs/benchmarks.md).
void initialise_libgcrypt() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
      gcry_check_version(nullptr);
      // Keys live in ordinary memory, as OpenSSL's do; secure memory would only add warnings.
      gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
      gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    }
  });
}

class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sealed-record"; }
  std::string message(int code) const override {
    switch (static_cast<SealedRecordError>(code)) {
      case SealedRecordError::empty_record: return "sealed record of length 0";
      case SealedRecordError::too_long: return "sealed record longer than 64 KiB";
      case SealedRecordError::forged:
        return "sealed record does not authenticate (changed, replayed or not from the peer)";
      case SealedRecordError::no_key: return "no key for the sealed records' next epoch";
      case SealedRecordError::crypto: return "the AEAD library failed";
    }
    return "sealed record error";
  }
};

}  // namespace

const boost::system::error_category& sealed_record_category() {
  static const Category category;
  return category;
}

boost::system::error_code make_error_code(SealedRecordError e) {
  return {static_cast<int>(e), sealed_record_category()};
}

struct RecordCipher::Handle {
  gcry_cipher_hd_t cipher = nullptr;
  ~Handle() {
    if (cipher) gcry_cipher_close(cipher);
  }
};

RecordCipher::RecordCipher(SealingKeys keys, SealingLimits limits)
    : keys_(std::move(keys)), limits_(limits), handle_(std::make_unique<Handle>()) {
  initialise_libgcrypt();
  if (gcry_cipher_open(&handle_->cipher, GCRY_CIPHER_AES128, GCRY_CIPHER_MODE_GCM, 0) != 0)
    handle_->cipher = nullptr;  // every seal and open fails with `crypto`
}

RecordCipher::~RecordCipher() {
  // The secret is gone with the connection; gcry_cipher_close wipes the key schedule.
  std::memset(secret_.key.data(), 0, secret_.key.size());
  std::memset(secret_.iv.data(), 0, secret_.iv.size());
}

boost::system::error_code RecordCipher::advance(std::size_t plaintext) {
  if (!handle_->cipher) return SealedRecordError::crypto;
  // A new epoch before a record that would go past a limit; never before an epoch's first.
  const bool rotate = keyed_ && sequence_ > 0 &&
                      (sequence_ >= limits_.frames_per_key ||
                       bytes_ + plaintext > limits_.bytes_per_key);
  if (keyed_ && !rotate) return {};
  const std::uint64_t next = keyed_ ? epoch_ + 1 : 0;
  SealingSecret secret;
  if (!keys_ || !keys_(next, secret)) return SealedRecordError::no_key;
  const bool ok = gcry_cipher_setkey(handle_->cipher, secret.key.data(), secret.key.size()) == 0;
  secret_ = secret;
  std::memset(secret.key.data(), 0, secret.key.size());
  if (!ok) return SealedRecordError::crypto;
  keyed_ = true;
  epoch_ = next;
  sequence_ = 0;
  bytes_ = 0;
  return {};
}

void RecordCipher::nonce(std::uint8_t out[12]) const {
  // TLS 1.3's per-record nonce (RFC 8446 5.3): the IV XOR the 64-bit sequence number,
  // big-endian, right-aligned.
  std::memcpy(out, secret_.iv.data(), 12);
  for (int i = 0; i < 8; ++i) out[11 - i] ^= static_cast<std::uint8_t>(sequence_ >> (8 * i));
}

boost::system::error_code RecordCipher::parse_length(const char* header, std::size_t& length) {
  const auto* h = reinterpret_cast<const std::uint8_t*>(header);
  length = std::size_t{h[0]} << 24 | std::size_t{h[1]} << 16 | std::size_t{h[2]} << 8 | h[3];
  if (length == 0) return SealedRecordError::empty_record;
  if (length > kMaxSealedPlaintext) return SealedRecordError::too_long;
  return {};
}

boost::system::error_code RecordCipher::seal(std::span<const char> plaintext, char* out) {
  const std::size_t n = plaintext.size();
  if (n == 0) return SealedRecordError::empty_record;
  if (n > kMaxSealedPlaintext) return SealedRecordError::too_long;
  if (auto ec = advance(n)) return ec;
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  std::uint8_t iv[12];
  nonce(iv);
  auto* c = handle_->cipher;
  char* body = out + kSealedHeaderBytes;
  if (gcry_cipher_setiv(c, iv, sizeof iv) != 0 ||
      gcry_cipher_authenticate(c, out, kSealedHeaderBytes) != 0 ||
      gcry_cipher_encrypt(c, body, n, plaintext.data(), n) != 0 ||
      gcry_cipher_gettag(c, body + n, kSealedTagBytes) != 0)
    return SealedRecordError::crypto;
  ++sequence_;
  bytes_ += n;
  return {};
}

boost::system::error_code RecordCipher::open(std::span<const char> record, char* out) {
  std::size_t n = 0;
  if (record.size() < kSealedHeaderBytes) return SealedRecordError::forged;
  if (auto ec = parse_length(record.data(), n)) return ec;
  if (record.size() != kSealedHeaderBytes + n + kSealedTagBytes) return SealedRecordError::forged;
  if (auto ec = advance(n)) return ec;
  std::uint8_t iv[12];
  nonce(iv);
  auto* c = handle_->cipher;
  const char* body = record.data() + kSealedHeaderBytes;
  if (gcry_cipher_setiv(c, iv, sizeof iv) != 0 ||
      gcry_cipher_authenticate(c, record.data(), kSealedHeaderBytes) != 0)
    return SealedRecordError::crypto;
  // In place when asked: libgcrypt takes a null input for that.
  const gcry_error_t decrypted = out == body ? gcry_cipher_decrypt(c, out, n, nullptr, 0)
                                             : gcry_cipher_decrypt(c, out, n, body, n);
  if (decrypted != 0) return SealedRecordError::crypto;
  const gcry_error_t checked = gcry_cipher_checktag(c, body + n, kSealedTagBytes);
  if (gcry_err_code(checked) == GPG_ERR_CHECKSUM) return SealedRecordError::forged;
  if (checked != 0) return SealedRecordError::crypto;
  ++sequence_;
  bytes_ += n;
  return {};
}

}  // namespace offload::tunnel
