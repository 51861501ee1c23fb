// The one line that carries a remote account from the runner's operator to a laptop: the runner's
// address, its certificate fingerprint and the account token (like `docker swarm join-token`).
//
//   offload1.<base64url, no padding, of {"a":"host:port","f":"sha256:...","t":"TOKEN"}>
//
// The version prefix lets a later format be told apart (and refused with a clear message by an
// older client); no blanks, so it survives copy and paste, shells and chat clients.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace offload {

struct JoinInfo {
  std::string address;      // "host:port" or "[v6]:port"
  std::string fingerprint;  // "sha256:<64 lowercase hex>"
  std::string token;        // the account token: a secret
};

inline constexpr std::string_view kJoinStringPrefix = "offload1.";

// A malformed join string. The message says what is wrong and never contains the token.
struct JoinStringError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The join string of `info`. Throws JoinStringError when `info` itself is not joinable (the same
// checks as parse_join_string), so what is printed always parses.
std::string format_join_string(const JoinInfo& info);

// Reads a join string; surrounding blanks and line ends (copy and paste) are ignored. Throws
// JoinStringError.
JoinInfo parse_join_string(std::string_view text);

// RFC 4648 §5 base64url without padding, and its strict inverse (false on any other byte,
// padding, or non-zero trailing bits).
std::string base64url_encode(std::string_view data);
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace offload
