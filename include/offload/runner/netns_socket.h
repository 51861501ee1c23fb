// Sockets inside a session engine's network namespace, for the runner's dials to what the
// session publishes (tunnel_targets.h).
#pragma once

#include <string>
#include <system_error>

namespace offload::runner {

// A new socket(domain, type | SOCK_CLOEXEC) that lives in the network namespace at `netns_path`
// (e.g. /var/run/netns/offload-<session>): the calling thread steps into the namespace, makes the
// socket and steps back, all in a few system calls and without blocking (it runs on the data
// plane's loop, once per forwarded connection). A socket keeps the namespace it was made in; the
// thread's own namespace is the same afterwards, or the process ends (a loop thread left in a
// session's namespace would dial there for everyone).
// Returns the descriptor, or -1 with `ec` set (e.g. the namespace does not exist).
int socket_in_network_namespace(const std::string& netns_path, int domain, int type,
                                std::error_code& ec);

}  // namespace offload::runner
