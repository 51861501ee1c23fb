#include <unistd.h>

#include "offload/common/process.h"
#include "offload/engine/engine.h"

namespace offload::engine {

std::string check_prerequisites() {
  if (::geteuid() != 0)
    return "the local runner must run as root: it creates network namespaces and starts dockerd "
           "(run it with sudo, or use a remote account)";
  struct Need {
    const char* program;
    const char* package;
  };
  for (const Need& need : {Need{"dockerd", "docker.io"}, Need{"ip", "iproute2"},
                           Need{"iptables", "iptables"}, Need{"nsenter", "util-linux"}}) {
    if (!find_program(need.program))
      return std::string(need.program) + " not found: install " + need.package +
             " (apt-get install " + need.package + ")";
  }
  return "";
}

}  // namespace offload::engine
