// CPU operations of the l0, spred and gmp methods (cpu/sparsify.h).
#include "cpu/sparsify.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/elementwise.h"

namespace sparseprox {
namespace cpu {
namespace {

using idx = long long;  // OpenMP loop index
constexpr std::size_t kParallelMin = 1 << 14;

void sgd_biases(float* params, const float* grads, const ParamSegment& s, float lr) {
    for (std::size_t i = 0; i < s.n_bias; ++i)
        params[s.bias_offset + i] = ew::sgd(params[s.bias_offset + i], grads[s.bias_offset + i], lr);
}

void copy_biases(const float* from, const ParamLayout& layout, float* to) {
    for (const ParamSegment& s : layout.segments)
        std::copy_n(from + s.bias_offset, s.n_bias, to + s.bias_offset);
}

}  // namespace

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
               const sparsify::AdamStep& adam) {
    std::vector<float> theta_grad(layout.slab_size), gate_grad(gl.n_gates);
    l0_gradients(theta, log_alpha, grads, gl, hc, seed, step, lambdas, theta_grad.data(), gate_grad.data());
    for (std::size_t l = 0; l < gl.segments.size(); ++l) {
        const sparsify::GateSegment& g = gl.segments[l];
        float* t = theta + g.weight_offset;
        const float* tg = theta_grad.data() + g.weight_offset;
#pragma omp parallel for schedule(static) if (g.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(g.n_weights); ++i) t[i] = ew::sgd(t[i], tg[i], lr);
#pragma omp parallel for schedule(static) if (g.n_gates >= kParallelMin)
        for (idx k = 0; k < static_cast<idx>(g.n_gates); ++k) {
            const std::size_t gate = g.gate_offset + static_cast<std::size_t>(k);
            log_alpha[gate] = sparsify::adam_apply(log_alpha[gate], gate_grad[gate], adam_m[gate], adam_v[gate], adam);
        }
        sgd_biases(theta, grads, layout.segments[l], lr);
    }
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

void spred_split(const float* w, const ParamLayout& layout, float* u, float* v) {
    for (const ParamSegment& s : layout.segments) {
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            u[s.weight_offset + i] = sparsify::spred_split_u(w[s.weight_offset + i]);
            v[s.weight_offset + i] = sparsify::spred_split_v(w[s.weight_offset + i]);
        }
    }
    copy_biases(w, layout, u);
}

void spred_effective(const float* u, const float* v, const ParamLayout& layout, float* eff) {
    for (const ParamSegment& s : layout.segments) {
        const float* a = u + s.weight_offset;
        const float* b = v + s.weight_offset;
        float* e = eff + s.weight_offset;
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) e[i] = a[i] * b[i];
    }
    copy_biases(u, layout, eff);
}

void spred_update(float* u, float* v, const float* grads, const ParamLayout& layout, float lr, const float* lambdas) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        float* a = u + s.weight_offset;
        float* b = v + s.weight_offset;
        const float* g = grads + s.weight_offset;
        const float lambda = lambdas[l];
#pragma omp parallel for schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) sparsify::spred_step(a[i], b[i], g[i], lr, lambda);
        sgd_biases(u, grads, s, lr);
    }
}

void spred_export(const float* u, const float* v, const ParamLayout& layout, float threshold, float* out,
                  std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        std::size_t count = 0;
        for (std::size_t i = 0; i < s.n_weights; ++i) {
            const float w = sparsify::spred_readout(u[s.weight_offset + i], v[s.weight_offset + i], threshold);
            out[s.weight_offset + i] = w;
            count += w != 0.0f;
        }
        nnz[l] = count;
    }
    copy_biases(u, layout, out);
}

void masked_sgd(float* w, const float* grads, const std::uint8_t* mask, const ParamLayout& layout, float lr,
                std::size_t* nnz) {
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        float* p = w + s.weight_offset;
        const float* g = grads + s.weight_offset;
        const std::uint8_t* m = mask + s.weight_offset;
        std::size_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static) if (s.n_weights >= kParallelMin)
        for (idx i = 0; i < static_cast<idx>(s.n_weights); ++i) {
            const float v = m[i] ? ew::sgd(p[i], g[i], lr) : 0.0f;
            p[i] = v;
            count += v != 0.0f;
        }
        nnz[l] = count;
        sgd_biases(w, grads, s, lr);
    }
}

void gmp_prune(float* w, std::uint8_t* mask, const ParamLayout& layout, const std::vector<std::size_t>& keep) {
    auto prune = [&](const std::vector<std::size_t>& layers, std::size_t k) {
        std::vector<std::uint64_t> order;
        for (std::size_t l : layers) {
            const ParamSegment& s = layout.segments[l];
            for (std::size_t i = 0; i < s.n_weights; ++i) order.push_back(s.weight_offset + i);
        }
        k = std::min(k, order.size());
        // Larger |w| first; among equal magnitudes the lower slab index first.
        auto before = [w](std::uint64_t a, std::uint64_t b) {
            const float x = std::fabs(w[a]), y = std::fabs(w[b]);
            return x > y || (x == y && a < b);
        };
        if (k < order.size()) std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), before);
        for (std::size_t j = 0; j < order.size(); ++j) {
            const bool kept = j < k;
            mask[order[j]] = kept ? 1 : 0;
            if (!kept) w[order[j]] = 0.0f;
        }
    };
    if (keep.size() == 1 && layout.segments.size() != 1) {
        std::vector<std::size_t> all(layout.segments.size());
        std::iota(all.begin(), all.end(), std::size_t{0});
        prune(all, keep[0]);
    } else {
        for (std::size_t l = 0; l < keep.size() && l < layout.segments.size(); ++l) prune({l}, keep[l]);
    }
}

}  // namespace cpu
}  // namespace sparseprox
