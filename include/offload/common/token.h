// Secrets: generation and comparison.
#pragma once

#include <string>
#include <string_view>

namespace offload {

// `bytes` random bytes from the OS CSPRNG, hex encoded.
std::string random_hex(std::size_t bytes);

// Compares two secrets in time independent of where they differ and of their lengths (both are
// hashed first), so a token cannot be guessed byte by byte.
bool secrets_equal(std::string_view a, std::string_view b);

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace offload
