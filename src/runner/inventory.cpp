#include "offload/runner/inventory.h"

#include <boost/asio/ip/address_v4.hpp>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace offload::runner {
namespace {

using nlohmann::json;

constexpr std::string_view kContainersQuery = "GET /containers/json";
constexpr std::string_view kImagesQuery = "GET /images/json";

[[noreturn]] void unexpected(std::string_view query, const std::string& detail) {
  throw std::runtime_error("the session engine returned an unexpected answer to " +
                           std::string(query) + ": " + detail);
}

// The engine omits or nulls fields it has nothing for; both read as "absent".
const json* field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string string_field(std::string_view query, const json& object, const char* key) {
  const json* value = field(object, key);
  if (!value) return {};
  if (!value->is_string()) unexpected(query, std::string(key) + " is not a string");
  return value->get<std::string>();
}

std::int64_t int_field(std::string_view query, const json& object, const char* key) {
  const json* value = field(object, key);
  if (!value) return 0;
  if (value->is_number_unsigned()) {
    auto v = value->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      unexpected(query, std::string(key) + " is out of range");
    return static_cast<std::int64_t>(v);
  }
  if (!value->is_number_integer()) unexpected(query, std::string(key) + " is not an integer");
  return value->get<std::int64_t>();
}

std::uint32_t port_field(std::string_view query, const json& object, const char* key) {
  std::int64_t v = int_field(query, object, key);
  if (v < 0 || v > 65535) unexpected(query, std::string(key) + " is not a port number");
  return static_cast<std::uint32_t>(v);
}

// Strings of an array field (null = empty); `skip` drops a placeholder value.
std::vector<std::string> string_list(std::string_view query, const json& object, const char* key,
                                     std::string_view skip = {}) {
  std::vector<std::string> out;
  const json* value = field(object, key);
  if (!value) return out;
  if (!value->is_array()) unexpected(query, std::string(key) + " is not a list");
  for (const auto& item : *value) {
    if (!item.is_string()) unexpected(query, std::string(key) + " holds a non-string");
    const auto& text = item.get_ref<const std::string&>();
    if (!skip.empty() && text == skip) continue;
    out.push_back(text);
  }
  return out;
}

json parse_list(std::string_view query, std::string_view engine_json) {
  json doc = json::parse(engine_json.begin(), engine_json.end(), nullptr, false);
  if (doc.is_discarded()) unexpected(query, "not JSON");
  if (!doc.is_array()) unexpected(query, "not a JSON list");
  return doc;
}

void require_object(std::string_view query, const json& item) {
  if (!item.is_object()) unexpected(query, "an entry is not a JSON object");
}

// The container's IPv4 address when it is on exactly one network that gave it one: then that
// is where the engine forwards its published ports. With several networks the engine picks one
// by rules of its own, so none is named; a shape we do not know names none either (the address
// only lets the runner skip the engine's NAT, it is never needed).
std::string single_network_address(const json& container) {
  const json* settings = field(container, "NetworkSettings");
  if (!settings || !settings->is_object()) return {};
  const json* networks = field(*settings, "Networks");
  if (!networks || !networks->is_object() || networks->size() != 1) return {};
  const json& network = networks->begin().value();
  if (!network.is_object()) return {};
  const json* address = field(network, "IPAddress");
  if (!address || !address->is_string()) return {};
  boost::system::error_code ec;
  auto v4 = boost::asio::ip::make_address_v4(address->get_ref<const std::string&>(), ec);
  if (ec || !is_container_address(v4)) return {};
  return v4.to_string();
}

}  // namespace

bool is_container_address(const boost::asio::ip::address_v4& address) {
  return !address.is_unspecified() && !address.is_loopback() && !address.is_multicast() &&
         address != boost::asio::ip::address_v4::broadcast();
}

std::vector<v1::Container> parse_containers(std::string_view engine_json) {
  const auto q = kContainersQuery;
  const json doc = parse_list(q, engine_json);
  std::vector<v1::Container> containers;
  containers.reserve(doc.size());
  for (const auto& item : doc) {
    require_object(q, item);
    v1::Container c;
    c.set_id(string_field(q, item, "Id"));
    if (c.id().empty()) unexpected(q, "a container has no Id");
    for (auto& name : string_list(q, item, "Names")) {
      // The engine names containers by their path under the root: "/web".
      if (!name.empty() && name.front() == '/') name.erase(0, 1);
      c.add_names(std::move(name));
    }
    c.set_image(string_field(q, item, "Image"));
    c.set_command(string_field(q, item, "Command"));
    c.set_created_unix(int_field(q, item, "Created"));
    c.set_state(string_field(q, item, "State"));
    c.set_status(string_field(q, item, "Status"));
    if (const json* ports = field(item, "Ports")) {
      if (!ports->is_array()) unexpected(q, "Ports is not a list");
      for (const auto& p : *ports) {
        require_object(q, p);
        auto* port = c.add_ports();
        port->set_host_ip(string_field(q, p, "IP"));
        port->set_host_port(port_field(q, p, "PublicPort"));
        port->set_container_port(port_field(q, p, "PrivatePort"));
        port->set_protocol(string_field(q, p, "Type"));
      }
    }
    c.set_address(single_network_address(item));
    containers.push_back(std::move(c));
  }
  return containers;
}

std::vector<v1::Image> parse_images(std::string_view engine_json) {
  const auto q = kImagesQuery;
  const json doc = parse_list(q, engine_json);
  std::vector<v1::Image> images;
  images.reserve(doc.size());
  for (const auto& item : doc) {
    require_object(q, item);
    v1::Image image;
    image.set_id(string_field(q, item, "Id"));
    if (image.id().empty()) unexpected(q, "an image has no Id");
    for (auto& tag : string_list(q, item, "RepoTags", "<none>:<none>"))
      image.add_repo_tags(std::move(tag));
    image.set_created_unix(int_field(q, item, "Created"));
    image.set_size_bytes(int_field(q, item, "Size"));
    images.push_back(std::move(image));
  }
  return images;
}

}  // namespace offload::runner
