#pragma once
#include "offload/low/l.h"
