// The host side of core/optimizer.h: one step's constants.
#include "core/optimizer.h"

#include <cmath>

namespace sparseprox {
namespace opt {

Step make_step(const OptimizerOptions& options, float weight_decay, std::uint64_t t) {
    Step s;
    s.kind = static_cast<std::int32_t>(options.kind);
    const double n = static_cast<double>(t);
    switch (options.kind) {
        case OptimizerKind::sgd: break;
        case OptimizerKind::momentum:
        case OptimizerKind::nesterov: {
            // c_t = 1 + mu + ... + mu^(t-1): the weight the velocity gives a constant gradient
            // (nesterov's step adds one more power: c_{t+1}).
            const double mu = options.momentum;
            const double k = options.kind == OptimizerKind::momentum ? n : n + 1.0;
            s.momentum = options.momentum;
            s.threshold_scale = static_cast<float>(mu == 0.0 ? 1.0 : (1.0 - std::pow(mu, k)) / (1.0 - mu));
            break;
        }
        case OptimizerKind::adam:
        case OptimizerKind::adamw:
            s.beta1 = options.beta1;
            s.beta2 = options.beta2;
            s.eps = options.eps;
            s.correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta1), n));
            s.correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(options.beta2), n));
            if (options.kind == OptimizerKind::adamw) s.decay = weight_decay;
            break;
    }
    return s;
}

}  // namespace opt
}  // namespace sparseprox
