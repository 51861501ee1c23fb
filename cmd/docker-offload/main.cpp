// docker-offload: the Docker CLI plugin behind `docker offload`. Everything lives in offload_cli.
#include <unistd.h>

#include <iostream>

#include "offload/cli/cli.h"

int main(int argc, char** argv) {
  offload::cli::Console console{std::cin, std::cout, std::cerr, ::isatty(0) == 1,
                                ::isatty(1) == 1};
  return offload::cli::run({argv, argv + argc}, console,
                           offload::cli::Environment::from_process());
}
