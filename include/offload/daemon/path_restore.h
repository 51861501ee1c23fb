// Showing the user's bind sources again in the engine's answers (issue 14 item 1).
//
// offloadd rewrites every bind source of a container create to the path of its replica on the
// runner (bind_rewrite.h). The engine then reports those runner paths wherever it shows a source:
// container inspect (`Mounts[].Source`, `HostConfig.Binds`, `HostConfig.Mounts[].Source`), the
// container list (`Mounts`), events. Clients compare them with what they asked for, so the
// answers to those requests go through a ResponseRewriter that puts the local paths back.
//
// The rewriting is textual, on the JSON as the engine wrote it, so nothing else of the answer
// changes (key order, numbers, escapes): a replica path is replaced where it starts a JSON string
// and ends it ('"'), ends the source of a "src:dst" Binds entry (':'), or continues with '/' (a
// path inside a synchronised directory). Replica paths are long runner paths of offloadd's own
// making (<state>/sessions/<id>/sync/<mount id>), which no other field holds.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace offload::daemon {

struct PathMapping {
  std::string replica;  // the runner path the engine shows (unescaped)
  std::string local;    // what to show instead where the JSON string ends or goes on with '/'
  // What to show where a Binds entry goes on with ":dst": HostConfig.Binds keeps the source as
  // the client wrote it, where Mounts[].Source shows it cleaned. Empty: `local`.
  std::string local_in_bind;
};

// Go's encoding/json spelling of `text` inside a JSON string (what dockerd writes): '"', '\\'
// and control characters escaped, and '<', '>', '&', U+2028, U+2029 as \u escapes.
std::string go_json_escape(std::string_view text);


// Replaces replica paths in a stream of JSON text, however the stream is split: holds back only
// the bytes that may still turn out to be the start of a replica path.
class PathRestorer {
 public:
  explicit PathRestorer(const std::vector<PathMapping>& mappings);

  // The text of `data` ready to go out (with the replacements made).
  std::string feed(std::string_view data);
  // The end of the stream: everything held back.
  std::string finish();
  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    std::string from;           // the replica path as it appears in the JSON (escaped)
    std::string to_quote_slash;  // escaped replacement before '"' or '/'
    std::string to_colon;        // escaped replacement before ':'
  };
  std::string process(bool at_end);

  std::vector<Rule> rules_;  // longest `from` first
  std::string pending_;
  char previous_ = 0;  // the last byte that went out
};

// One HTTP response of the engine to a request whose answer may show bind sources. Reads the
// response head; a 200 answer's body goes through a PathRestorer:
//  - chunked bodies (events, large lists) chunk by chunk, streamed, re-chunked;
//  - bodies with a Content-Length of at most `max_body` are held whole and go out with the new
//    length; larger ones, other statuses, and bodies framed otherwise pass through unchanged.
class ResponseRewriter {
 public:
  static constexpr std::size_t kMaxHead = 64 * 1024;

  ResponseRewriter(const std::vector<PathMapping>& mappings, std::size_t max_body);

  struct Fed {
    std::string out;           // bytes to deliver now
    std::size_t consumed = 0;  // of the input; less than all only once done()
  };
  Fed feed(std::string_view data);
  // The response has ended (bytes after it are not this rewriter's).
  bool done() const { return state_ == State::done; }
  // Everything from here on is forwarded unchanged.
  bool passing_through() const { return state_ == State::pass; }

 private:
  enum class State { head, length_body, chunk_size, chunk_data, chunk_data_end, trailers, pass, done };
  void on_head(Fed& fed);
  void pass_with(Fed& fed, std::string_view raw);
  void emit_chunk(Fed& fed, const std::string& data);

  PathRestorer restorer_;
  std::size_t max_body_;
  State state_ = State::head;
  std::string head_;
  std::string body_;
  std::size_t remaining_ = 0;  // of the Content-Length body, or of the current chunk
  std::string line_;           // a chunk-size or trailer line being read
  std::string trailers_;
};

}  // namespace offload::daemon
