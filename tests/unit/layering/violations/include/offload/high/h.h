#pragma once
#include "offload/mid/m.h"
#include "offload/peer/p.h"
