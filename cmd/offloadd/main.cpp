// offloadd: see include/offload/daemon/daemon.h.
#include "offload/daemon/daemon.h"

int main(int argc, char** argv) { return offload::daemon::run_daemon(argc, argv); }
