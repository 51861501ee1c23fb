// offload-runner: the remote side of docker-offload. Everything lives in offload_runner.
#include "offload/runner/runner_main.h"

int main(int argc, char** argv) { return offload::runner::run_runner(argc, argv); }
