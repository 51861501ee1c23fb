// Feeds a hostile client's Sync messages to the runner's replica (what src/runner/sync_call.cpp
// runs for every Sync call): the input is a sequence of records, each a 2-byte little-endian
// length and that many bytes parsed as one offload.v1.SyncMessage (records that do not parse
// are skipped). After them the harness sends a barrier, reads until its answer or the end of the
// call, and ends the call. Invariants: the replica returns (it never hangs or throws), and
// nothing appears outside the sync root: the directory holding the root keeps exactly the root
// and a sentinel file whose content is unchanged; inside the root only mount directories named
// by valid mount ids exist.
#include <poll.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "offload/sync/replica.h"
#include "offload/sync/wire.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using offload::sync::Transport;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "sync replica contract violated: %s\n", what);
  std::abort();
}

const fs::path& outer() {
  static const fs::path dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "offload-sync-fuzz-XXXXXX").string();
    check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
    std::ofstream(fs::path(tmpl) / "sentinel") << "outside the sync root\n";
    // Outlives the static path (destroyed before atexit handlers registered during its making).
    static const std::string* remove_at_exit = new std::string(tmpl);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(*remove_at_exit, ec);
    });
    spdlog::set_level(spdlog::level::off);  // every refusal is logged; the invariants speak
    return fs::path(tmpl);
  }();
  return dir;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Empties the client's inbox (what the replica sent); true once the barrier's ack was seen.
bool drain(Transport& client, std::uint64_t barrier) {
  bool acked = false;
  while (auto m = client.inbox().try_pop())
    if (m->has_barrier_ack() && m->barrier_ack().id() == barrier) acked = true;
  return acked;
}

// Offers `m` until taken, reading meanwhile (the replica may be waiting to send). False when the
// call is over or `until` passed.
bool send(Transport& client, offload::v1::SyncMessage m, std::uint64_t barrier, bool& acked,
          std::chrono::steady_clock::time_point until) {
  while (std::chrono::steady_clock::now() < until) {
    switch (client.try_send(m)) {
      case Transport::Offer::taken: return true;
      case Transport::Offer::broken: return false;
      case Transport::Offer::busy: break;
    }
    acked |= drain(client, barrier);
    if (client.inbox().finished()) return false;
    pollfd fds[2] = {{client.send_fd(), POLLIN, 0}, {client.inbox().fd(), POLLIN, 0}};
    ::poll(fds, 2, 10);
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path root = outer() / "root";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root, ec);
  check(!ec, "cannot create the sync root");

  offload::sync::ReplicaOptions options;
  options.sync_root = root;
  options.settle = 1ms;
  options.max_delay = 5ms;
  options.stamp = [] { return std::string("20260101-000000"); };
  auto [client, replica] = offload::sync::make_transport_pair(4);
  std::atomic<bool> stop{false};
  std::thread server([&, r = replica.get()] {
    offload::sync::serve_replica(*r, options, stop);
    // What gRPC does when the runner's reactor finishes: the client's reading ends.
    r->cancel();
  });

  constexpr std::uint64_t kBarrier = 0xfeedf00d;
  const auto until = std::chrono::steady_clock::now() + 5s;
  bool acked = false, open = true;
  std::size_t pos = 0;
  while (open && pos + 2 <= size) {
    std::size_t len = data[pos] | (static_cast<std::size_t>(data[pos + 1]) << 8);
    pos += 2;
    len = std::min(len, size - pos);
    offload::v1::SyncMessage m;
    bool parsed = m.ParseFromArray(data + pos, static_cast<int>(len));
    pos += len;
    if (parsed) open = send(*client, std::move(m), kBarrier, acked, until);
  }
  if (open) {
    offload::v1::SyncMessage b;
    b.mutable_barrier()->set_id(kBarrier);
    open = send(*client, std::move(b), kBarrier, acked, until);
  }
  while (open && !acked && std::chrono::steady_clock::now() < until) {
    acked |= drain(*client, kBarrier);
    if (client->inbox().finished()) break;
    pollfd fd{client->inbox().fd(), POLLIN, 0};
    ::poll(&fd, 1, 10);
  }
  client->cancel();
  stop.store(true);
  server.join();

  // Nothing outside the root.
  std::size_t entries = 0;
  for (const auto& e : fs::directory_iterator(outer())) {
    ++entries;
    auto name = e.path().filename().string();
    check(name == "root" || name == "sentinel", "a file appeared beside the sync root");
  }
  check(entries == 2, "the sync root or the sentinel disappeared");
  check(read_all(outer() / "sentinel") == "outside the sync root\n", "the sentinel changed");
  check(fs::is_directory(fs::symlink_status(root)), "the sync root is no longer a directory");
  for (const auto& e : fs::directory_iterator(root))
    check(offload::sync::valid_mount_id(e.path().filename().string()) &&
              fs::is_directory(fs::symlink_status(e.path())),
          "the sync root holds something other than mount directories");
  return 0;
}
