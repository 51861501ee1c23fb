// The policy of published-port tunnels (resolve_port_target): the runner dials only what the
// session's containers publish, and on the address the engine answers on for it.
#include "offload/runner/tunnel_targets.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace offload;
using namespace offload::runner;
using ::testing::HasSubstr;

namespace {

const std::string kNetns = "/var/run/netns/offload-3";

EngineAddresses engine() {
  return {boost::asio::ip::make_address("10.213.0.14"), kNetns};
}

v1::PublishedPort port(const std::string& host_ip, std::uint32_t host_port,
                       const std::string& protocol) {
  v1::PublishedPort p;
  p.set_container_id("5f2c0f3b9a6e");
  p.set_container_name("web");
  p.set_container_port(80);
  p.set_protocol(protocol);
  p.set_host_ip(host_ip);
  p.set_host_port(host_port);
  return p;
}

// The same, forwarded by the engine to `address`:`container_port` (its only network).
v1::PublishedPort to_container(v1::PublishedPort p, const std::string& address,
                               std::uint32_t container_port = 80) {
  p.set_container_address(address);
  p.set_container_port(container_port);
  return p;
}

// The target, failing the test (with the refusal) when the policy refused.
PortTarget target_of(const std::variant<PortTarget, grpc::Status>& resolved) {
  if (auto* refusal = std::get_if<grpc::Status>(&resolved)) {
    ADD_FAILURE() << "refused: " << refusal->error_message();
    return {};
  }
  return std::get<PortTarget>(resolved);
}

// The refusal, failing the test when the policy allowed the tunnel.
grpc::Status refusal_of(const std::variant<PortTarget, grpc::Status>& resolved) {
  if (auto* target = std::get_if<PortTarget>(&resolved)) {
    ADD_FAILURE() << "allowed: " << target->address.to_string() << ":" << target->port;
    return grpc::Status::OK;
  }
  return std::get<grpc::Status>(resolved);
}

}  // namespace

TEST(ResolvePortTarget, APortNobodyPublishesIsRefusedByNumberAndProtocol) {
  const std::vector<v1::PublishedPort> published = {port("0.0.0.0", 8080, "tcp")};
  auto st = refusal_of(resolve_port_target(published, 8081, "tcp", engine()));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("8081/tcp"));
  // The same number over the other protocol is another port.
  st = refusal_of(resolve_port_target(published, 8080, "udp", engine()));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("8080/udp"));
  // Nothing published at all.
  st = refusal_of(resolve_port_target({}, 8080, "tcp", engine()));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("8080/tcp"));
}

TEST(ResolvePortTarget, NumbersThatAreNoPortAreRefusedEvenWhenListed) {
  // The engine's answer is untrusted: a listing that names such a port does not open it.
  const std::vector<v1::PublishedPort> published = {port("0.0.0.0", 0, "tcp"),
                                                    port("0.0.0.0", 65536, "tcp")};
  for (std::uint32_t host_port : {0u, 65536u, 70000u}) {
    auto st = refusal_of(resolve_port_target(published, host_port, "tcp", engine()));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << host_port;
    EXPECT_THAT(st.error_message(), HasSubstr(std::to_string(host_port) + "/tcp"));
  }
  auto target = target_of(resolve_port_target({port("0.0.0.0", 65535, "tcp")}, 65535, "tcp",
                                              engine()));
  EXPECT_EQ(target.port, 65535);
}

TEST(ResolvePortTarget, ProtocolsOtherThanTcpAndUdpAreRefusedEvenWhenListed) {
  const std::vector<v1::PublishedPort> published = {port("0.0.0.0", 9000, "sctp"),
                                                    port("0.0.0.0", 9000, "TCP"),
                                                    port("0.0.0.0", 9000, "")};
  for (const std::string protocol : {"sctp", "TCP", ""}) {
    auto st = refusal_of(resolve_port_target(published, 9000, protocol, engine()));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << protocol;
    EXPECT_THAT(st.error_message(), HasSubstr("9000/" + protocol));
  }
}

TEST(ResolvePortTarget, APortPublishedWidelyIsDialledOnTheEnginesPublishedAddress) {
  for (const std::string host_ip : {"0.0.0.0", "::", "10.213.0.14"}) {
    for (const std::string protocol : {"tcp", "udp"}) {
      auto target = target_of(
          resolve_port_target({port(host_ip, 8080, protocol)}, 8080, protocol, engine()));
      EXPECT_EQ(target.address, engine().published_address) << host_ip << " " << protocol;
      EXPECT_EQ(target.port, 8080);
      EXPECT_EQ(target.netns, "") << "dialled from the runner's own namespace";
    }
  }
}

TEST(ResolvePortTarget, ALoopbackOnlyPortIsDialledOnLoopbackInsideTheEngine) {
  for (const std::string host_ip : {"127.0.0.1", "::1"}) {
    auto target = target_of(resolve_port_target({port(host_ip, 5432, "tcp")}, 5432, "tcp",
                                                engine()));
    EXPECT_EQ(target.address, boost::asio::ip::make_address(host_ip));
    EXPECT_EQ(target.port, 5432);
    EXPECT_EQ(target.netns, kNetns);
  }
}

TEST(ResolvePortTarget, ALoopbackPortOfAnEngineSharingOurNamespaceIsDialledOnItsAddress) {
  EngineAddresses shared{boost::asio::ip::make_address("127.0.0.1"), ""};
  auto target = target_of(resolve_port_target({port("127.0.0.1", 5432, "tcp")}, 5432, "tcp",
                                              shared));
  EXPECT_EQ(target.address, shared.published_address);
  EXPECT_EQ(target.netns, "");
}

TEST(ResolvePortTarget, APortPublishedOnLoopbackAndWidelyGoesToTheWideOne) {
  // Whatever the order the engine lists them in.
  const std::vector<std::vector<v1::PublishedPort>> listings = {
      {port("127.0.0.1", 8080, "tcp"), port("0.0.0.0", 8080, "tcp")},
      {port("0.0.0.0", 8080, "tcp"), port("127.0.0.1", 8080, "tcp")},
  };
  for (const auto& published : listings) {
    auto target = target_of(resolve_port_target(published, 8080, "tcp", engine()));
    EXPECT_EQ(target.address, engine().published_address);
    EXPECT_EQ(target.netns, "");
  }
}

TEST(ResolvePortTarget, AContainerWithAnAddressIsDialledDirectlyInsideTheEngine) {
  // Widely or on loopback only, tcp or udp: the container's own address and port, from inside
  // the engine's namespace, where the engine's NAT or proxy would have sent the connection.
  for (const std::string host_ip : {"0.0.0.0", "::", "127.0.0.1", "::1"}) {
    for (const std::string protocol : {"tcp", "udp"}) {
      auto target = target_of(resolve_port_target(
          {to_container(port(host_ip, 8080, protocol), "172.17.0.2", 80)}, 8080, protocol,
          engine()));
      EXPECT_EQ(target.address, boost::asio::ip::make_address("172.17.0.2"))
          << host_ip << " " << protocol;
      EXPECT_EQ(target.port, 80);
      EXPECT_EQ(target.netns, kNetns);
    }
  }
}

TEST(ResolvePortTarget, AContainerAddressIsUsedOnlyInsideANamespaceOfTheSession) {
  // An engine sharing the runner's namespace: a container address there could be anybody's.
  EngineAddresses shared{boost::asio::ip::make_address("10.213.0.14"), ""};
  auto target = target_of(resolve_port_target(
      {to_container(port("0.0.0.0", 8080, "tcp"), "172.17.0.2")}, 8080, "tcp", shared));
  EXPECT_EQ(target.address, shared.published_address);
  EXPECT_EQ(target.port, 8080);
  EXPECT_EQ(target.netns, "");
}

TEST(ResolvePortTarget, AnAddressOrPortThatIsNoneGoesThroughTheEngine) {
  for (const std::string address :
       {"", "web", "172.17.0.300", "0.0.0.0", "127.0.0.1", "::1", "fd00::2", "224.0.0.1",
        "239.1.2.3", "255.255.255.255"}) {
    auto target = target_of(resolve_port_target(
        {to_container(port("0.0.0.0", 8080, "tcp"), address)}, 8080, "tcp", engine()));
    EXPECT_EQ(target.address, engine().published_address) << address;
    EXPECT_EQ(target.port, 8080) << address;
  }
  for (std::uint32_t container_port : {0u, 65536u}) {
    auto target = target_of(resolve_port_target(
        {to_container(port("0.0.0.0", 8080, "tcp"), "172.17.0.2", container_port)}, 8080, "tcp",
        engine()));
    EXPECT_EQ(target.address, engine().published_address) << container_port;
    EXPECT_EQ(target.port, 8080) << container_port;
  }
}

TEST(ResolvePortTarget, TheWideBindingsContainerWinsOverTheLoopbackOnes) {
  // Two containers share the host port: one on the engine's loopback, one widely.
  const auto loopback = to_container(port("127.0.0.1", 8080, "tcp"), "172.17.0.3", 81);
  const auto wide = to_container(port("0.0.0.0", 8080, "tcp"), "172.17.0.2", 80);
  for (const auto& published : std::vector<std::vector<v1::PublishedPort>>{{loopback, wide},
                                                                            {wide, loopback}}) {
    auto target = target_of(resolve_port_target(published, 8080, "tcp", engine()));
    EXPECT_EQ(target.address, boost::asio::ip::make_address("172.17.0.2"));
    EXPECT_EQ(target.port, 80);
  }
}
