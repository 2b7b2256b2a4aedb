// The lazy l1 step on the CPU: one OpenMP loop per weight segment that reads z, g (and the
// optimizer's state), writes z and w and counts the nonzeros (16 bytes per weight with sgd:
// read z and g, write z and w), then the biases.
#include "cpu/lazy_prox_step.h"

#include "cpu/optimizer_step.h"

namespace sparseprox {
namespace cpu {

void lazy_prox_step(float* params, float* z, const float* grads, const opt::State& st, const ParamLayout& layout,
                    float lr, const float* lambdas, const opt::Step& step, std::size_t* nnz) {
    opt::dispatch(step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        counted_step<K>(params, grads, st, layout, step, lr, nnz, [&](std::size_t l, std::size_t i) {
            return opt::lazy_prox_descend_k<K>(z, grads[i], st, i, step, lr, lambdas[l]);
        });
    });
}

}  // namespace cpu
}  // namespace sparseprox
