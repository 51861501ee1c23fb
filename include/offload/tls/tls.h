// TLS for the runner channel: the runner's self-signed identity and the client's pinning.
//
// Runners are ephemeral hosts without a CA-issued name, so trust is a pinned SHA-256 fingerprint
// of the runner's certificate (like SSH host keys): the local account learns it from the runner
// it started; a remote account has it in its configuration.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace offload::tls {

struct Identity {
  std::string certificate_pem;
  std::string private_key_pem;
  std::string fingerprint;  // "sha256:<64 hex>" of the certificate's DER encoding
};

// Loads `dir/runner.crt` + `dir/runner.key`, or creates them (EC P-256, self-signed, 10 years,
// key file 0600) when both are absent. Throws std::runtime_error with an actionable line when
// only one exists or they cannot be read/parsed.
Identity load_or_create_identity(const std::filesystem::path& dir);

// Loads an identity from explicit files (operator-provided certificate). Throws on error.
Identity load_identity(const std::filesystem::path& cert_file, const std::filesystem::path& key_file);

// "sha256:<hex>" of the first certificate in `pem`; empty when it does not parse.
std::string certificate_fingerprint(std::string_view pem);

std::shared_ptr<grpc::ServerCredentials> server_credentials(const Identity& identity);

// Filled in when a handshake met a certificate other than the pinned one, so the caller can say
// so instead of gRPC's generic "failed to connect".
struct PinMismatch {
  std::mutex mu;
  std::string message;  // guarded by mu; empty until a mismatch
  std::string get() {
    std::lock_guard lock(mu);
    return message;
  }
};

// Channel credentials that accept exactly the certificate whose fingerprint is `pinned` (and
// nothing else: no CA, no hostname check, since the pin is stronger than both).
std::shared_ptr<grpc::ChannelCredentials> pinned_channel_credentials(
    const std::string& pinned, std::shared_ptr<PinMismatch> mismatch = nullptr);

// The same identity and pin for the data channel (offload/tunnel/data_channel.h), which speaks
// TLS itself instead of through gRPC. TLS 1.3 only: both ends are ours. Neither end issues or
// resumes session tickets: each channel is one short handshake on an established trust (the
// pin), and an unread ticket would turn a clean close into a reset.
std::shared_ptr<boost::asio::ssl::context> asio_server_context(const Identity& identity);
// Accepts exactly the certificate whose fingerprint is `pinned`; a handshake with any other
// fails before the client sends anything (and so before any token leaves the machine).
std::shared_ptr<boost::asio::ssl::context> asio_pinned_client_context(const std::string& pinned);

}  // namespace offload::tls
