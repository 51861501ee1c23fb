#include "offload/runner/api_gate.h"

#include "offload/runner/metrics.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

namespace offload::runner {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tunnel::Outgoing;
using tunnel::TunnelFrame;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// A Beast body that counts nothing and keeps nothing: the gate frames responses only to find
// where each one starts.
struct DiscardBody {
  struct value_type {};
  struct reader {
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>&, value_type&) {}
    void init(const boost::optional<std::uint64_t>&, beast::error_code& ec) { ec = {}; }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      ec = {};
      return asio::buffer_size(buffers);
    }
    void finish(beast::error_code& ec) { ec = {}; }
  };
};

// Go's FormValue reads a form body too (urlencoded and multipart): on /build that would let a
// body carry the query parameters the judge looks at.
bool form_body(std::string_view content_type) {
  auto starts = [&](std::string_view prefix) {
    return content_type.size() >= prefix.size() &&
           beast::iequals(content_type.substr(0, prefix.size()), prefix);
  };
  return starts("application/x-www-form-urlencoded") || starts("multipart/form-data");
}

}  // namespace

// Frames the engine's responses: each one's head, in order, matched with the request it answers.
struct ApiGate::ResponseTracker {
  explicit ResponseTracker(ApiGate& gate) : gate(gate) {}

  // False once the responses can no longer be followed (after a 101, or an unreadable one).
  bool feed(std::string_view data) {
    std::string joined;
    std::string_view in = data;
    if (!unparsed.empty()) {
      joined = std::move(unparsed);
      unparsed.clear();
      joined.append(data);
      in = joined;
    }
    while (!in.empty() && following) {
      if (!parser) start();
      beast::error_code ec;
      std::size_t used = parser->put(asio::buffer(in.data(), in.size()), ec);
      in.remove_prefix(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) {
        spdlog::warn("{}: cannot follow the engine's responses ({}); upgrades are refused from "
                     "here on", gate.label_, ec.message());
        following = false;
        break;
      }
      if (parser->is_header_done() && !head_seen) {
        head_seen = true;
        const unsigned status = parser->get().result_int();
        if (status == 101) following = false;
        gate.response_head(status);
      }
      if (parser->is_done()) {
        parser.reset();
        head_seen = false;
      }
      if (used == 0) break;
    }
    if (following) unparsed.assign(in);
    return following;
  }

  void start() {
    parser.emplace();
    parser->eager(true);
    parser->header_limit(64 * 1024);
    parser->body_limit(boost::none);
    // A response to HEAD announces a body it does not send.
    if (!gate.sent_.empty() && gate.sent_.front().head) parser->skip(true);
  }

  ApiGate& gate;
  std::optional<bhttp::response_parser<DiscardBody>> parser;
  bool head_seen = false;
  bool following = true;
  std::string unparsed;
};

ApiGate::ApiGate(asio::local::stream_protocol::socket& engine, ApiPolicy policy,
                 std::string label)
    : engine_(engine),
      policy_(std::move(policy)),
      label_(std::move(label)),
      tracker_(std::make_unique<ResponseTracker>(*this)),
      upgrade_decided_(engine.get_executor()) {}

ApiGate::~ApiGate() = default;

asio::awaitable<std::error_code> ApiGate::write(std::string_view bytes) {
  if (bytes.empty()) co_return std::error_code{};
  auto [ec, n] = co_await asio::async_write(engine_, asio::buffer(bytes), kToken);
  co_return std::error_code(ec);
}

void ApiGate::refuse(int status, const std::string& message, bool head_request) {
  spdlog::warn("{}: refused a request ({}): {}", label_, status, message);
  refusal_ = http::json_error_response(status, message, head_request, /*keep_alive=*/false);
  holding_ = false;
  held_.clear();
  pending_.clear();
  // The engine answers what it has been asked so far, sees the end of the requests and closes;
  // the refusal follows its last byte.
  boost::system::error_code ignored;
  engine_.shutdown(asio::local::stream_protocol::socket::shutdown_send, ignored);
}

asio::awaitable<std::error_code> ApiGate::to_engine(std::string_view data) {
  if (refusal_) co_return std::error_code{};  // the connection is closing: nothing more goes in
  if (raw_) co_return co_await write(data);

  std::string joined;
  std::string_view in = data;
  if (!pending_.empty()) {
    joined = std::move(pending_);
    pending_.clear();
    joined.append(data);
    in = joined;
  }
  std::size_t pos = 0;       // bytes of `in` the framer has consumed
  std::size_t forward = 0;   // start of the consumed bytes not yet written or held
  // The consumed bytes go where the current request goes: held for the judge, or on.
  auto settle = [&]() -> asio::awaitable<std::error_code> {
    if (holding_) {
      held_.append(in.substr(forward, pos - forward));
      forward = pos;
      co_return std::error_code{};
    }
    auto ec = co_await write(in.substr(forward, pos - forward));
    forward = pos;
    co_return ec;
  };

  // Bounded: every event but need_more consumes bytes or ends a message.
  for (int step = 0; step < 1'000'000; ++step) {
    auto r = framer_.next(in.substr(pos));
    switch (r.event) {
      case http::RequestFramer::Event::need_more:
        if (auto ec = co_await settle()) co_return ec;
        pending_.assign(in.substr(pos));
        co_return std::error_code{};

      case http::RequestFramer::Event::head: {
        if (auto ec = co_await settle()) co_return ec;
        const auto& head = framer_.head();
        request_began_ = std::chrono::steady_clock::now();
        ApiRoute route = api_route(head.method, head.target);
        current_head_ = route.method == "HEAD";
        current_upgrade_ = head.upgrade;
        pos += r.consumed;
        switch (judged(route)) {
          case Judged::body:
            holding_ = true;
            held_head_size_ = head.head_size;
            held_route_ = std::move(route);
            held_.clear();
            break;
          case Judged::query: {
            auto refusal = judge_request(route, {}, policy_);
            if (!refusal && route.path == "/build" && form_body(head.field("Content-Type")))
              refusal = ApiRefusal{403, "this offload runner does not allow build parameters "
                                        "in a form body (Content-Type " +
                                            std::string(head.field("Content-Type")) + ")"};
            if (refusal) {
              refuse(refusal->status, refusal->message, current_head_);
              co_return std::error_code{};
            }
            sent_.push_back({current_head_, current_upgrade_, request_began_});
            break;
          }
          case Judged::no:
            sent_.push_back({current_head_, current_upgrade_, request_began_});
            break;
        }
        break;
      }

      case http::RequestFramer::Event::body:
        pos += r.consumed;
        // held_ starts with the request's head: only what follows it counts as body (as
        // received: a chunked body's framing included).
        if (holding_ &&
            held_.size() + (pos - forward) - framer_.head().head_size > kMaxJudgedBodyBytes) {
          refuse(413, "the request body is larger than the offload runner judges (" +
                          std::to_string(kMaxJudgedBodyBytes / (1024 * 1024)) + " MiB)",
                 current_head_);
          co_return std::error_code{};
        }
        break;

      case http::RequestFramer::Event::message_end:
        if (auto ec = co_await settle()) co_return ec;
        if (holding_) {
          if (auto ec = co_await release_held()) co_return ec;
          if (refusal_) co_return std::error_code{};
        }
        break;

      case http::RequestFramer::Event::upgraded: {
        if (auto ec = co_await settle()) co_return ec;
        // A judged request without a body that asks for an upgrade ends here, not at
        // message_end: it is still judged and sent before the gate waits for its answer.
        if (holding_) {
          if (auto ec = co_await release_held()) co_return ec;
          if (refusal_) co_return std::error_code{};
        }
        // Nothing more goes in until the engine has answered the upgrade request.
        if (upgrade_ == Upgrade::none) upgrade_ = Upgrade::waiting;
        while (upgrade_ == Upgrade::waiting) {
          upgrade_decided_.expires_at(asio::steady_timer::time_point::max());
          co_await upgrade_decided_.async_wait(kToken);
        }
        if (upgrade_ == Upgrade::abandoned) co_return make_error_code(std::errc::operation_canceled);
        const bool switched = upgrade_ == Upgrade::switched;
        upgrade_ = Upgrade::none;
        if (switched) {
          raw_ = true;
          co_return co_await write(in.substr(pos));
        }
        // The engine answered the request itself: what follows are requests again.
        framer_ = http::RequestFramer();
        break;
      }

      case http::RequestFramer::Event::error:
        refuse(framer_.error_status() ? framer_.error_status() : 400,
               "the offload runner cannot read this request: " + framer_.error_message(),
               false);
        co_return std::error_code{};
    }
  }
  refuse(400, "the offload runner cannot read this request", false);
  co_return std::error_code{};
}

asio::awaitable<std::error_code> ApiGate::release_held() {
  holding_ = false;
  std::string held = std::move(held_);
  held_.clear();
  std::optional<ApiRefusal> refusal;
  auto body = http::request_body(held);
  // A bind of the Docker socket becomes a bind of the session's gated socket, and only then is
  // the create judged: what the engine gets is what was judged.
  if (body && held_route_.path == "/containers/create" && policy_.serve_api_socket &&
      !policy_.api_socket.empty() && body->find("docker.sock") != std::string::npos) {
    if (auto rewritten = bind_docker_socket(*body, policy_.api_socket.string())) {
      if (policy_.serve_api_socket()) {
        held = http::head_with_content_length(std::string_view(held).substr(0, held_head_size_),
                                              rewritten->size()) +
               *rewritten;
        body = std::move(rewritten);
        spdlog::info("{}: a container create binds the Docker socket: given the gated API socket",
                     label_);
      }
    }
  }
  if (body)
    refusal = judge_request(held_route_, *body, policy_);
  else
    refusal = ApiRefusal{400, "the offload runner cannot read this request"};
  if (refusal) {
    refuse(refusal->status, refusal->message, current_head_);
    co_return std::error_code{};
  }
  sent_.push_back({current_head_, current_upgrade_, request_began_});
  co_return co_await write(held);
}

void ApiGate::response_head(unsigned status) {
  // 1xx other than 101 are interim answers: the final one still follows.
  if (status >= 100 && status < 200 && status != 101) return;
  bool upgrade = false;
  if (!sent_.empty()) {
    upgrade = sent_.front().upgrade;
    RunnerMetrics::global().api_request(std::chrono::steady_clock::now() - sent_.front().began);
    sent_.pop_front();
  }
  if (upgrade && upgrade_ == Upgrade::waiting) {
    upgrade_ = status == 101 ? Upgrade::switched : Upgrade::refused;
    upgrade_decided_.cancel();
  } else if (upgrade) {
    // The answer came before the gate got to wait for it.
    upgrade_ = status == 101 ? Upgrade::switched : Upgrade::refused;
  }
}

void ApiGate::responses_ended(tunnel::PumpEnd end) {
  // A failed response direction (the client went away, the engine socket failed or was
  // cancelled by the splice) means no answer will come: a request direction waiting for one
  // must end too, or it would hold the splice, and the engine connection, for good.
  if (end == tunnel::PumpEnd::eof) return;  // the eof frame decided already (from_engine)
  upgrade_ = Upgrade::abandoned;
  upgrade_decided_.cancel();
}

Outgoing ApiGate::from_engine(const TunnelFrame& read) {
  if (!tracker_->feed(read.data()) && !raw_ && upgrade_ == Upgrade::waiting) {
    // The responses cannot be followed: no upgrade can be confirmed.
    upgrade_ = Upgrade::refused;
    upgrade_decided_.cancel();
  }
  if (!read.eof()) return Outgoing::as_read();
  if (upgrade_ == Upgrade::waiting) {
    upgrade_ = Upgrade::refused;
    upgrade_decided_.cancel();
  }
  if (!refusal_ || refusal_sent_) return Outgoing::as_read();
  refusal_sent_ = true;
  out_.Clear();
  out_.mutable_data()->reserve(read.data().size() + refusal_->size());
  out_.mutable_data()->append(read.data());
  out_.mutable_data()->append(*refusal_);
  return Outgoing::instead(out_);
}

}  // namespace offload::runner
