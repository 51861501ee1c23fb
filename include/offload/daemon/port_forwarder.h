// Published ports on this machine: one local listener per (local address, port, protocol) that a
// container of the session publishes, each accepted TCP connection or UDP client flow carried by
// its own tunnel stream to the runner.
//
// The runner sends the complete set of published ports whenever it changes; apply() makes the
// listeners match it. A port that cannot be bound locally is kept in ports() with the reason, so
// `docker offload status` never skips one silently; the next apply() (or reconcile()) retries it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "offload/tunnel/data_channel.h"
#include "offload/tunnel/grpc_streams.h"
#include "offload/v1/control.pb.h"
#include "offload/v1/runner.pb.h"

namespace offload::daemon {

struct PortPolicy {
  // Docker's own behaviour for HostIp 0.0.0.0/::: every interface. Off by default: a container
  // port published on a remote host should not silently become reachable from this machine's
  // network.
  bool bind_all_interfaces = false;
  bool data_channel = true;  // config ports.dataChannel
  // config ports.multiplexDataChannel: ODC2 (one connection, many streams) when the runner
  // speaks it; false keeps a TLS connection per forwarded connection (ODC1).
  bool multiplex_data_channel = true;
};

// Which local address a published port listens on, from the HostIp the engine reports:
// "0.0.0.0"/"" → 127.0.0.1 (0.0.0.0 with bind_all_interfaces); "::" → ::1 (:: with
// bind_all_interfaces); an explicit loopback stays; any other explicit address names an interface
// of the remote host, not of this one, so it becomes the loopback of its family. An unparseable
// HostIp is treated like "0.0.0.0".
boost::asio::ip::address local_bind_address(const std::string& host_ip, const PortPolicy& policy);

// "127.0.0.1:8081", "[::1]:8081".
std::string format_local_address(const boost::asio::ip::address& address, std::uint32_t port);

// Activity accounting for the session's idle timer: one opened/closed pair per forwarded TCP
// connection or UDP flow. Called from io threads; must not block.
class ActivitySink {
 public:
  virtual ~ActivitySink() = default;
  virtual void connection_opened() = 0;
  virtual void connection_closed() = 0;
};

// Time as UDP flow expiry sees it. Production uses the steady clock; tests inject a manual clock
// and a short `max_real_wait`, which bounds each real timer wait so that a manually advanced
// clock is noticed within about that long (a ManualWaitTraits without a static clock).
struct FlowClock {
  std::function<std::chrono::steady_clock::time_point()> now = [] {
    return std::chrono::steady_clock::now();
  };
  std::chrono::steady_clock::duration max_real_wait = std::chrono::hours(24);
};

struct UdpFlowSettings {
  // A client that sent and received nothing for this long has its flow (and tunnel) closed.
  std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(60);
  // Datagrams waiting for the tunnel per flow; beyond that they are dropped, as UDP may.
  std::size_t max_queued_datagrams = 64;
  // Flows per listener; datagrams from further clients are dropped until one expires.
  std::size_t max_flows = 4096;
  FlowClock clock;
};

// A listener's identity: what a snapshot entry maps to on this machine.
struct ListenerKey {
  std::string protocol;  // "tcp" or "udp"
  boost::asio::ip::address address;
  std::uint32_t port = 0;
  auto operator<=>(const ListenerKey& o) const {
    return std::tie(port, protocol, address) <=> std::tie(o.port, o.protocol, o.address);
  }
  bool operator==(const ListenerKey& o) const = default;
};

// The listeners a snapshot asks for, each with the (first) entry it serves. Entries that collapse
// onto one local address (e.g. two remote interfaces, both mapped to loopback) share a listener.
// Entries that cannot be forwarded at all (no host port, a protocol other than tcp/udp) are
// returned in `unforwardable` with the reason.
struct ListenerPlan {
  std::map<ListenerKey, v1::PublishedPort> listeners;
  std::vector<std::pair<v1::PublishedPort, std::string>> unforwardable;
};
ListenerPlan plan_listeners(const std::vector<v1::PublishedPort>& snapshot,
                            const PortPolicy& policy);

// The message for a failed bind, e.g. "127.0.0.1:8081 already in use by another program".
std::string bind_error_message(const ListenerKey& key, const boost::system::error_code& ec);

class PortForwarder {
 public:
  // Opens a tunnel for one local connection or UDP flow (RunnerClient::open_port_tunnel in
  // production); nullptr when there is no runner to open it on (the connection is closed).
  using TunnelOpener = std::function<std::shared_ptr<tunnel::ClientTunnelStream>(
      std::uint32_t host_port, const std::string& protocol)>;

  // The data channel for TCP connections (RunnerClient::data_channel in production): `dialer`
  // gives one, or null to use the opener; `failed` hears of a channel that broke before the
  // runner answered (that connection then goes through the opener).
  struct DataChannel {
    // `max_version`: the newest wire format to use (1: ODC1, 2: ODC2).
    std::function<std::shared_ptr<tunnel::data_channel::Dialer>(unsigned max_version)> dialer;
    std::function<void(const std::string& why)> failed;
  };

  // `activity` must outlive the forwarder; connections still finishing after the forwarder is
  // destroyed no longer report to it.
  PortForwarder(boost::asio::io_context& io, PortPolicy policy, ActivitySink& activity,
                UdpFlowSettings udp = {});
  ~PortForwarder();
  PortForwarder(const PortForwarder&) = delete;
  PortForwarder& operator=(const PortForwarder&) = delete;

  // Thread-safe, never blocks on the io threads. Makes the listeners match `snapshot`: new ones
  // bind now (a failure is recorded with its reason), ones no longer wanted close (their TCP
  // connections may finish; their UDP flows end). Listeners that failed before are retried.
  // `opener` (and `data` for TCP) serve every later connection, including on listeners that
  // stay.
  void apply(const std::vector<v1::PublishedPort>& snapshot, TunnelOpener opener,
             DataChannel data = {});
  // Applies the last snapshot again: retries failed binds, rebinds listeners that died.
  void reconcile();
  // Closes every listener and forgets the snapshot (session ended or stopped).
  void clear();

  // One entry per wanted (local address, protocol), listening or not (then with `error`),
  // ordered by port, protocol, address; then every snapshot entry that cannot be forwarded.
  std::vector<v1::ForwardedPort> ports() const;

  struct Listener;  // implementation; public for the .cpp's helpers
  struct Shared;

 private:
  void apply_locked();

  boost::asio::io_context& io_;
  PortPolicy policy_;
  std::shared_ptr<Shared> shared_;
  mutable std::mutex mu_;
  std::vector<v1::PublishedPort> snapshot_;
  ListenerPlan plan_;
  std::map<ListenerKey, std::shared_ptr<Listener>> listeners_;  // wanted or still closing
  std::map<ListenerKey, std::string> failures_;                 // wanted, bind failed: why
};

}  // namespace offload::daemon
