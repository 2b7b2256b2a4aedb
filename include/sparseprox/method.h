// SparseProx: the sparsifiers a run trains with, and their options.
#pragma once

#include <cstddef>
#include <string>

#include "sparseprox/export.h"

namespace sparseprox {

// The sparsifier a run trains with (docs/method.md §3 and §7). Every method's saved model holds plain
// dense-shaped weights with exact zeros; its NNZ is the count of those nonzeros, and the NNZ
// early stop (StopRule) applies to that count.
enum class Method {
    l1,     // proximal SGD with soft-thresholding by eta*lambda_l (Algorithm 3)
    l0,     // hard-concrete gates with the expected-L0 penalty lambda_l * E[#nonzero gated weights]
    spred,  // w = u (.) v with weight decay (lambda_l / 2)(|u|^2 + |v|^2), read out with a threshold
    gmp,    // gradual magnitude pruning to the StopRule targets on the cubic schedule
};
SPARSEPROX_API const char* to_string(Method m);
// The same as to_string(Method) (the name before 0.2).
inline const char* method_name(Method m) { return to_string(m); }
// "l1", "l0", "spred" or "gmp"; throws naming the value otherwise.
SPARSEPROX_API Method parse_method(const std::string& name);

// How the l1 step applies the threshold (docs/method.md §3.1):
//   greedy  w <- S_{eta lambda_l}(w - eta g) every step: proximal SGD (Algorithm 3, the paper's;
//           Duchi & Singer's FOBOS). The shrinkage accumulates: every surviving weight loses
//           eta lambda_l per step.
//   lazy    z <- z - eta g, w = S_{eta lambda_l}(z): the gradients accumulate in a dense copy z
//           of the weights (taken when the run starts) and the network uses its soft-threshold.
//           The l1 dual-averaging / FTRL-proximal step (Xiao 2010; McMahan 2011) with lambda_l
//           the strength on the accumulated sum: the threshold is a level, not a per-step
//           shrinkage, and a pruned weight whose gradients keep one sign comes back once z
//           crosses it.
//   automatic  lazy for the adaptive search strategy with one total target, greedy everywhere
//           else (train, per-layer targets, and the paper and warm strategies, which follow
//           the paper).
enum class L1Form { automatic, greedy, lazy };
SPARSEPROX_API const char* to_string(L1Form f);
// "auto", "greedy" or "lazy"; throws naming the value otherwise.
SPARSEPROX_API L1Form parse_l1_form(const std::string& name);

struct SPARSEPROX_API L1Options {
    L1Form form = L1Form::automatic;
};

struct SPARSEPROX_API L0Options {
    // Gate granularity: false, one gate per weight; true, group gates (the input neurons of dense
    // layers, the output filters of conv layers), as in the reference code.
    bool group = false;
    float beta = 2.0f / 3.0f;  // hard-concrete temperature
    float gamma = -0.1f;       // stretch interval (gamma, zeta); gamma < 0 < 1 < zeta
    float zeta = 1.1f;
    float drop_init = 0.5f;        // initial log alpha = log((1-p)/p) ...
    float drop_init_first = 0.2f;  // ... with this p for the first weight layer
    // The gate parameters log alpha are trained with Adam (beta1 0.9, beta2 0.999, eps 1e-8) at
    // this step size; the weights with the run's SGD step lr.
    float gate_lr = 0.01f;
};

struct SPARSEPROX_API SpredOptions {
    // Read-out: a weight u*v with |u*v| <= threshold counts (and is saved) as an exact zero.
    float threshold = 1e-3f;
};

struct SPARSEPROX_API GmpOptions {
    // The schedule in fractions of the run's step budget: pruning starts at begin, reaches the
    // targets at end and the mask stays fixed afterwards.
    double begin = 0.1;
    double end = 0.75;
    std::size_t interval = 0;  // steps between pruning events (Delta t); 0: 1/50 of the ramp, >= 1
    // One total target: false prunes the smallest magnitudes over all layers together (global),
    // true prunes every layer to the same density. Per-layer targets always prune per layer.
    bool per_layer = false;
};

struct SPARSEPROX_API MethodOptions {
    Method method = Method::l1;
    L1Options l1;
    L0Options l0;
    SpredOptions spred;
    GmpOptions gmp;
};

}  // namespace sparseprox
