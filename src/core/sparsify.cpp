// Method names and options, the L0 gate layout and the GMP schedule (core/sparsify.h).
#include "core/sparsify.h"

#include <algorithm>
#include <cmath>

#include "sparseprox/error.h"

namespace sparseprox {

const char* to_string(Method m) {
    switch (m) {
        case Method::l1: return "l1";
        case Method::l0: return "l0";
        case Method::spred: return "spred";
        case Method::gmp: return "gmp";
    }
    return "?";
}

Method parse_method(const std::string& name) {
    for (Method m : {Method::l1, Method::l0, Method::spred, Method::gmp})
        if (name == to_string(m)) return m;
    throw Error("unknown method '" + name + "': use l1, l0, spred or gmp");
}

const char* to_string(L1Form f) {
    switch (f) {
        case L1Form::automatic: return "auto";
        case L1Form::greedy: return "greedy";
        case L1Form::lazy: return "lazy";
    }
    return "?";
}

L1Form parse_l1_form(const std::string& name) {
    for (L1Form f : {L1Form::automatic, L1Form::greedy, L1Form::lazy})
        if (name == to_string(f)) return f;
    throw Error("unknown l1 form '" + name + "': use auto, greedy or lazy");
}

namespace sparsify {

GateLayout GateLayout::of(const ModelSpec& spec, const ParamLayout& layout, const L0Options& options) {
    GateLayout gl;
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const ParamSegment& s = layout.segments[l];
        const LayerSpec& layer = spec.layers[s.layer];
        GateSegment g;
        g.weight_offset = s.weight_offset;
        g.n_weights = s.n_weights;
        g.gate_offset = gl.n_gates;
        if (!options.group) {
            g.map = kPerWeight;
            g.n_gates = s.n_weights;
            g.per_gate = 1;
            g.divisor = 1;
        } else if (layer.kind == LayerKind::conv2d) {
            g.map = kBlock;
            g.n_gates = s.weight_shape[0];                   // output filters
            g.divisor = s.n_weights / s.weight_shape[0];     // c_in kh kw
            g.per_gate = g.divisor;
        } else {
            g.map = kColumn;
            g.n_gates = layer.n_in;                          // input neurons
            g.divisor = layer.n_in;
            g.per_gate = layer.n_out;
        }
        g.log_alpha0 = gates::initial_log_alpha(l == 0 ? options.drop_init_first : options.drop_init);
        gl.n_gates += g.n_gates;
        gl.segments.push_back(g);
    }
    return gl;
}

MethodConfig make_method_config(const TrainOptions& options, std::size_t max_steps) {
    MethodConfig c;
    c.method = options.method.method;
    c.l0 = options.method.l0;
    c.hc.beta = c.l0.beta;
    c.hc.gamma = c.l0.gamma;
    c.hc.zeta = c.l0.zeta;
    c.seed = gates::mix64(options.seed ^ 0x4C30A7E5D1F0B3C9ull);
    c.threshold = options.method.spred.threshold;
    c.l1_lazy = c.method == Method::l1 && options.method.l1.form == L1Form::lazy;
    if (c.method == Method::gmp) {
        const GmpOptions& g = options.method.gmp;
        c.gmp_targets = options.stop.targets;
        c.gmp_per_layer = g.per_layer || c.gmp_targets.size() > 1;
        const double budget = static_cast<double>(max_steps);
        c.gmp_begin = static_cast<std::size_t>(std::floor(g.begin * budget));
        c.gmp_end = std::max<std::size_t>(c.gmp_begin + 1, static_cast<std::size_t>(std::ceil(g.end * budget)));
        c.gmp_interval = g.interval ? g.interval : std::max<std::size_t>(1, (c.gmp_end - c.gmp_begin) / 50);
    }
    return c;
}

std::vector<std::size_t> gmp_keep(const MethodConfig& c, const ParamLayout& layout, std::size_t t) {
    if (c.method != Method::gmp || c.gmp_targets.empty()) return {};
    if (t < c.gmp_begin || t > c.gmp_end) return {};
    if (t != c.gmp_end && (t - c.gmp_begin) % c.gmp_interval != 0) return {};
    const double t0 = static_cast<double>(c.gmp_begin);
    const double dt = static_cast<double>(c.gmp_interval);
    const double n_events = static_cast<double>(c.gmp_end - c.gmp_begin) / dt;
    auto keep = [&](std::size_t n, std::size_t final_keep) {
        const double s_final = 1.0 - static_cast<double>(final_keep) / static_cast<double>(n);
        const double s = gates::gmp_sparsity(static_cast<double>(t), 0.0, s_final, t0, n_events, dt);
        const auto k = static_cast<std::size_t>(std::llround(static_cast<double>(n) * (1.0 - s)));
        return std::min(n, std::max(final_keep, k));
    };
    std::size_t total = 0;
    for (const ParamSegment& s : layout.segments) total += s.n_weights;
    std::vector<std::size_t> out;
    if (!c.gmp_per_layer) {
        out.push_back(keep(total, c.gmp_targets[0]));
        return out;
    }
    for (std::size_t l = 0; l < layout.segments.size(); ++l) {
        const std::size_t n = layout.segments[l].n_weights;
        std::size_t final_keep;
        if (c.gmp_targets.size() > 1) {
            final_keep = c.gmp_targets[l];
        } else {  // the same density in every layer
            final_keep = static_cast<std::size_t>(
                std::llround(static_cast<double>(n) * static_cast<double>(c.gmp_targets[0]) / static_cast<double>(total)));
            final_keep = std::max<std::size_t>(1, std::min(n, final_keep));
        }
        out.push_back(keep(n, final_keep));
    }
    return out;
}

AdamStep adam_step(float lr, std::uint64_t t) {
    AdamStep a;
    a.lr = lr;
    a.correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(kAdamBeta1), static_cast<double>(t)));
    a.correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(kAdamBeta2), static_cast<double>(t)));
    return a;
}

}  // namespace sparsify
}  // namespace sparseprox
