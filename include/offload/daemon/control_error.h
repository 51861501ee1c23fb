// The one error type of the control API: what a `docker offload` verb prints, with the gRPC code
// the CLI maps to its exit status.
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <stdexcept>
#include <string>

namespace offload::daemon {

// A control request failed; `what()` is the one line to show the user.
struct ControlError : std::runtime_error {
  ControlError(grpc::StatusCode code, const std::string& what)
      : std::runtime_error(what), code(code) {}
  grpc::StatusCode code;
};

}  // namespace offload::daemon
