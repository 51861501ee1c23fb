#include "offload/low/l.h"
#include "offload/mid/m.h"  // 2: a higher layer
