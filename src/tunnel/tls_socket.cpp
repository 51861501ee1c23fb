#include "offload/tunnel/tls_socket.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace offload::tunnel {
namespace asio = boost::asio;

namespace {
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// One recv() takes up to this much: sixteen full records.
constexpr std::size_t kReceiveBytes = 256 * 1024 + 16 * 64;
static_assert(kReceiveBytes >= kMaxSealedRecord, "a sealed record must fit the receive buffer");

// The exporter labels of the two directions (RFC 8446 7.5: "EXPORTER-" names an application's
// own). The epoch is the exporter's context.
constexpr std::string_view kClientSends = "EXPORTER-offload-data-channel-client";
constexpr std::string_view kRunnerSends = "EXPORTER-offload-data-channel-runner";
}  // namespace

char* OutputBatch::extend(std::size_t n) {
  if (size_ + n > capacity_) {
    const std::size_t capacity = std::max({capacity_ * 2, size_ + n, std::size_t{64 * 1024}});
    auto bytes = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) std::memcpy(bytes.get(), bytes_.get(), size_);
    bytes_ = std::move(bytes);
    capacity_ = capacity;
  }
  char* at = bytes_.get() + size_;
  size_ += n;
  return at;
}

void OutputBatch::append(const char* data, std::size_t n) {
  if (n > 0) std::memcpy(extend(n), data, n);
}

void OutputBatch::swap(OutputBatch& other) noexcept {
  std::swap(bytes_, other.bytes_);
  std::swap(size_, other.size_);
  std::swap(capacity_, other.capacity_);
}

BIO_METHOD* TlsSocket::bio_method() {
  // Made once, never freed: it lives as long as the process, like OpenSSL's own methods.
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "offload-tls-socket");
    if (!m || !BIO_meth_set_write(m, &TlsSocket::bio_write) ||
        !BIO_meth_set_read(m, &TlsSocket::bio_read) || !BIO_meth_set_ctrl(m, &TlsSocket::bio_ctrl))
      throw std::runtime_error("cannot create the TLS socket's BIO method");
    return m;
  }();
  return method;
}

int TlsSocket::bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSocket*>(BIO_get_data(bio));
  self->pending_.append(data, static_cast<std::size_t>(size));
  return size;
}

int TlsSocket::bio_read(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSocket*>(BIO_get_data(bio));
  const std::size_t available = self->in_end_ - self->in_begin_;
  if (available == 0) {
    if (self->peer_closed_) return 0;
    BIO_set_retry_read(bio);
    return -1;
  }
  const std::size_t n = std::min(available, static_cast<std::size_t>(size));
  std::memcpy(data, self->incoming_.data() + self->in_begin_, n);
  self->in_begin_ += n;
  return static_cast<int>(n);
}

long TlsSocket::bio_ctrl(BIO*, int command, long, void*) {
  // OpenSSL flushes after each flight; the flush that matters is ours (flush()).
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

TlsSocket::TlsSocket(asio::ip::tcp::socket socket, asio::ssl::context& context, Side side)
    : socket_(std::move(socket)), side_(side), incoming_(kReceiveBytes) {
  ssl_ = SSL_new(context.native_handle());
  BIO* bio = BIO_new(bio_method());
  if (!ssl_ || !bio) {
    BIO_free(bio);
    SSL_free(ssl_);
    throw std::runtime_error("cannot create a TLS connection (out of memory?)");
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: SSL takes its one reference
  if (side == Side::client)
    SSL_set_connect_state(ssl_);
  else
    SSL_set_accept_state(ssl_);
}

TlsSocket::~TlsSocket() { SSL_free(ssl_); }

boost::system::error_code TlsSocket::ssl_error(int result) {
  const int code = SSL_get_error(ssl_, result);
  if (code == SSL_ERROR_ZERO_RETURN) return asio::error::eof;
  if (code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return asio::ssl::error::stream_truncated;
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e != 0)
    return boost::system::error_code(static_cast<int>(e), asio::error::get_ssl_category());
  return asio::error::fault;
}

asio::awaitable<boost::system::error_code> TlsSocket::flush() {
  while (!pending_.empty()) {
    sending_.clear();
    sending_.swap(pending_);
    auto [ec, n] = co_await asio::async_write(
        socket_, asio::buffer(sending_.data(), sending_.size()), kToken);
    if (ec) co_return ec;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> TlsSocket::fill(std::size_t record) {
  if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
  if (in_end_ == incoming_.size() || in_begin_ + record > incoming_.size()) {
    // OpenSSL wants more while unread records remain (it reads a record's header and body in
    // separate calls), or a sealed record must be whole in one piece: move what is left to
    // the front.
    std::memmove(incoming_.data(), incoming_.data() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  auto [ec, n] = co_await socket_.async_read_some(
      asio::buffer(incoming_.data() + in_end_, incoming_.size() - in_end_), kToken);
  in_end_ += n;
  if (ec == asio::error::eof) {
    peer_closed_ = true;  // the BIO reports end-of-file; OpenSSL decides what that means
    co_return boost::system::error_code{};
  }
  co_return ec;
}

asio::awaitable<boost::system::error_code> TlsSocket::handshake() {
  for (;;) {
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_);
    // Each flight (ours) leaves before we wait for the peer's.
    if (auto ec = co_await flush()) co_return ec;
    if (result == 1) co_return boost::system::error_code{};
    if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_READ) co_return ssl_error(result);
    if (peer_closed_) co_return asio::error::eof;
    if (auto ec = co_await fill()) co_return ec;
  }
}

asio::awaitable<std::pair<boost::system::error_code, std::size_t>> TlsSocket::read_some(
    asio::mutable_buffer buffer) {
  auto* data = static_cast<char*>(buffer.data());
  if (opener_) co_return co_await read_sealed(data, buffer.size());
  std::size_t done = 0;
  for (;;) {
    ERR_clear_error();
    std::size_t n = 0;
    const int result = SSL_read_ex(ssl_, data + done, buffer.size() - done, &n);
    if (result == 1) {
      done += n;
      // Another record may already be here: take it now rather than after another wake-up.
      if (done < buffer.size()) continue;
      co_return std::pair{boost::system::error_code{}, done};
    }
    if (SSL_get_error(ssl_, result) != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      if (done > 0) co_return std::pair{boost::system::error_code{}, done};  // the error comes next
      co_return std::pair{ssl_error(result), std::size_t(0)};
    }
    if (done > 0) co_return std::pair{boost::system::error_code{}, done};
    if (peer_closed_) co_return std::pair{boost::system::error_code(asio::error::eof), std::size_t(0)};
    if (auto ec = co_await fill()) co_return std::pair{ec, std::size_t(0)};
  }
}

asio::awaitable<boost::system::error_code> TlsSocket::read_exactly(asio::mutable_buffer buffer) {
  auto* data = static_cast<char*>(buffer.data());
  std::size_t done = 0;
  while (done < buffer.size()) {
    auto [ec, n] = co_await read_some(asio::buffer(data + done, buffer.size() - done));
    if (ec) co_return ec;
    done += n;
  }
  co_return boost::system::error_code{};
}

boost::system::error_code TlsSocket::encrypt(asio::const_buffer buffer) {
  if (buffer.size() == 0) return {};
  if (sealer_) {
    const auto* data = static_cast<const char*>(buffer.data());
    for (std::size_t done = 0; done < buffer.size();) {
      const std::size_t n = std::min(buffer.size() - done, kMaxSealedPlaintext);
      char* out = pending_.extend(kSealedHeaderBytes + n + kSealedTagBytes);
      if (auto ec = sealer_->seal({data + done, n}, out)) return ec;
      done += n;
    }
    return {};
  }
  ERR_clear_error();
  // The BIO never pushes back, so one SSL_write takes the whole buffer (as records of up to
  // 16 KiB each).
  std::size_t written = 0;
  const int result = SSL_write_ex(ssl_, buffer.data(), buffer.size(), &written);
  if (result != 1) return ssl_error(result);
  return {};
}

asio::awaitable<boost::system::error_code> TlsSocket::write(asio::const_buffer buffer) {
  if (auto ec = encrypt(buffer)) co_return ec;
  co_return co_await flush();
}

asio::awaitable<std::pair<boost::system::error_code, std::size_t>> TlsSocket::read_sealed(
    char* data, std::size_t size) {
  using Result = std::pair<boost::system::error_code, std::size_t>;
  std::size_t done = 0;
  while (done < size) {
    if (plain_begin_ < plain_end_) {
      const std::size_t n = std::min(plain_end_ - plain_begin_, size - done);
      std::memcpy(data + done, incoming_.data() + plain_begin_, n);
      plain_begin_ += n;
      done += n;
      continue;
    }
    if (read_failure_) break;
    const std::size_t available = in_end_ - in_begin_;
    std::size_t record = kSealedHeaderBytes;
    if (available >= kSealedHeaderBytes) {
      std::size_t length = 0;
      if (auto ec = RecordCipher::parse_length(incoming_.data() + in_begin_, length)) {
        read_failure_ = ec;  // before the body comes: an impossible length ends it at once
        break;
      }
      record = kSealedHeaderBytes + length + kSealedTagBytes;
      if (available >= record) {
        const std::span<const char> whole(incoming_.data() + in_begin_, record);
        if (length <= size - done) {
          // The usual case: straight into the reader's buffer, the only pass over the bytes.
          if (auto ec = opener_->open(whole, data + done)) {
            read_failure_ = ec;
            break;
          }
          done += length;
        } else if (done > 0) {
          break;  // this record is for the next call
        } else {
          // The reader's buffer is smaller than the record: open it where it lies and hand it
          // out in pieces.
          char* body = incoming_.data() + in_begin_ + kSealedHeaderBytes;
          if (auto ec = opener_->open(whole, body)) {
            read_failure_ = ec;
            break;
          }
          plain_begin_ = in_begin_ + kSealedHeaderBytes;
          plain_end_ = plain_begin_ + length;
        }
        in_begin_ += record;
        continue;
      }
    }
    // Another whole record may follow within this wake-up; a partial one waits for the next.
    if (done > 0) break;
    if (peer_closed_)
      co_return Result{available == 0 ? boost::system::error_code(asio::error::eof)
                                      : boost::system::error_code(asio::ssl::error::stream_truncated),
                       0};
    if (auto ec = co_await fill(record)) co_return Result{ec, 0};
  }
  if (done > 0) co_return Result{{}, done};  // an error comes with the next call
  co_return Result{read_failure_, 0};
}

boost::system::error_code TlsSocket::seal_records(SealingLimits limits) {
  if (opener_) return {};
  if (SSL_version(ssl_) != TLS1_3_VERSION) return asio::error::operation_not_supported;
  // Plaintext the peer sent after its last message would be lost: not ours.
  if (SSL_pending(ssl_) > 0) return asio::error::invalid_argument;
  auto keys = [this](std::string_view label) -> SealingKeys {
    return [ssl = ssl_, label](std::uint64_t epoch, SealingSecret& out) {
      std::array<unsigned char, 8> context;
      for (int i = 0; i < 8; ++i) context[7 - i] = static_cast<unsigned char>(epoch >> (8 * i));
      std::array<unsigned char, sizeof out.key + sizeof out.iv> material;
      if (SSL_export_keying_material(ssl, material.data(), material.size(), label.data(),
                                     label.size(), context.data(), context.size(), 1) != 1) {
        ERR_clear_error();
        return false;
      }
      std::memcpy(out.key.data(), material.data(), out.key.size());
      std::memcpy(out.iv.data(), material.data() + out.key.size(), out.iv.size());
      OPENSSL_cleanse(material.data(), material.size());
      return true;
    };
  };
  const bool client = side_ == Side::client;
  sealer_ = std::make_unique<RecordCipher>(keys(client ? kClientSends : kRunnerSends), limits);
  opener_ = std::make_unique<RecordCipher>(keys(client ? kRunnerSends : kClientSends), limits);
  return {};
}

}  // namespace offload::tunnel
