// What `docker buildx build` (docker driver) does on the Docker API, without buildx (not packaged
// for Debian 12). BuildKitSession: `POST /session` with `Upgrade: h2c`, after which the hijacked
// connection is HTTP/2 with the *client* as the gRPC server and dockerd's BuildKit as the gRPC
// client. It serves:
//  - grpc.health.v1.Health/Check: BuildKit checks the session every second and drops it when a
//    check fails;
//  - moby.buildkit.secrets.v1.Secrets/GetSecret (`RUN --mount=type=secret`);
//  - moby.filesync.v1.FileSync/DiffCopy, the sending end of the fsutil protocol: how buildx hands
//    BuildKit the Dockerfile and the build context (flat directories of small files here);
//  - moby.filesync.v1.FileSend/DiffCopy, the receiving end of an export: a tar as a stream of
//    BytesMessage (`--output type=tar`), or with receive_directory() a directory by the fsutil
//    protocol (`--output type=local`);
//  - moby.sshforward.v1.SSH/CheckAgent and ForwardAgent (`RUN --mount=type=ssh`): a fake agent
//    that answers a connection's bytes, once it half-closes, with "agent got: <bytes>".
// grpc_call(): `POST /grpc`, BuildKit's own control API, the client being the HTTP/2 client.
// HTTP/2 framing is done here, header compression by nghttp2's HPACK codec, protobuf by hand.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace offload::e2e {

class BuildKitSession {
 public:
  // `socket`: a Docker API unix socket (offload's or an engine's own); `secrets`: id → value.
  BuildKitSession(std::string socket, std::map<std::string, std::string> secrets);
  ~BuildKitSession();  // stop()

  // Sends `POST /session`, reads the answer's head and, on 101, serves the connection on a
  // thread of its own until stop(). "" on success, else what went wrong.
  std::string start(std::chrono::seconds timeout = std::chrono::seconds(10));
  void stop();

  const std::string& id() const { return id_; }

  // A local directory BuildKit may ask for by name ("context", "dockerfile"): file name → content.
  // Before start().
  void serve_directory(const std::string& name, std::map<std::string, std::string> files) {
    dirs_[name] = std::move(files);
  }
  // Take an export as a directory (`--output type=local`) rather than a tar. Before start().
  void receive_directory() { receive_directory_ = true; }

  // What the exchange showed, for the tests (safe to call while it runs).
  struct Seen {
    std::string status_line;             // "HTTP/1.1 101 Switching Protocols"
    std::string upgrade;                 // the answer's Upgrade header
    bool client_preface = false;         // dockerd's HTTP/2 client connection preface arrived
    bool settings = false;               // dockerd's SETTINGS arrived
    bool settings_acked = false;         // dockerd acknowledged ours
    std::vector<std::string> calls;      // ":path" of every gRPC call dockerd made, in order
    std::vector<std::string> secret_ids; // ids GetSecret asked for
    std::string exported;                // the bytes a FileSend/DiffCopy stream delivered
    std::vector<std::string> synced;     // "dir-name: file,file" per FileSync/DiffCopy sent
    std::map<std::string, std::string> received;  // receive_directory(): regular file → content
    std::size_t received_entries = 0;    // every Stat of that export (directories, links too)
    std::vector<std::string> agent_received;  // per SSH/ForwardAgent connection, what it sent
    std::string error;                   // the first protocol error, "" if none
    bool closed = false;                 // dockerd closed the connection (or sent GOAWAY)
  };
  Seen seen() const;

 private:
  void serve();
  bool handle_frame(unsigned type, unsigned flags, unsigned stream, const std::string& payload);
  void answer(unsigned stream, const std::string& path, const std::string& message);
  std::string hpack(std::vector<std::pair<std::string, std::string>> fields);
  bool start_sync(unsigned stream);
  bool continue_sync(unsigned stream);
  bool continue_receive(unsigned stream);
  bool send(const std::string& bytes);
  void fail(const std::string& why);

  std::string socket_;
  std::map<std::string, std::string> secrets_;
  std::string id_;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  Seen seen_;
  struct Stream {
    std::string path;
    std::multimap<std::string, std::string> headers;
    std::string body;
    // FileSync/DiffCopy: the files sent, by packet ID; how much of `body` is read; done.
    std::vector<std::string> files;
    std::string dir;
    std::size_t read = 0;
    bool syncing = false, finished = false;
    // FileSend/DiffCopy as a directory: paths by packet ID; files whose content is complete.
    bool receiving = false, walked = false;
    std::vector<std::string> paths;
    std::vector<bool> regular;
    std::map<std::uint64_t, std::string> content;
    std::size_t requested = 0, completed = 0;
  };
  bool receive_directory_ = false;
  std::map<std::string, std::map<std::string, std::string>> dirs_;
  std::map<unsigned, Stream> streams_;
  void* inflater_ = nullptr;  // nghttp2_hd_inflater*
  void* deflater_ = nullptr;  // nghttp2_hd_deflater*
};

// The other upgrade buildx's docker driver uses: `POST /grpc`, after which dockerd serves
// BuildKit's own gRPC API (moby.buildkit.v1.Control) on the hijacked h2c connection, the client
// being the HTTP/2 client. One unary call of `method` with the protobuf `request`.
struct GrpcReply {
  std::string status_line;   // "HTTP/1.1 101 Switching Protocols"
  std::string upgrade;       // the answer's Upgrade header
  std::string grpc_status;   // the trailer ("0": OK)
  std::string grpc_message;
  std::string message;       // the answer's protobuf bytes
  std::string error;         // "" when the call ran to its end
};
GrpcReply grpc_call(const std::string& socket, const std::string& method,
                    const std::string& request,
                    std::chrono::seconds timeout = std::chrono::seconds(20));

}  // namespace offload::e2e
