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

// Normalises a certificate fingerprint as users write it ("SHA256:AB:CD...", "ab cd ...", bare
// hex) to "sha256:<64 lowercase hex>"; "" when it is not a SHA-256 fingerprint.
std::string normalize_fingerprint(std::string_view text);

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace offload
