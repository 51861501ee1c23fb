#pragma once
#include "offload/high/h.h"  // 3: a higher layer, from a public header
