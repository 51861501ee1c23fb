// The offload-runner program: `offload-runner serve [flags]` and `offload-runner version`.
// cmd/offload-runner/main.cpp only calls run_runner.
#pragma once

namespace offload::runner {

// Parses the command line and runs the chosen verb. `serve` blocks until SIGTERM or SIGINT,
// destroys every session and returns 0; a start-up error prints one line on stderr and returns 1.
int run_runner(int argc, char** argv);

}  // namespace offload::runner
