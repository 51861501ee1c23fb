#include "buildkit_session.h"

#include <fnmatch.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "offload/common/token.h"

namespace offload::e2e {
namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPing = 6, kGoaway = 7,
                   kWindowUpdate = 8, kContinuation = 9;
constexpr unsigned kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8,
                   kPriority = 0x20;
constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

std::string frame(unsigned type, unsigned flags, unsigned stream, std::string_view payload) {
  std::string f;
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>((stream >> 16) & 0xff);
  f += static_cast<char>((stream >> 8) & 0xff);
  f += static_cast<char>(stream & 0xff);
  f += payload;
  return f;
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff),
          static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}

std::string varint(std::uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
  return out;
}

// Field 1 of a protobuf message when it is length-delimited (GetSecretRequest.ID), else "".
std::string first_string_field(const std::string& m) {
  std::size_t i = 0;
  auto read_varint = [&](std::uint64_t& v) {
    v = 0;
    for (int shift = 0; i < m.size() && shift < 64; shift += 7) {
      auto b = static_cast<unsigned char>(m[i++]);
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < m.size()) {
    std::uint64_t key = 0, v = 0;
    if (!read_varint(key)) return "";
    switch (key & 7) {
      case 0:
        if (!read_varint(v)) return "";
        break;
      case 2:
        if (!read_varint(v) || v > m.size() - i) return "";
        if ((key >> 3) == 1) return m.substr(i, v);
        i += v;
        break;
      default:
        return "";  // no other wire types in these messages
    }
  }
  return "";
}

// Strips the pad length, padding and (HEADERS) priority fields a frame may carry.
bool strip(unsigned type, unsigned flags, std::string& payload) {
  std::size_t pad = 0;
  if (flags & kPadded) {
    if (payload.empty()) return false;
    pad = static_cast<unsigned char>(payload[0]);
    payload.erase(0, 1);
  }
  if (type == kHeaders && (flags & kPriority)) {
    if (payload.size() < 5) return false;
    payload.erase(0, 5);
  }
  if (pad > payload.size()) return false;
  payload.resize(payload.size() - pad);
  return true;
}

}  // namespace

BuildKitSession::BuildKitSession(std::string socket, std::map<std::string, std::string> secrets)
    : socket_(std::move(socket)), secrets_(std::move(secrets)), id_(random_hex(12)) {}

BuildKitSession::~BuildKitSession() {
  stop();
  if (inflater_) nghttp2_hd_inflate_del(static_cast<nghttp2_hd_inflater*>(inflater_));
  if (deflater_) nghttp2_hd_deflate_del(static_cast<nghttp2_hd_deflater*>(deflater_));
}

BuildKitSession::Seen BuildKitSession::seen() const {
  std::lock_guard lock(mutex_);
  return seen_;
}

void BuildKitSession::fail(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (seen_.error.empty()) seen_.error = why;
}

bool BuildKitSession::send(const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) {
      fail("send: " + std::string(std::strerror(errno)));
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

namespace {

int connect_unix(const std::string& socket, std::string& error) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof addr.sun_path) {
    error = "socket path too long: " + socket;
  } else {
    std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    error = "connect " + socket + ": " + std::strerror(errno);
  }
  if (fd >= 0) ::close(fd);
  return -1;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// `POST <path>` with `Upgrade: h2c`, as the docker client's DialHijack sends it (API 1.41), and
// the answer's head, read byte by byte: what follows it is already HTTP/2. Fills the status line
// and the Upgrade header; "" when dockerd switched protocols, else what went wrong.
std::string upgrade(int fd, const std::string& path, const std::string& extra_headers,
                    std::chrono::seconds timeout, std::string& status_line, std::string& upgrade) {
  std::string request = "POST /v1.41" + path + " HTTP/1.1\r\n"
                        "Host: docker\r\n"
                        "User-Agent: offload-e2e-buildkit\r\n"
                        "Content-Length: 0\r\n"
                        "Connection: Upgrade\r\n"
                        "Upgrade: h2c\r\n" + extra_headers + "\r\n";
  if (!send_all(fd, request)) return "send: " + std::string(std::strerror(errno));
  std::string head;
  auto deadline = Clock::now() + timeout;
  while (head.size() < 8192 && !head.ends_with("\r\n\r\n")) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return "no answer to POST " + path + " within the timeout; so far: " + head;
    char c;
    if (::recv(fd, &c, 1, 0) != 1) return "connection closed during the answer: " + head;
    head += c;
  }
  status_line = head.substr(0, head.find("\r\n"));
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    std::string line = head.substr(pos, head.find("\r\n", pos) - pos);
    std::string name = line.substr(0, line.find(':'));
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == "upgrade" && line.size() > name.size() + 1) {
      upgrade = line.substr(name.size() + 1);
      while (!upgrade.empty() && upgrade.front() == ' ') upgrade.erase(0, 1);
    }
  }
  if (head.find(" 101 ") == std::string::npos) return "POST " + path + " answered: " + head;
  return "";
}

}  // namespace

std::string BuildKitSession::start(std::chrono::seconds timeout) {
  std::string error;
  fd_ = connect_unix(socket_, error);
  if (fd_ < 0) return error;
  if (nghttp2_hd_inflate_new(reinterpret_cast<nghttp2_hd_inflater**>(&inflater_)) != 0 ||
      nghttp2_hd_deflate_new(reinterpret_cast<nghttp2_hd_deflater**>(&deflater_), 4096) != 0)
    return "nghttp2: cannot make the HPACK codec";
  // What buildx announces: the session, and the gRPC methods this client serves on it.
  std::string headers =
      "X-Docker-Expose-Session-Uuid: " + id_ + "\r\n"
      "X-Docker-Expose-Session-Name: offload-e2e\r\n"
      "X-Docker-Expose-Session-Sharedkey: offload-e2e\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /grpc.health.v1.Health/Check\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.buildkit.secrets.v1.Secrets/GetSecret\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSend/DiffCopy\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSync/DiffCopy\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.sshforward.v1.SSH/CheckAgent\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.sshforward.v1.SSH/ForwardAgent\r\n";
  std::string status_line, upgraded;
  error = upgrade(fd_, "/session", headers, timeout, status_line, upgraded);
  {
    std::lock_guard lock(mutex_);
    seen_.status_line = status_line;
    seen_.upgrade = upgraded;
  }
  if (!error.empty()) return error;
  thread_ = std::thread([this] { serve(); });
  return "";
}

GrpcReply grpc_call(const std::string& socket, const std::string& method,
                    const std::string& request, std::chrono::seconds timeout) {
  GrpcReply reply;
  int fd = connect_unix(socket, reply.error);
  if (fd < 0) return reply;
  struct Closer {
    int fd;
    nghttp2_hd_inflater* inflater = nullptr;
    nghttp2_hd_deflater* deflater = nullptr;
    ~Closer() {
      ::close(fd);
      if (inflater) nghttp2_hd_inflate_del(inflater);
      if (deflater) nghttp2_hd_deflate_del(deflater);
    }
  } closer{fd};
  reply.error = upgrade(fd, "/grpc", "", timeout, reply.status_line, reply.upgrade);
  if (!reply.error.empty()) return reply;
  if (nghttp2_hd_inflate_new(&closer.inflater) != 0 ||
      nghttp2_hd_deflate_new(&closer.deflater, 4096) != 0) {
    reply.error = "nghttp2: cannot make the HPACK codec";
    return reply;
  }

  // We are the HTTP/2 client here: preface, SETTINGS, then one unary call on stream 1.
  std::vector<std::pair<std::string, std::string>> fields = {
      {":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "localhost"},
      {"content-type", "application/grpc"}, {"te", "trailers"}};
  std::vector<nghttp2_nv> nva;
  for (auto& [n, v] : fields)
    nva.push_back({reinterpret_cast<std::uint8_t*>(n.data()),
                   reinterpret_cast<std::uint8_t*>(v.data()), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  std::string block(nghttp2_hd_deflate_bound(closer.deflater, nva.data(), nva.size()), '\0');
  ssize_t n = nghttp2_hd_deflate_hd(closer.deflater, reinterpret_cast<std::uint8_t*>(block.data()),
                                    block.size(), nva.data(), nva.size());
  block.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  std::string out = std::string(kClientPreface) + frame(kSettings, 0, 0, "") +
                    frame(kHeaders, kEndHeaders, 1, block) +
                    frame(kData, kEndStream, 1,
                          std::string(1, '\0') + be32(std::uint32_t(request.size())) + request);
  if (!send_all(fd, out)) {
    reply.error = "send: " + std::string(std::strerror(errno));
    return reply;
  }

  std::string in, body;
  char buf[16384];
  auto deadline = Clock::now() + timeout;
  for (bool ended = false; !ended;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      reply.error = "no complete answer within the timeout";
      return reply;
    }
    ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got <= 0) {
      reply.error = "connection closed before the answer ended";
      return reply;
    }
    in.append(buf, static_cast<std::size_t>(got));
    while (in.size() >= 9 && !ended) {
      auto u = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
      std::size_t length = (u(0) << 16) | (u(1) << 8) | u(2);
      if (in.size() < 9 + length) break;
      unsigned type = u(3), flags = u(4);
      unsigned stream = ((u(5) & 0x7f) << 24) | (u(6) << 16) | (u(7) << 8) | u(8);
      std::string payload = in.substr(9, length);
      in.erase(0, 9 + length);
      if (type == kSettings && !(flags & kAck)) {
        send_all(fd, frame(kSettings, kAck, 0, ""));
      } else if (type == kPing && !(flags & kAck)) {
        send_all(fd, frame(kPing, kAck, 0, payload));
      } else if (type == kGoaway || (type == kRstStream && stream == 1)) {
        reply.error = type == kGoaway ? "GOAWAY" : "RST_STREAM";
        return reply;
      } else if (type == kHeaders && stream == 1) {
        if (!strip(type, flags, payload) || !(flags & kEndHeaders)) {
          reply.error = "HEADERS this client does not read";
          return reply;
        }
        const auto* data = reinterpret_cast<const std::uint8_t*>(payload.data());
        std::size_t rest = payload.size();
        for (;;) {
          nghttp2_nv nv;
          int inflate_flags = 0;
          ssize_t used = nghttp2_hd_inflate_hd2(closer.inflater, &nv, &inflate_flags, data, rest, 1);
          if (used < 0) {
            reply.error = "HPACK: " + std::string(nghttp2_strerror(int(used)));
            return reply;
          }
          data += used;
          rest -= static_cast<std::size_t>(used);
          if (inflate_flags & NGHTTP2_HD_INFLATE_EMIT) {
            std::string name(reinterpret_cast<char*>(nv.name), nv.namelen);
            std::string value(reinterpret_cast<char*>(nv.value), nv.valuelen);
            if (name == "grpc-status") reply.grpc_status = value;
            if (name == "grpc-message") reply.grpc_message = value;
          }
          if (inflate_flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(closer.inflater);
            break;
          }
          if (!(inflate_flags & NGHTTP2_HD_INFLATE_EMIT) && rest == 0) break;
        }
        ended = flags & kEndStream;
      } else if (type == kData && stream == 1) {
        if (!strip(type, flags, payload)) {
          reply.error = "malformed DATA";
          return reply;
        }
        body += payload;
        if (!payload.empty() && !(flags & kEndStream))
          send_all(fd, frame(kWindowUpdate, 0, 0, be32(std::uint32_t(payload.size()))) +
                           frame(kWindowUpdate, 0, 1, be32(std::uint32_t(payload.size()))));
        ended = flags & kEndStream;
      }
    }
  }
  if (body.size() >= 5) reply.message = body.substr(5);
  return reply;
}

void BuildKitSession::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void BuildKitSession::serve() {
  // The server's connection preface is a SETTINGS frame (defaults suit us).
  if (!send(frame(kSettings, 0, 0, ""))) return;
  std::string in;
  bool preface = false;
  char buf[16384];
  while (!stopping_) {
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, 100);
    if (ready < 0) return fail("poll: " + std::string(std::strerror(errno)));
    if (ready == 0) continue;
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      std::lock_guard lock(mutex_);
      seen_.closed = true;
      return;
    }
    in.append(buf, static_cast<std::size_t>(n));
    if (!preface) {
      if (in.size() < kClientPreface.size()) continue;
      if (in.compare(0, kClientPreface.size(), kClientPreface) != 0)
        return fail("not an HTTP/2 client preface: " + in.substr(0, kClientPreface.size()));
      in.erase(0, kClientPreface.size());
      preface = true;
      std::lock_guard lock(mutex_);
      seen_.client_preface = true;
    }
    while (in.size() >= 9) {
      auto u = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
      std::size_t length = (u(0) << 16) | (u(1) << 8) | u(2);
      if (in.size() < 9 + length) break;
      unsigned type = u(3), flags = u(4);
      unsigned stream = ((u(5) & 0x7f) << 24) | (u(6) << 16) | (u(7) << 8) | u(8);
      std::string payload = in.substr(9, length);
      in.erase(0, 9 + length);
      if (!handle_frame(type, flags, stream, payload)) return;
    }
  }
}

bool BuildKitSession::handle_frame(unsigned type, unsigned flags, unsigned stream,
                                   const std::string& raw) {
  std::string payload = raw;
  switch (type) {
    case kSettings:
      if (flags & kAck) {
        std::lock_guard lock(mutex_);
        seen_.settings_acked = true;
        return true;
      }
      {
        std::lock_guard lock(mutex_);
        seen_.settings = true;
      }
      return send(frame(kSettings, kAck, 0, ""));
    case kPing:
      return (flags & kAck) || send(frame(kPing, kAck, 0, payload));
    case kGoaway: {
      std::lock_guard lock(mutex_);
      seen_.closed = true;
      return false;
    }
    case kWindowUpdate:
    case kRstStream:
      return true;
    case kHeaders: {
      if (!strip(type, flags, payload)) return fail("malformed HEADERS"), false;
      if (!(flags & kEndHeaders)) return fail("HEADERS in CONTINUATION frames"), false;
      auto* inflater = static_cast<nghttp2_hd_inflater*>(inflater_);
      const auto* data = reinterpret_cast<const std::uint8_t*>(payload.data());
      std::size_t left = payload.size();
      Stream& s = streams_[stream];
      for (;;) {
        nghttp2_nv nv;
        int inflate_flags = 0;
        ssize_t used = nghttp2_hd_inflate_hd2(inflater, &nv, &inflate_flags, data, left, 1);
        if (used < 0) return fail("HPACK: " + std::string(nghttp2_strerror(int(used)))), false;
        data += used;
        left -= static_cast<std::size_t>(used);
        if (inflate_flags & NGHTTP2_HD_INFLATE_EMIT) {
          std::string name(reinterpret_cast<char*>(nv.name), nv.namelen);
          std::string value(reinterpret_cast<char*>(nv.value), nv.valuelen);
          if (name == ":path") s.path = value;
          s.headers.emplace(name, value);
        }
        if (inflate_flags & NGHTTP2_HD_INFLATE_FINAL) {
          nghttp2_hd_inflate_end_headers(inflater);
          break;
        }
        if (!(inflate_flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) break;
      }
      if (s.path == "/moby.filesync.v1.FileSync/DiffCopy" && !s.syncing && !start_sync(stream))
        return false;
      if (s.path == "/moby.filesync.v1.FileSend/DiffCopy" && receive_directory_ && !s.receiving) {
        s.receiving = true;
        std::lock_guard lock(mutex_);
        seen_.calls.push_back(s.path);
      }
      break;
    }
    case kContinuation:
      return fail("unexpected CONTINUATION"), false;
    case kData: {
      if (!strip(type, flags, payload)) return fail("malformed DATA"), false;
      streams_[stream].body += payload;
      // Give the windows back (the connection's, and the stream's while it goes on): an export
      // streams more than the initial 64 KiB.
      if (!raw.empty() && !send(frame(kWindowUpdate, 0, 0, be32(std::uint32_t(raw.size())))))
        return false;
      if (!raw.empty() && !(flags & kEndStream) &&
          !send(frame(kWindowUpdate, 0, stream, be32(std::uint32_t(raw.size())))))
        return false;
      if (streams_[stream].syncing && !continue_sync(stream)) return false;
      if (streams_[stream].receiving && !continue_receive(stream)) return false;
      break;
    }
    default:
      return true;  // PRIORITY, unknown types: nothing to do
  }
  if ((flags & kEndStream) && (streams_[stream].syncing || streams_[stream].receiving)) {
    // dockerd half-closed its side; ours ends with the FIN exchange (continue_sync).
    if (streams_[stream].finished) streams_.erase(stream);
    return true;
  }
  if (flags & kEndStream) {
    auto s = std::move(streams_[stream]);
    streams_.erase(stream);
    // Client streaming calls (a tar export, an agent connection): every gRPC message (a
    // compressed flag, a 4-byte length, the protobuf bytes) is a BytesMessage whose field 1 is
    // the next piece of the stream.
    std::string streamed;
    for (std::size_t i = 0; i + 5 <= s.body.size();) {
      auto u = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(s.body[k])); };
      std::uint32_t length = (u(i + 1) << 24) | (u(i + 2) << 16) | (u(i + 3) << 8) | u(i + 4);
      if (i + 5 + length > s.body.size()) return fail("a truncated message"), false;
      streamed += first_string_field(s.body.substr(i + 5, length));
      i += 5 + length;
    }
    if (s.path == "/moby.filesync.v1.FileSend/DiffCopy") {
      std::lock_guard lock(mutex_);
      seen_.exported += streamed;
    }
    if (s.path == "/moby.sshforward.v1.SSH/ForwardAgent") {
      // One connection to the "agent" in the build container, which half-closed after writing:
      // its bytes, answered by this fake agent.
      std::lock_guard lock(mutex_);
      seen_.agent_received.push_back(streamed);
    }
    // A unary call: one message.
    std::string message = s.body.size() >= 5 ? s.body.substr(5) : "";
    answer(stream, s.path, message);
  }
  return true;
}

void BuildKitSession::answer(unsigned stream, const std::string& path, const std::string& message) {
  std::string reply;
  std::string status = "0";
  if (path == "/grpc.health.v1.Health/Check") {
    reply = std::string("\x08\x01", 2);  // HealthCheckResponse{status: SERVING}
  } else if (path == "/moby.filesync.v1.FileSend/DiffCopy") {
    // Received in full (handle_frame): the OK ends dockerd's wait for the receiver.
  } else if (path == "/moby.sshforward.v1.SSH/CheckAgent") {
    // CheckAgentRequest{ID}: this session has an agent for "default" only.
    if (first_string_field(message) != "default" && !first_string_field(message).empty())
      status = "5";
  } else if (path == "/moby.sshforward.v1.SSH/ForwardAgent") {
    std::string said;
    {
      std::lock_guard lock(mutex_);
      said = seen_.agent_received.empty() ? "" : seen_.agent_received.back();
    }
    std::string answer = "agent got: " + said + "\n";
    reply = "\x0a" + varint(answer.size()) + answer;  // BytesMessage{data}
  } else if (path == "/moby.buildkit.secrets.v1.Secrets/GetSecret") {
    std::string id = first_string_field(message);
    {
      std::lock_guard lock(mutex_);
      seen_.secret_ids.push_back(id);
    }
    auto it = secrets_.find(id);
    if (it == secrets_.end()) status = "5";  // NOT_FOUND, as buildx answers an unknown id
    else reply = "\x0a" + varint(it->second.size()) + it->second;  // GetSecretResponse{data}
  } else {
    status = "12";  // UNIMPLEMENTED
  }
  {
    std::lock_guard lock(mutex_);
    seen_.calls.push_back(path);
  }

  std::string bytes = frame(kHeaders, kEndHeaders, stream,
                            hpack({{":status", "200"}, {"content-type", "application/grpc"}}));
  if (status == "0" && path != "/moby.filesync.v1.FileSend/DiffCopy")
    bytes += frame(kData, 0, stream, std::string(1, '\0') + be32(std::uint32_t(reply.size())) + reply);
  bytes += frame(kHeaders, kEndHeaders | kEndStream, stream, hpack({{"grpc-status", status}}));
  send(bytes);
}

std::string BuildKitSession::hpack(std::vector<std::pair<std::string, std::string>> fields) {
  auto* deflater = static_cast<nghttp2_hd_deflater*>(deflater_);
  std::vector<nghttp2_nv> nva;
  for (auto& [n, v] : fields)
    nva.push_back({reinterpret_cast<std::uint8_t*>(n.data()),
                   reinterpret_cast<std::uint8_t*>(v.data()), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  std::string out(nghttp2_hd_deflate_bound(deflater, nva.data(), nva.size()), '\0');
  ssize_t n = nghttp2_hd_deflate_hd(deflater, reinterpret_cast<std::uint8_t*>(out.data()),
                                    out.size(), nva.data(), nva.size());
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

namespace {

// fsutil's wire format (types/wire.proto, types/stat.proto), the fields this sender uses.
enum PacketType : unsigned { kStat = 0, kReq = 1, kPacketData = 2, kFin = 3, kErr = 4 };

std::string field_varint(unsigned field, std::uint64_t v) {
  return v == 0 ? "" : varint(field << 3) + varint(v);
}
std::string field_bytes(unsigned field, const std::string& b) {
  return varint((field << 3) | 2) + varint(b.size()) + b;
}
std::string grpc_message(const std::string& m) {
  return std::string(1, '\0') + be32(std::uint32_t(m.size())) + m;
}

// A regular file's Stat: Go's os.FileMode 0644 (no type bits), size, a fixed mtime (ns).
std::string file_stat(const std::string& path, std::size_t size) {
  return field_bytes(1, path) + field_varint(2, 0644) + field_varint(5, size) +
         field_varint(6, 1700000000ull * 1000000000ull);
}

bool matches_any(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (p == name || ::fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

}  // namespace

namespace {

struct Packet {
  std::uint64_t type = 0, id = 0;
  bool has_stat = false;
  std::string path;
  std::uint64_t mode = 0;
  std::string data;
};

// fsutil's Packet{type = 1, stat = 2 {path = 1, mode = 2, ...}, ID = 3, data = 4}; false if it
// is not one.
bool parse_packet(const std::string& m, Packet& p) {
  auto walk = [](const std::string& msg, auto&& on_field) {
    std::size_t i = 0;
    auto read_varint = [&](std::uint64_t& v) {
      v = 0;
      for (int shift = 0; i < msg.size() && shift < 64; shift += 7) {
        auto b = static_cast<unsigned char>(msg[i++]);
        v |= std::uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
      }
      return false;
    };
    while (i < msg.size()) {
      std::uint64_t key = 0, v = 0;
      if (!read_varint(key)) return false;
      if ((key & 7) == 0) {
        if (!read_varint(v)) return false;
        on_field(unsigned(key >> 3), v, std::string());
      } else if ((key & 7) == 2) {
        if (!read_varint(v) || v > msg.size() - i) return false;
        on_field(unsigned(key >> 3), 0, msg.substr(i, v));
        i += v;
      } else if ((key & 7) == 1) {
        i += 8;
      } else if ((key & 7) == 5) {
        i += 4;
      } else {
        return false;
      }
    }
    return i == msg.size();
  };
  bool ok = true;
  bool parsed = walk(m, [&](unsigned field, std::uint64_t v, const std::string& b) {
    if (field == 1) p.type = v;
    if (field == 3) p.id = v;
    if (field == 4) p.data = b;
    if (field == 2) {
      p.has_stat = true;
      ok = ok && walk(b, [&](unsigned f, std::uint64_t sv, const std::string& sb) {
        if (f == 1) p.path = sb;
        if (f == 2) p.mode = sv;
      });
    }
  });
  return parsed && ok;
}

// Go's os.ModeType: directory, symlink, named pipe, socket, device, char device, irregular.
constexpr std::uint64_t kGoModeType = (1ull << 31) | (1ull << 27) | (1ull << 25) | (1ull << 24) |
                                      (1ull << 26) | (1ull << 21) | (1ull << 19);

}  // namespace

// dockerd (the sender) exports a directory over FileSend/DiffCopy: its Stats, one per entry (the
// packet IDs count them) and an empty one last; this receiver then requests every regular file,
// collects its DATA packets (an empty one ends a file), and when all are complete sends FIN,
// which dockerd answers with FIN; the call then ends with OK.
bool BuildKitSession::continue_receive(unsigned stream) {
  Stream& s = streams_[stream];
  while (s.body.size() - s.read >= 5) {
    auto u = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(s.body[k])); };
    std::uint32_t length =
        (u(s.read + 1) << 24) | (u(s.read + 2) << 16) | (u(s.read + 3) << 8) | u(s.read + 4);
    if (s.body.size() - s.read - 5 < length) break;
    Packet p;
    if (!parse_packet(s.body.substr(s.read + 5, length), p))
      return fail("a FileSend packet this receiver does not read"), false;
    s.read += 5 + length;
    if (p.type == kStat && p.has_stat) {
      s.paths.push_back(p.path);
      s.regular.push_back((p.mode & kGoModeType) == 0);
    } else if (p.type == kStat) {  // the end of the walk: ask for every regular file
      s.walked = true;
      std::string bytes = frame(kHeaders, kEndHeaders, stream,
                                hpack({{":status", "200"}, {"content-type", "application/grpc"}}));
      for (std::size_t id = 0; id < s.paths.size(); ++id) {
        if (!s.regular[id]) continue;
        s.content[id];
        ++s.requested;
        bytes += frame(kData, 0, stream, grpc_message(field_varint(1, kReq) + field_varint(3, id)));
      }
      if (s.requested == 0) bytes += frame(kData, 0, stream, grpc_message(field_varint(1, kFin)));
      if (!send(bytes)) return false;
    } else if (p.type == kPacketData) {
      if (!s.content.count(p.id)) return fail("FileSend DATA for a file not requested"), false;
      if (!p.data.empty()) {
        s.content[p.id] += p.data;
      } else if (++s.completed == s.requested) {
        if (!send(frame(kData, 0, stream, grpc_message(field_varint(1, kFin))))) return false;
      }
    } else if (p.type == kFin) {
      s.finished = true;
      {
        std::lock_guard lock(mutex_);
        seen_.received_entries += s.paths.size();
        for (auto& [id, text] : s.content) seen_.received[s.paths[id]] = std::move(text);
      }
      return send(frame(kHeaders, kEndHeaders | kEndStream, stream, hpack({{"grpc-status", "0"}})));
    } else if (p.type == kErr) {
      return fail("FileSend: BuildKit reported " + p.data), false;
    }
  }
  return true;
}

// BuildKit (the receiver) opened FileSync/DiffCopy for the directory named in `dir-name`: answer
// the headers, then send every file's Stat in order and an empty Stat (the end of the walk); the
// contents follow as BuildKit requests them (continue_sync).
bool BuildKitSession::start_sync(unsigned stream) {
  Stream& s = streams_[stream];
  s.syncing = true;
  std::vector<std::string> include, exclude;
  for (const auto& [name, value] : s.headers) {
    if (name == "dir-name") s.dir = value;
    // BuildKit 0.8 (dockerd 20.10) names the paths it wants in `followpaths`; later ones also
    // send `include-patterns`. Either narrows what is sent.
    if (name == "include-patterns" || name == "followpaths") include.push_back(value);
    if (name == "exclude-patterns") exclude.push_back(value);
  }
  std::string bytes = frame(kHeaders, kEndHeaders, stream,
                            hpack({{":status", "200"}, {"content-type", "application/grpc"}}));
  auto dir = dirs_.find(s.dir);
  std::string listed = s.dir + ":";
  if (dir != dirs_.end()) {
    for (const auto& [name, content] : dir->second) {  // std::map: sorted, as fsutil walks
      if (!include.empty() && !matches_any(include, name)) continue;
      if (matches_any(exclude, name)) continue;
      s.files.push_back(name);
      listed += " " + name;
      bytes += frame(kData, 0, stream,
                     grpc_message(field_varint(1, kStat) + field_bytes(2, file_stat(name, content.size()))));
    }
  }
  bytes += frame(kData, 0, stream, grpc_message(""));  // Packet{STAT, no stat}: the walk ended
  {
    std::lock_guard lock(mutex_);
    seen_.calls.push_back(s.path);
    seen_.synced.push_back(listed);
  }
  return send(bytes);
}

// BuildKit's packets on a FileSync/DiffCopy stream: REQ for a file's content (sent as DATA
// packets, an empty one last), FIN (answered with FIN and the end of the call), ERR.
bool BuildKitSession::continue_sync(unsigned stream) {
  Stream& s = streams_[stream];
  while (s.body.size() - s.read >= 5) {
    auto u = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(s.body[k])); };
    std::uint32_t length =
        (u(s.read + 1) << 24) | (u(s.read + 2) << 16) | (u(s.read + 3) << 8) | u(s.read + 4);
    if (s.body.size() - s.read - 5 < length) break;
    std::string packet = s.body.substr(s.read + 5, length);
    s.read += 5 + length;
    // Packet{type = 1 (varint), ID = 3 (varint), data = 4}: read the two varints.
    std::uint64_t type = 0, id = 0;
    std::size_t i = 0;
    auto read_varint = [&](std::uint64_t& v) {
      v = 0;
      for (int shift = 0; i < packet.size() && shift < 64; shift += 7) {
        auto b = static_cast<unsigned char>(packet[i++]);
        v |= std::uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) return;
      }
    };
    std::string data;
    while (i < packet.size()) {
      std::uint64_t key = 0, v = 0;
      read_varint(key);
      if ((key & 7) == 0) {
        read_varint(v);
        if ((key >> 3) == 1) type = v;
        if ((key >> 3) == 3) id = v;
      } else if ((key & 7) == 2) {
        read_varint(v);
        if ((key >> 3) == 4) data = packet.substr(i, v);
        i += v;
      } else {
        return fail("a FileSync packet this sender does not read"), false;
      }
    }
    if (type == kReq) {
      if (id >= s.files.size()) return fail("FileSync REQ for an unknown ID"), false;
      const std::string& content = dirs_[s.dir][s.files[id]];
      std::string bytes;
      for (std::size_t at = 0; at < content.size(); at += 8192)
        bytes += frame(kData, 0, stream,
                       grpc_message(field_varint(1, kPacketData) + field_varint(3, id) +
                                    field_bytes(4, content.substr(at, 8192))));
      bytes += frame(kData, 0, stream, grpc_message(field_varint(1, kPacketData) + field_varint(3, id)));
      if (!send(bytes)) return false;
    } else if (type == kFin) {
      s.finished = true;
      return send(frame(kData, 0, stream, grpc_message(field_varint(1, kFin))) +
                  frame(kHeaders, kEndHeaders | kEndStream, stream, hpack({{"grpc-status", "0"}})));
    } else if (type == kErr) {
      return fail("FileSync: BuildKit reported " + data), false;
    }
  }
  return true;
}

}  // namespace offload::e2e
