// The CPU operations of L0 training with hard-concrete gates (Louizos et al. 2018; docs/method.md §7).
#include "cpu/l0_gates.h"

#include <vector>

#include "core/elementwise.h"
#include "core/gates.h"
#include "cpu/optimizer_step.h"
#include "cpu/parallel.h"
#include "cpu/slab.h"

namespace sparseprox {
namespace cpu {

void l0_effective(const float* theta, const float* log_alpha, const sparsify::GateLayout& gl,
                  const ParamLayout& layout, const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step,
                  float* eff) {
    std::vector<float> z;
    for (const sparsify::GateSegment& g : gl.segments) {
        z.resize(g.n_gates);
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) {
            const std::uint64_t gate = g.gate_offset + static_cast<std::uint64_t>(k);
            z[k] = gates::sample_gate(sparsify::gate_noise(seed, step, gate), log_alpha[gate], hc);
        }
        const float* t = theta + g.weight_offset;
        float* e = eff + g.weight_offset;
#pragma omp parallel for schedule(static) if (g.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(g.n_weights); ++i) e[i] = t[i] * z[sparsify::gate_of(g, i)];
    }
    copy_biases(theta, layout, eff);
}

void l0_gradients(const float* theta, const float* log_alpha, const float* grads, const sparsify::GateLayout& gl,
                  const gates::HardConcrete& hc, std::uint64_t seed, std::uint64_t step, const float* lambdas,
                  float* theta_grad, float* gate_grad) {
    std::vector<float> z, dz;
    std::vector<double> acc;
    for (std::size_t l = 0; l < gl.segments.size(); ++l) {
        const sparsify::GateSegment& g = gl.segments[l];
        z.resize(g.n_gates);
        dz.resize(g.n_gates);
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) {
            const std::uint64_t gate = g.gate_offset + static_cast<std::uint64_t>(k);
            const float u = sparsify::gate_noise(seed, step, gate);
            z[k] = gates::sample_gate(u, log_alpha[gate], hc);
            dz[k] = gates::sample_gate_grad(u, log_alpha[gate], hc);
        }
        // Each gate's loss term sums g theta dz over its weights, in double and in index order
        // (per-weight gates have a single term).
        acc.assign(g.n_gates, 0.0);
        const float* t = theta + g.weight_offset;
        const float* gr = grads + g.weight_offset;
        float* tg = theta_grad + g.weight_offset;
        for (std::size_t i = 0; i < g.n_weights; ++i) {
            const std::uint64_t k = sparsify::gate_of(g, i);
            acc[k] += static_cast<double>(gr[i] * t[i] * dz[k]);
            tg[i] = gr[i] * z[k];
        }
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) {
            const std::uint64_t gate = g.gate_offset + static_cast<std::uint64_t>(k);
            gate_grad[gate] = static_cast<float>(acc[k]) +
                              sparsify::l0_penalty_grad(log_alpha[gate], lambdas[l], static_cast<float>(g.per_gate), hc);
        }
    }
}

void l0_update(float* theta, float* log_alpha, float* adam_m, float* adam_v, const float* grads,
               const sparsify::GateLayout& gl, const ParamLayout& layout, const gates::HardConcrete& hc,
               std::uint64_t seed, std::uint64_t step, float lr, const float* lambdas,
               const sparsify::AdamStep& adam, const opt::State& theta_state, const opt::Step& opt_step) {
    std::vector<float> theta_grad(layout.slab_size), gate_grad(gl.n_gates);
    l0_gradients(theta, log_alpha, grads, gl, hc, seed, step, lambdas, theta_grad.data(), gate_grad.data());
    opt::dispatch(opt_step.kind, [&](auto kind) {
        constexpr std::int32_t K = decltype(kind)::value;
        for (std::size_t l = 0; l < gl.segments.size(); ++l) {
            const sparsify::GateSegment& g = gl.segments[l];
            descend_range<K>(theta, theta_grad.data(), theta_state, g.weight_offset, g.n_weights, opt_step, lr, true);
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
            for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) {
                const std::size_t gate = g.gate_offset + static_cast<std::size_t>(k);
                log_alpha[gate] =
                    sparsify::adam_apply(log_alpha[gate], gate_grad[gate], adam_m[gate], adam_v[gate], adam);
            }
            const ParamSegment& s = layout.segments[l];
            descend_range<K>(theta, grads, theta_state, s.bias_offset, s.n_bias, opt_step, lr, false);
        }
    });
}

void l0_export(const float* theta, const float* log_alpha, const sparsify::GateLayout& gl,
               const ParamLayout& layout, const gates::HardConcrete& hc, float* out, std::size_t* nnz) {
    std::vector<float> z;
    for (std::size_t l = 0; l < gl.segments.size(); ++l) {
        const sparsify::GateSegment& g = gl.segments[l];
        z.resize(g.n_gates);
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) z[k] = gates::test_gate(log_alpha[g.gate_offset + k], hc);
        std::size_t count = 0;
        for (std::size_t i = 0; i < g.n_weights; ++i) {
            const float w = theta[g.weight_offset + i] * z[sparsify::gate_of(g, i)];
            out[g.weight_offset + i] = w;
            count += w != 0.0f;
        }
        nnz[l] = count;
    }
    copy_biases(theta, layout, out);
}

}  // namespace cpu
}  // namespace sparseprox
