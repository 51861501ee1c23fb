// TLS over a TCP socket for the data channel, with OpenSSL driven through a BIO of our own.
//
// Asio's ssl::stream moves TLS records through a 17 KiB BIO pair: every 16 KiB record is one
// send() and, on the other side, one more wake-up of the peer; a 256 KiB chunk costs sixteen of
// each. Here SSL_write encrypts a whole chunk into one output buffer (the BIO's write callback
// appends to it) and one send() carries all of its records; reads take up to 256 KiB of records
// per recv(). Measured on one forwarded stream: see docs/benchmarks.md.
//
// One reader and one writer coroutine may use a socket at once, on one strand (the data
// channel's two pumps). Output that SSL_read itself produces (TLS 1.3 post-handshake messages,
// which this channel does not use: no tickets, no key updates) leaves with the next write.
//
// After seal_records() the same socket carries sealed records (sealed_records.h) instead of
// TLS records: encrypt() seals straight into the output batch and read_some() opens straight
// into the reader's buffer.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "offload/tunnel/sealed_records.h"

namespace offload::tunnel {

// Bytes for the socket. Unlike std::string it grows without zero-filling what a sealer is
// about to overwrite, and keeps its capacity across batches.
class OutputBatch {
 public:
  const char* data() const { return bytes_.get(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }
  // `n` more bytes at the end, uninitialised: the caller writes all of them.
  char* extend(std::size_t n);
  void append(const char* data, std::size_t n);
  void swap(OutputBatch& other) noexcept;

 private:
  std::unique_ptr<char[]> bytes_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

class TlsSocket {
 public:
  enum class Side { client, server };
  using executor_type = boost::asio::ip::tcp::socket::executor_type;

  TlsSocket(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& context, Side side);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  boost::asio::ip::tcp::socket& next_layer() { return socket_; }
  SSL* native_handle() { return ssl_; }
  executor_type get_executor() { return socket_.get_executor(); }

  // The TLS handshake (certificate checks are the context's: see tls::asio_*_context).
  boost::asio::awaitable<boost::system::error_code> handshake();
  // Plaintext: at least one byte, and as much more as the records already received hold (one
  // wake-up hands a reader everything that came), or an error (eof when the peer closed).
  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(
      boost::asio::mutable_buffer buffer);
  boost::asio::awaitable<boost::system::error_code> read_exactly(boost::asio::mutable_buffer buffer);
  // All of `buffer`, encrypted, in as few send()s as the socket takes.
  boost::asio::awaitable<boost::system::error_code> write(boost::asio::const_buffer buffer);

  // write() in two halves, for a writer that gathers many small pieces (the multiplexed
  // channel's frames): encrypt() turns `buffer` into records at once, appended to what waits
  // for the socket; flush() sends all of that.
  boost::system::error_code encrypt(boost::asio::const_buffer buffer);
  boost::asio::awaitable<boost::system::error_code> flush();
  // Encrypted bytes waiting for flush().
  std::size_t pending_bytes() const { return pending_.size(); }

  // From now on both directions carry sealed records with keys from this TLS session (ODC3,
  // data_channel.h): called by each side at the same point of the stream, after the last TLS
  // record each way (the client after it read the accept, the runner after it wrote it).
  // Records the peer sent after that and that were already received are read as sealed ones.
  // Fails when the session is not TLS 1.3 or the peer's plaintext was not all read.
  boost::system::error_code seal_records(SealingLimits limits = {});
  bool sealed() const { return opener_ != nullptr; }

 private:
  static int bio_write(BIO* bio, const char* data, int size);
  static int bio_read(BIO* bio, char* data, int size);
  static long bio_ctrl(BIO* bio, int command, long larg, void* parg);
  static BIO_METHOD* bio_method();

  // flush() sends what the BIO collected; `sending_` is the buffer on the wire meanwhile.
  // Receives more bytes; `record` is how many the record at in_begin_ needs in one piece.
  boost::asio::awaitable<boost::system::error_code> fill(std::size_t record = 0);
  boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_sealed(
      char* data, std::size_t size);
  boost::system::error_code ssl_error(int result);

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  Side side_;
  OutputBatch pending_;  // encrypted, not yet sent (the BIO and the sealer append here)
  OutputBatch sending_;  // encrypted, being sent
  std::vector<char> incoming_;
  std::size_t in_begin_ = 0, in_end_ = 0;  // received, not yet given to OpenSSL / opened
  bool peer_closed_ = false;
  // Sealed records (after seal_records()): one cipher per direction; a record opened in place
  // because the reader's buffer was smaller, still to hand out; the error that ended reading.
  std::unique_ptr<RecordCipher> sealer_, opener_;
  std::size_t plain_begin_ = 0, plain_end_ = 0;
  boost::system::error_code read_failure_;
};

}  // namespace offload::tunnel
