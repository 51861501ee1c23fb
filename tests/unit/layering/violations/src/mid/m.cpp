#include "offload/low/l.h"
#include "offload/mid/m.h"
#include "offload/peer/p.h"  // 4: same layer
#include "../../include/offload/high/h.h"  // 5: climbs out
