#include "offload/common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace offload {

namespace {

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes as it is
        }
    }
  }
  out += '"';
}

bool is_hex(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// spdlog formatter for --log-format json.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string program) : program_(std::move(program)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto level = spdlog::level::to_string_view(msg.level);
    std::string line = json_log_line(msg.time, std::string_view(level.data(), level.size()),
                                     program_,
                                     std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(program_);
  }

 private:
  std::string program_;
};

}  // namespace

std::string json_log_line(std::chrono::system_clock::time_point time, std::string_view level,
                          std::string_view program, std::string_view message) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  std::string session;
  constexpr std::string_view kSession = "session ";
  if (message.substr(0, kSession.size()) == kSession) {
    auto colon = message.find(": ", kSession.size());
    if (colon != std::string_view::npos &&
        is_hex(message.substr(kSession.size(), colon - kSession.size()))) {
      session = std::string(message.substr(kSession.size(), colon - kSession.size()));
      message = message.substr(colon + 2);
    }
  }
  std::string out = "{\"time\":\"";
  out += stamp;
  out += "\",\"level\":";
  append_json_string(out, level);
  out += ",\"message\":";
  append_json_string(out, message);
  out += ",\"fields\":{\"program\":";
  append_json_string(out, program);
  if (!session.empty()) {
    out += ",\"session\":";
    append_json_string(out, session);
  }
  out += "}}\n";
  return out;
}

void setup_logging(const std::string& program, const std::filesystem::path& file,
                   const std::string& level, bool json) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw std::invalid_argument("unknown log level \"" + level +
                                "\" (use trace, debug, info, warn, error)");
  std::shared_ptr<spdlog::logger> logger;
  if (file.empty())
    logger = spdlog::stderr_color_mt(program);
  else
    logger = spdlog::rotating_logger_mt(program, file.string(), 10 * 1024 * 1024, 5);
  logger->set_level(lvl);
  if (json)
    logger->set_formatter(std::make_unique<JsonFormatter>(program));
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%n] %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace offload
