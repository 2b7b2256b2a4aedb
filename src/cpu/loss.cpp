// The losses on the CPU: one pass over the rows with the per-sample formulas of
// core/elementwise.h (each row is independent; the sums add the rows in order).
#include "cpu/loss.h"

#include <vector>

#include "core/elementwise.h"

namespace sparseprox {
namespace cpu {

void mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
              float* dL_dpred, double* sample_loss) {
    for (std::size_t r = 0; r < batch; ++r)
        sample_loss[r] = ew::squared_error_row(pred + r * n_out, target + r * n_out, n_out, grad_scale,
                                               dL_dpred ? dL_dpred + r * n_out : nullptr);
}

double mse_loss(const float* pred, const float* target, std::size_t batch, std::size_t n_out, float grad_scale,
                float* dL_dpred) {
    std::vector<double> rows(batch);
    mse_loss(pred, target, batch, n_out, grad_scale, dL_dpred, rows.data());
    return sum(rows.data(), batch);
}

void cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                        float grad_scale, float* dL_dlogits, double* sample_loss, std::uint32_t* sample_correct) {
    for (std::size_t r = 0; r < batch; ++r) {
        const auto label = static_cast<std::uint64_t>(labels[r]);
        std::uint64_t arg = 0;
        sample_loss[r] = static_cast<double>(ew::cross_entropy_row(
            logits + r * n_classes, label, n_classes, grad_scale, dL_dlogits ? dL_dlogits + r * n_classes : nullptr,
            &arg));
        if (sample_correct) sample_correct[r] = arg == label ? 1u : 0u;
    }
}

double cross_entropy_loss(const float* logits, const std::int32_t* labels, std::size_t batch, std::size_t n_classes,
                          float grad_scale, float* dL_dlogits, std::size_t* n_correct) {
    std::vector<double> rows(batch);
    std::vector<std::uint32_t> correct(batch);
    cross_entropy_loss(logits, labels, batch, n_classes, grad_scale, dL_dlogits, rows.data(), correct.data());
    if (n_correct) *n_correct = static_cast<std::size_t>(sum(correct.data(), batch));
    return sum(rows.data(), batch);
}

double sum(const double* x, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += x[i];
    return s;
}

std::uint64_t sum(const std::uint32_t* x, std::size_t n) {
    std::uint64_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s += x[i];
    return s;
}

void accumulate_step_loss(double batch_loss, std::size_t batch, StepState* state) {
    if (state->stopped) return;
    state->loss_sum += batch_loss / static_cast<double>(batch);
    state->loss_count += 1;
}

}  // namespace cpu
}  // namespace sparseprox
