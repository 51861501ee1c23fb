// Durations as users type them in flags and config ("90s", "5m", "1h30m", "250ms").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace offload {

// Parses a Go-style duration: one or more <number><unit> with units ms, s, m, h. A bare "0" is
// zero. Returns nullopt for anything else (negative, empty, unknown unit, overflow).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// "1h30m", "5m", "90s" → formats back in the largest exact units; "0s" for zero.
std::string format_duration(std::chrono::milliseconds d);

// Coarse human form for status output: "3 minutes", "about an hour", "5 seconds".
std::string humanize_duration(std::chrono::milliseconds d);

}  // namespace offload
