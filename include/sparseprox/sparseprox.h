// SparseProx: sparse neural networks by l1 proximal training (umbrella header).
#pragma once

#include "sparseprox/data.h"
#include "sparseprox/device.h"
#include "sparseprox/distributed.h"
#include "sparseprox/error.h"
#include "sparseprox/files.h"
#include "sparseprox/inference.h"
#include "sparseprox/npy.h"
#include "sparseprox/model.h"
#include "sparseprox/model_info.h"
#include "sparseprox/safetensors.h"
#include "sparseprox/search.h"
#include "sparseprox/stop.h"
#include "sparseprox/threads.h"
#include "sparseprox/train.h"
#include "sparseprox/version.h"
