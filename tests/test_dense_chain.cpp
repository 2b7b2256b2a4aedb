// A run of dense layers in one parallel region (cpu/dense_chain.h) against the same layers one
// call at a time, bit for bit; the rule that says when the run applies; and the AVX2 bodies of
// the loops a dense step runs in its products' passes (activation blocks, the bias sums, the
// proximal step) against their baseline x86-64 bodies, and the batch's gather.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/activation.h"
#include "cpu/dense.h"
#include "cpu/dense_chain.h"
#include "cpu/gather.h"
#include "cpu/prox_step.h"
#include "cpu/simd.h"
#include "cpu/threads.h"
#include "sparseprox/model.h"
#include "test_util.h"

using namespace sparseprox;
using testing_util::randn;

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A multilayer perceptron's weights, activations and gradients, for one forward and backward pass.
struct Mlp {
    std::vector<std::size_t> widths;  // n_in, hidden..., n_out
    std::size_t batch;
    std::vector<std::vector<float>> W, b;

    Mlp(std::vector<std::size_t> w, std::size_t rows, std::uint32_t seed) : widths(std::move(w)), batch(rows) {
        std::mt19937 rng(seed);
        for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
            W.push_back(randn(widths[l + 1] * widths[l], rng, 0.3f));
            b.push_back(randn(widths[l + 1], rng, 0.1f));
        }
    }
    std::size_t layers() const { return W.size(); }

    struct Pass {
        std::vector<std::vector<float>> y, dy, dW, db;  // y[l]: layer l's output; dy[l]: its gradient
    };

    // ReLU after every layer but the last; the top gradient from `seed`. chain: through the
    // chain operations, else one dense_forward / dense_backward call a layer.
    Pass run(const std::vector<float>& x, bool chain, std::uint32_t seed) const {
        const std::size_t L = layers();
        Pass p;
        for (std::size_t l = 0; l < L; ++l) {
            p.y.emplace_back(batch * widths[l + 1], -7.0f);
            p.dy.emplace_back(batch * widths[l + 1], -7.0f);
            p.dW.emplace_back(W[l].size(), -7.0f);
            p.db.emplace_back(b[l].size(), -7.0f);
        }
        std::mt19937 rng(seed);
        p.dy[L - 1] = randn(batch * widths[L], rng);
        std::vector<DenseForwardLink> fwd;
        for (std::size_t l = 0; l < L; ++l)
            fwd.push_back({l == 0 ? x.data() : p.y[l - 1].data(), W[l].data(), b[l].data(), p.y[l].data(), widths[l],
                           widths[l + 1], l + 1 < L ? Activation::relu : Activation::identity});
        if (chain) cpu::dense_forward_chain(fwd, batch);
        else
            for (const DenseForwardLink& f : fwd) cpu::dense_forward(f.x, f.W, f.b, f.y, batch, f.n_in, f.n_out, f.act);
        std::vector<DenseBackwardLink> bwd;
        for (std::size_t l = L; l-- > 0;) {
            DenseBackwardLink k;
            k.x = l == 0 ? x.data() : p.y[l - 1].data();
            k.W = W[l].data();
            k.dL_dy = p.dy[l].data();
            k.dL_dW = p.dW[l].data();
            k.dL_db = p.db[l].data();
            k.dL_dx = l == 0 ? nullptr : p.dy[l - 1].data();
            k.n_in = widths[l];
            k.n_out = widths[l + 1];
            if (l > 0) {  // the ReLU before the layer, on its output (activation_fused_in_dense)
                k.act = Activation::relu;
                k.act_x = p.y[l - 1].data();
                k.act_y = p.y[l - 1].data();
            }
            bwd.push_back(k);
        }
        if (chain) cpu::dense_backward_chain(bwd, batch);
        else
            for (const DenseBackwardLink& k : bwd)
                cpu::dense_backward(k.x, k.W, k.dL_dy, k.dL_dW, k.dL_db, k.dL_dx, batch, k.n_in, k.n_out, k.act,
                                    k.act_x, k.act_y);
        return p;
    }
};

void expect_same_pass(const Mlp::Pass& a, const Mlp::Pass& b) {
    for (std::size_t l = 0; l < a.y.size(); ++l) {
        EXPECT_TRUE(same_bits(a.y[l], b.y[l])) << "output of layer " << l;
        EXPECT_TRUE(same_bits(a.dy[l], b.dy[l])) << "output gradient of layer " << l;
        EXPECT_TRUE(same_bits(a.dW[l], b.dW[l])) << "weight gradient of layer " << l;
        EXPECT_TRUE(same_bits(a.db[l], b.db[l])) << "bias gradient of layer " << l;
    }
}

}  // namespace

// Mackey-Glass's network at its full batch (the chain applies on two or more cores), a batch
// with a remainder, a wider one where it does not apply (batch 128 < 300), and one row.
TEST(DenseChain, IsTheLayersOneByOneBitForBit) {
    struct Case { std::vector<std::size_t> widths; std::size_t batch; };
    for (const Case& c : {Case{{6, 128, 128, 64, 1}, 1000}, Case{{6, 40, 33, 1}, 997}, Case{{784, 300, 100, 10}, 128},
                          Case{{5, 4, 3}, 1}}) {
        SCOPED_TRACE("batch " + std::to_string(c.batch) + ", " + std::to_string(c.widths.size() - 1) + " layers");
        const Mlp net(c.widths, c.batch, 3);
        std::mt19937 rng(4);
        const auto x = randn(c.batch * c.widths[0], rng);
        const Mlp::Pass chained = net.run(x, true, 5), single = net.run(x, false, 5);
        expect_same_pass(chained, single);
        for (const auto& g : chained.dW) EXPECT_TRUE(std::any_of(g.begin(), g.end(), [](float v) { return v != 0; }));
    }
}

// The blocks depend on the shapes and the machine's cores, never on the team in force: one
// thread gives the bits of all of them.
TEST(DenseChain, OneThreadGivesTheBitsOfAll) {
    const Mlp net({6, 128, 128, 64, 1}, 1000, 8);
    std::mt19937 rng(9);
    const auto x = randn(1000 * 6, rng);
    const Mlp::Pass all = net.run(x, true, 10);
    const int team = omp_get_max_threads();
    omp_set_num_threads(1);
    const Mlp::Pass one = net.run(x, true, 10);
    omp_set_num_threads(team);
    expect_same_pass(all, one);
}

TEST(DenseChain, AppliesOnlyWhereEveryProductIsCutByRows) {
    const std::size_t cores = static_cast<std::size_t>(cpu::available_cores());
    const std::size_t mg = 6 * 128 + 128 * 128 + 128 * 64 + 64;
    EXPECT_EQ(cpu::dense_chain_blocks(1000, 128, mg), cores >= 2 ? std::min<std::size_t>(cores, 62) : 0);
    EXPECT_EQ(cpu::dense_chain_blocks(128, 300, 784 * 300), 0u);  // 300 wide: sgemm cuts columns
    EXPECT_EQ(cpu::dense_chain_blocks(20, 4, 16), 0u);             // 320 multiply-adds: one block
    EXPECT_EQ(cpu::dense_chain_blocks(31, 8, 1 << 20), 0u);        // fewer than 16 rows a block
}

// The activation blocks of the products' passes, the bias sums and the proximal step: the same
// bits with their AVX2 bodies as with the baseline ones, on lengths with every remainder.
TEST(CpuSimd, DenseStepLoopsGiveTheSameBitsWithoutAvx2) {
    std::mt19937 rng(21);
    for (const std::size_t cols : {1, 7, 8, 13, 16, 33, 128}) {
        SCOPED_TRACE("columns " + std::to_string(cols));
        const std::size_t rows = 37, ld = cols + 3;
        auto y = randn(rows * ld, rng), x = randn(rows * ld, rng), bias = randn(std::max(rows, cols), rng);
        for (std::size_t i = 0; i < x.size(); i += 5) x[i] = 0.0f;
        for (Activation a : {Activation::identity, Activation::relu, Activation::leaky_relu, Activation::tanh,
                             Activation::sigmoid}) {
            std::vector<std::vector<float>> out[2];
            for (int pass = 0; pass < 2; ++pass) {
                cpu::avx2_allowed() = pass == 0;
                std::vector<float> f1 = y, f2 = y, f3 = y, g = y;
                cpu::activation_block(a, f1.data(), ld, rows, cols, bias.data(), false);
                cpu::activation_block(a, f2.data(), ld, rows, cols, bias.data(), true);
                cpu::activation_block(a, f3.data(), ld, rows, cols);
                cpu::activation_backward_block(a, x.data(), f3.data(), g.data(), ld, rows, cols);
                out[pass] = {f1, f2, f3, g};
            }
            cpu::avx2_allowed() = true;
            for (std::size_t k = 0; k < 4; ++k)
                EXPECT_TRUE(same_bits(out[0][k], out[1][k])) << to_string(a) << ", output " << k;
        }
        std::vector<float> db[2];
        for (int pass = 0; pass < 2; ++pass) {
            cpu::avx2_allowed() = pass == 0;
            db[pass].assign(cols, -1.0f);
            for (std::size_t part = 0; part < 3; ++part)
                cpu::bias_column_sums(y.data(), rows * ld / cols, cols, db[pass].data(), part, 3);
        }
        cpu::avx2_allowed() = true;
        EXPECT_TRUE(same_bits(db[0], db[1]));
    }
    // The proximal step over segments of every remainder, one above the threshold of the team.
    const ModelSpec spec = ModelSpec::parse("dense:13-7-1300-29-3");
    const ParamLayout layout = ParamLayout::of(spec);
    const auto w0 = randn(layout.slab_size, rng, 0.05f), g = randn(layout.slab_size, rng);
    const std::vector<float> lambdas(layout.segments.size(), 0.5f);
    std::vector<float> w[2];
    std::vector<std::size_t> nnz[2];
    for (int pass = 0; pass < 2; ++pass) {
        cpu::avx2_allowed() = pass == 0;
        w[pass] = w0;
        nnz[pass].assign(layout.segments.size(), 99);
        cpu::prox_step(w[pass].data(), g.data(), layout, 0.01f, lambdas.data(), nnz[pass].data());
    }
    cpu::avx2_allowed() = true;
    EXPECT_TRUE(same_bits(w[0], w[1]));
    EXPECT_EQ(nnz[0], nnz[1]);
    std::size_t zeros = 0;
    for (float v : w[0]) zeros += v == 0.0f;
    EXPECT_GT(zeros, 0u);
}

// The batch's gather: short rows copied in place, long ones by rows over the threads once the
// batch is large; every row the source row it names.
TEST(CpuGather, RowsOfEveryLengthAreTheSourceRows) {
    std::mt19937 rng(31);
    for (const std::size_t n_cols : {1, 6, 16, 17, 784}) {
        for (const std::size_t n_rows : {1, 128, 1000}) {
            const std::size_t n_src = 1500;
            const auto src = randn(n_src * n_cols, rng);
            std::vector<std::uint32_t> rows(n_rows);
            for (auto& r : rows) r = static_cast<std::uint32_t>(rng() % n_src);
            std::vector<float> dst(n_rows * n_cols, -1.0f), want(dst.size());
            for (std::size_t r = 0; r < n_rows; ++r)
                for (std::size_t c = 0; c < n_cols; ++c) want[r * n_cols + c] = src[rows[r] * n_cols + c];
            cpu::gather_rows(src.data(), n_cols, rows.data(), n_rows, dst.data());
            EXPECT_TRUE(same_bits(dst, want)) << n_rows << " rows of " << n_cols;
        }
    }
}
