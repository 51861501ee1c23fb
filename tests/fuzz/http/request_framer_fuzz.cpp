// Drives RequestFramer the way the daemon does (append what arrives, call next() until
// need_more, drop each consumed prefix), with the input cut at data-dependent points, and
// aborts on any broken contract. Cutting the same bytes differently must frame them the same.
#include "offload/http/request_framer.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {
using offload::http::RequestFramer;
using Event = RequestFramer::Event;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "request framer contract violated: %s\n", what);
  std::abort();
}
void check(bool ok, const char* what) {
  if (!ok) violated(what);
}

std::uint64_t fnv1a(std::string_view data) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The framing of a whole input, independent of how it was cut: bodies merged per request.
struct Trace {
  std::vector<std::string> events;
  std::size_t consumed = 0;
  bool operator==(const Trace&) const = default;
};

bool ends_in_error(const Trace& t) {
  return !t.events.empty() && t.events.back().starts_with("error:");
}

// Without errors, every cut must give the same framing. Beast may spot a malformed head or
// trailer earlier when it sees more bytes at once (it skips re-parsing until CRLFCRLF arrives),
// so with an error only the heads and message ends up to the error have to agree.
bool consistent(const Trace& a, const Trace& b) {
  if (!ends_in_error(a) && !ends_in_error(b)) return a == b;
  auto skeleton = [](const Trace& t) {
    std::vector<std::string> s;
    for (const auto& e : t.events)
      if (!e.starts_with("body:") && !e.starts_with("error:")) s.push_back(e);
    return s;
  };
  auto x = skeleton(a), y = skeleton(b);
  if (x.size() > y.size()) std::swap(x, y);
  return std::equal(x.begin(), x.end(), y.begin());
}

class Driver {
 public:
  explicit Driver(std::size_t max_head) : framer_(max_head), max_head_(max_head) {}

  void feed(std::string_view piece) {
    if (done_) return;
    pending_.append(piece);
    fed_ += piece.size();
    int zero_progress = 0;
    // Every event but message_end and upgraded consumes a byte or ends the loop.
    const std::size_t max_iterations = 4 * pending_.size() + 16;
    for (std::size_t iterations = 0;; ++iterations) {
      check(iterations <= max_iterations, "too many iterations for one feed");
      const auto r = framer_.next(pending_);
      check(r.consumed <= pending_.size(), "consumed more than the input");
      zero_progress = r.consumed == 0 ? zero_progress + 1 : 0;
      check(zero_progress <= 3, "events without progress");
      on_event(r);
      trace_.consumed += r.consumed;
      check(trace_.consumed <= fed_, "consumed more than was ever fed");
      pending_.erase(0, r.consumed);
      if (done_ || r.event == Event::need_more) return;
    }
  }

  Trace finish() {
    if (done_) {
      // Terminal states stay terminal and consume nothing.
      const auto r = framer_.next(pending_);
      check(r.consumed == 0, "terminal state consumed bytes");
      check(r.event == last_, "terminal state changed");
    }
    return trace_;
  }

 private:
  enum class Expect { head, after_head, body, after_end };

  void on_event(RequestFramer::Result r) {
    switch (r.event) {
      case Event::need_more:
        check(r.consumed == 0, "need_more consumed bytes");
        return;
      case Event::head: {
        check(expect_ == Expect::head || expect_ == Expect::after_end, "head out of order");
        check(r.consumed > 0, "empty head");
        const auto& h = framer_.head();
        check(r.consumed == h.head_size, "head consumed != head_size");
        check(h.head_size <= max_head_, "head larger than the limit");
        check(std::string_view(pending_).substr(0, r.consumed).ends_with("\r\n\r\n"),
              "head does not end with CRLFCRLF");
        check(h.version == 10 || h.version == 11, "odd version");
        check(!(h.chunked && h.content_length), "chunked with Content-Length");
        check(h.upgrade == !h.upgrade_protocol.empty(), "upgrade flag without protocol");
        check(!h.method.empty() && !h.target.empty(), "empty method or target");
        upgrade_ = h.upgrade;
        has_body_ = h.chunked || h.content_length.value_or(0) > 0;
        body_left_ = h.content_length.value_or(0);
        expect_ = Expect::after_head;
        trace_.events.push_back("head:" + std::to_string(r.consumed));
        return;
      }
      case Event::body:
        check(expect_ == Expect::after_head || expect_ == Expect::body, "body out of order");
        check(has_body_, "body for a bodiless request");
        check(r.consumed > 0, "empty body event");
        if (!framer_.head().chunked) {
          check(r.consumed <= body_left_, "body beyond Content-Length");
          body_left_ -= r.consumed;
        }
        if (expect_ == Expect::body)
          trace_.events.back() = "body:" + std::to_string(body_total_ += r.consumed);
        else
          trace_.events.push_back("body:" + std::to_string(body_total_ = r.consumed));
        expect_ = Expect::body;
        return;
      case Event::message_end:
        check(r.consumed == 0, "message_end consumed bytes");
        check(expect_ == Expect::after_head || expect_ == Expect::body, "end out of order");
        check(!framer_.head().chunked ? body_left_ == 0 : true, "end before Content-Length");
        check(!(upgrade_ && !has_body_), "bodiless upgrade ended as a message");
        expect_ = upgrade_ ? Expect::after_end : Expect::head;
        body_total_ = 0;
        trace_.events.push_back("end");
        return;
      case Event::upgraded:
        check(r.consumed == 0, "upgraded consumed bytes");
        check(upgrade_, "upgraded without an upgrade request");
        check(has_body_ ? expect_ == Expect::after_end : expect_ == Expect::after_head,
              "upgraded out of order");
        done_ = true;
        last_ = r.event;
        trace_.events.push_back("upgraded");
        return;
      case Event::error:
        check(r.consumed == 0, "error consumed bytes");
        check(expect_ != Expect::after_end, "error after an upgrade request ended");
        check(framer_.error_status() >= 400 && framer_.error_status() <= 599, "odd error status");
        check(!framer_.error_message().empty(), "error without message");
        done_ = true;
        last_ = r.event;
        trace_.events.push_back("error:" + std::to_string(framer_.error_status()));
        return;
    }
    violated("unknown event");
  }

  RequestFramer framer_;
  std::size_t max_head_;
  std::string pending_;
  std::size_t fed_ = 0;
  Trace trace_;
  Expect expect_ = Expect::head;
  bool upgrade_ = false;
  bool has_body_ = false;
  std::uint64_t body_left_ = 0;
  std::uint64_t body_total_ = 0;
  bool done_ = false;
  Event last_ = Event::need_more;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::uint64_t seed = fnv1a(input) | 1;
  auto random = [&seed] {  // xorshift64: cuts depend on the data only
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  // Small limits too, so the fuzzer reaches the 431 paths with short inputs.
  static constexpr std::size_t limits[] = {64, 300, 64 * 1024};
  const std::size_t max_head = limits[random() % 3];

  Driver whole(max_head);
  whole.feed(input);
  const Trace expected = whole.finish();

  Driver cut(max_head);
  for (std::size_t pos = 0; pos < size;) {
    const std::size_t n = 1 + random() % (random() % 4 == 0 ? 3 : 97);
    cut.feed(input.substr(pos, n));
    pos += n;
  }
  check(consistent(cut.finish(), expected), "cutting the input changed the framing");

  if (size <= 16 * 1024) {
    Driver bytewise(max_head);
    for (std::size_t pos = 0; pos < size; ++pos) bytewise.feed(input.substr(pos, 1));
    check(consistent(bytewise.finish(), expected), "byte-by-byte feeding changed the framing");
  }
  return 0;
}
