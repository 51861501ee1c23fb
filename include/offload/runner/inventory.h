// What runs in a session engine, translated from the Docker Engine API (v1.41) into the runner
// protocol's messages. Pure functions: the engine's answer is untrusted input.
#pragma once

#include <boost/asio/ip/address_v4.hpp>

#include <string_view>
#include <vector>

#include "offload/v1/runner.pb.h"

namespace offload::runner {

// An address a container can have on a network of its own, so that the runner may dial it
// directly inside the engine's namespace: not unspecified, loopback, multicast or broadcast.
// The inventory keeps only such addresses and the dial checks again (the engine's answer is
// untrusted input).
bool is_container_address(const boost::asio::ip::address_v4& address);

// Parses the body of GET /containers/json: names lose their leading "/", null fields are empty,
// a port without PublicPort is exposed but not published (host_port 0). Throws
// std::runtime_error("the session engine returned an unexpected answer to GET /containers/json:
// ...") on anything that is not that shape; never crashes.
std::vector<v1::Container> parse_containers(std::string_view engine_json);

// Parses the body of GET /images/json. Untagged images (RepoTags null or ["<none>:<none>"]) get
// no repo_tags. Throws std::runtime_error like parse_containers.
std::vector<v1::Image> parse_images(std::string_view engine_json);

}  // namespace offload::runner
