#include "offload/high/h.h"
#include "offload/low/l.h"
#include "offload/nowhere/x.h"  // 6: no such library
