// TlsSocket after seal_records() (ODC3), over a real TLS connection on loopback: the switch
// from TLS records to sealed ones in the middle of the stream, readers of every buffer size,
// how the stream ends, and what a peer that does not follow the format gets. The record format
// itself: tests/unit/tunnel/sealed_records_test.cpp.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "offload/tls/tls.h"
#include "offload/tunnel/sealed_records.h"
#include "offload/tunnel/tls_socket.h"
#include "temp_dir.h"

namespace offload::tunnel {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

std::string pattern(std::size_t n, char seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7 + i / 509);
  return s;
}

class SealedSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    identity_ = tls::load_or_create_identity(dir_ / "tls");
    server_context_ = tls::asio_server_context(identity_);
    client_context_ = tls::asio_pinned_client_context(identity_.fingerprint);
    tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket client_tcp(io_);
    client_tcp.connect(acceptor.local_endpoint());
    tcp::socket server_tcp = acceptor.accept();
    client_ = std::make_unique<TlsSocket>(std::move(client_tcp), *client_context_,
                                          TlsSocket::Side::client);
    server_ = std::make_unique<TlsSocket>(std::move(server_tcp), *server_context_,
                                          TlsSocket::Side::server);
    run_both(client_->handshake(), server_->handshake());
  }

  // Runs two coroutines to their ends (bounded: 20 s) and fails the test on an error.
  void run_both(asio::awaitable<boost::system::error_code> a,
                asio::awaitable<boost::system::error_code> b) {
    boost::system::error_code ea = asio::error::timed_out, eb = asio::error::timed_out;
    asio::co_spawn(io_, std::move(a), [&](std::exception_ptr, boost::system::error_code e) { ea = e; });
    asio::co_spawn(io_, std::move(b), [&](std::exception_ptr, boost::system::error_code e) { eb = e; });
    io_.restart();
    io_.run_for(20s);
    ASSERT_FALSE(ea) << ea.message();
    ASSERT_FALSE(eb) << eb.message();
  }

  // The runner's side of ODC3 in miniature: the server writes its last TLS message and
  // switches; the client reads it and switches. `after` follows at once on the server, so that
  // sealed records arrive in the same reads as the last TLS record.
  void switch_both(const std::string& after = {}) {
    auto server = [this, after]() -> asio::awaitable<boost::system::error_code> {
      server_->encrypt(asio::buffer(std::string("accept")));
      if (auto ec = server_->seal_records()) co_return ec;
      if (!after.empty()) server_->encrypt(asio::buffer(after));
      co_return co_await server_->flush();
    };
    auto client = [this]() -> asio::awaitable<boost::system::error_code> {
      std::array<char, 6> accept;
      if (auto ec = co_await client_->read_exactly(asio::buffer(accept))) co_return ec;
      if (std::string(accept.data(), 6) != "accept") co_return asio::error::invalid_argument;
      co_return client_->seal_records();
    };
    run_both(client(), server());
    ASSERT_TRUE(client_->sealed());
    ASSERT_TRUE(server_->sealed());
  }

  // Reads exactly `n` bytes from `socket` with reads of the given sizes in turn.
  std::string read_all(TlsSocket& socket, std::size_t n, const std::vector<std::size_t>& sizes) {
    std::string got;
    boost::system::error_code failed;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          std::vector<char> buffer(*std::max_element(sizes.begin(), sizes.end()));
          for (std::size_t i = 0; got.size() < n; ++i) {
            const std::size_t want = std::min(sizes[i % sizes.size()], n - got.size());
            auto [ec, k] = co_await socket.read_some(asio::buffer(buffer.data(), want));
            if (ec) {
              failed = ec;
              co_return;
            }
            EXPECT_GT(k, 0u);
            EXPECT_LE(k, want);
            got.append(buffer.data(), k);
          }
        },
        asio::detached);
    io_.restart();
    io_.run_for(20s);
    EXPECT_FALSE(failed) << failed.message();
    return got;
  }

  // What the next read of `socket` gives: its error (bounded: 10 s).
  boost::system::error_code next_read_error(TlsSocket& socket, std::size_t* bytes = nullptr) {
    boost::system::error_code result = asio::error::timed_out;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          std::vector<char> buffer(1 << 20);
          for (;;) {
            auto [ec, k] = co_await socket.read_some(asio::buffer(buffer));
            if (bytes) *bytes += k;
            if (ec) {
              result = ec;
              co_return;
            }
          }
        },
        asio::detached);
    io_.restart();
    io_.run_for(10s);
    return result;
  }

  // Writes raw bytes to `socket`'s TCP connection, past its TLS and its sealing.
  void write_raw(TlsSocket& socket, const std::string& bytes) {
    asio::write(socket.next_layer(), asio::buffer(bytes));
  }

  test::TempDir dir_{"offload-sealed"};
  tls::Identity identity_;
  std::shared_ptr<asio::ssl::context> server_context_, client_context_;
  asio::io_context io_;
  std::unique_ptr<TlsSocket> client_, server_;
};

TEST_F(SealedSocketTest, RecordsThatCameWithTheLastTlsRecordAndAfterArriveIntactForAnyReader) {
  const std::string down = pattern(1 << 20, 'd');
  switch_both(down);  // sealed records right behind the accept, in the same reads
  EXPECT_EQ(read_all(*client_, down.size(), {1, 7, 4096, 65536, 300000, 65535}), down);

  const std::string up = pattern(3 << 20, 'u');
  run_both(client_->write(asio::buffer(up)),
           [&]() -> asio::awaitable<boost::system::error_code> { co_return boost::system::error_code{}; }());
  EXPECT_EQ(read_all(*server_, up.size(), {300000}), up);
}

TEST_F(SealedSocketTest, OneReadTakesEveryWholeRecordThatHasArrived) {
  switch_both();
  // Five records, sent at once: one read with room for all takes all.
  std::string five;
  for (int i = 0; i < 5; ++i) five += pattern(1000, static_cast<char>('a' + i));
  for (int i = 0; i < 5; ++i) server_->encrypt(asio::buffer(five.data() + i * 1000, 1000));
  run_both(server_->flush(), []() -> asio::awaitable<boost::system::error_code> { co_return boost::system::error_code{}; }());
  std::size_t got = 0;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        std::vector<char> buffer(1 << 16);
        auto [ec, k] = co_await client_->read_some(asio::buffer(buffer));
        EXPECT_FALSE(ec);
        got = k;
        EXPECT_EQ(std::string(buffer.data(), k), five.substr(0, k));
      },
      asio::detached);
  io_.restart();
  io_.run_for(10s);
  // TCP may cut the batch; over loopback with 5 KB it does not.
  EXPECT_EQ(got, five.size());
}

TEST_F(SealedSocketTest, ThePeerClosingBetweenRecordsIsEndOfFileAndInsideOneIsTruncation) {
  switch_both("last words");
  EXPECT_EQ(read_all(*client_, 10, {64}), "last words");
  server_->next_layer().shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(next_read_error(*client_), asio::error::eof);

  // Half a record, then the end.
  server_->encrypt(asio::buffer(std::string("unused")));  // keeps the sequence honest
  run_both(client_->write(asio::buffer(std::string("x"))),
           []() -> asio::awaitable<boost::system::error_code> { co_return boost::system::error_code{}; }());
  write_raw(*client_, std::string("\0\0\0\x20half", 8));
  client_->next_layer().shutdown(tcp::socket::shutdown_send);
  std::size_t bytes = 0;
  EXPECT_EQ(next_read_error(*server_, &bytes), asio::ssl::error::stream_truncated);
  EXPECT_EQ(bytes, 1u);  // the whole record before it was delivered
}

TEST_F(SealedSocketTest, ATlsRecordWhereASealedOneBelongsEndsTheConnectionAtOnce) {
  switch_both();
  // What a peer that did not switch sends: TLS application data (type 23, version 3.3), whose
  // header read as a length is far beyond any sealed record's.
  write_raw(*server_, std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'z'));
  EXPECT_EQ(next_read_error(*client_), make_error_code(SealedRecordError::too_long));
}

TEST_F(SealedSocketTest, ARecordWithAChangedByteEndsTheConnectionAndDeliversNothingOfIt) {
  switch_both();
  // A record sealed exactly as the server would, with the exporter's documented label and
  // epoch 0 (so this also pins the wire format), then one byte changed.
  const std::string label = "EXPORTER-offload-data-channel-runner";
  SealingKeys runner_keys = [ssl = server_->native_handle(), label](std::uint64_t epoch,
                                                                    SealingSecret& out) {
    std::array<unsigned char, 8> context{};
    for (int i = 0; i < 8; ++i) context[7 - i] = static_cast<unsigned char>(epoch >> (8 * i));
    std::array<unsigned char, 28> material;
    if (SSL_export_keying_material(ssl, material.data(), material.size(), label.data(),
                                   label.size(), context.data(), context.size(), 1) != 1)
      return false;
    std::copy_n(material.begin(), 16, out.key.begin());
    std::copy_n(material.begin() + 16, 12, out.iv.begin());
    return true;
  };
  RecordCipher forger(runner_keys);
  const std::string good_text = "a record from the runner";
  std::string record(kSealedHeaderBytes + good_text.size() + kSealedTagBytes, '\0');
  ASSERT_FALSE(forger.seal(good_text, record.data()));
  write_raw(*server_, record);
  EXPECT_EQ(read_all(*client_, good_text.size(), {100}), good_text);

  ASSERT_FALSE(forger.seal(good_text, record.data()));
  record[10] ^= 1;
  write_raw(*server_, record);
  std::size_t bytes = 0;
  EXPECT_EQ(next_read_error(*client_, &bytes), make_error_code(SealedRecordError::forged));
  EXPECT_EQ(bytes, 0u);
  // And it stays ended: no later record is read.
  EXPECT_EQ(next_read_error(*client_, &bytes), make_error_code(SealedRecordError::forged));
}

TEST_F(SealedSocketTest, SwitchingWithThePeersPlaintextUnreadIsRefused) {
  auto server = [this]() -> asio::awaitable<boost::system::error_code> {
    co_return co_await server_->write(asio::buffer(std::string("accept+more")));
  };
  auto client = [this]() -> asio::awaitable<boost::system::error_code> {
    std::array<char, 6> accept;
    co_return co_await client_->read_exactly(asio::buffer(accept));
  };
  run_both(client(), server());
  EXPECT_EQ(client_->seal_records(), asio::error::invalid_argument);
  EXPECT_FALSE(client_->sealed());
}

}  // namespace
}  // namespace offload::tunnel
