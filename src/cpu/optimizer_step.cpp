// The optimizer steps on the CPU: one OpenMP loop per weight segment that reads w, g and the
// state, writes them and counts the nonzeros, then the biases.
#include "cpu/optimizer_step.h"

namespace sparseprox {
namespace cpu {

void prox_optimizer_step(float* params, const float* grads, const opt::State& st, const ParamLayout& layout, float lr,
                         const float* lambdas, const opt::Step& step, std::size_t* nnz) {
    opt::dispatch(step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        counted_step<K>(params, grads, st, layout, step, lr, nnz, [&](std::size_t l, std::size_t i) {
            return opt::prox_descend_k<K>(params[i], grads[i], st, i, step, lr, lambdas[l]);
        });
    });
}

void masked_optimizer_step(float* w, const float* grads, const std::uint8_t* mask, const opt::State& st,
                           const ParamLayout& layout, float lr, const opt::Step& step, std::size_t* nnz) {
    opt::dispatch(step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        counted_step<K>(w, grads, st, layout, step, lr, nnz, [&](std::size_t, std::size_t i) {
            float eta;
            if (mask[i]) return opt::descend_k<K>(w[i], grads[i], st, i, step, lr, true, &eta);
            opt::clear(st, i);
            return 0.0f;
        });
    });
}

}  // namespace cpu
}  // namespace sparseprox
