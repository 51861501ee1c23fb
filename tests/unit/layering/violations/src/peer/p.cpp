#include "offload/peer/p.h"
