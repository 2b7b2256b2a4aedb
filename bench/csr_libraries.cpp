// csr_libraries: Eigen's sparse x dense product against librsb's rsb_spmm on the CPU CSR
// engine's work (cpu/csr_ops.cpp): y^T (n_out, batch) = W (n_out, n_in) x^T (n_in, batch),
// the right-hand side row-major, for the three weight layers of lenet300100 (784-300-100-10)
// at a given density (every layer alike, nonzeros at random positions) or for a saved model's
// own weights (--model FILE). Batch 1, 32 and 256; per repeat the two libraries run in turn
// (interleaved), each timing covers enough passes for about 20 ms; the median is reported.
// Built when librsb (Debian: librsb-dev) is found; the result chose Eigen for the engine.
//
//   csr_libraries [--density D]... [--model FILE] [--repeats R]
#include <rsb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <Eigen/SparseCore>

#include "sparseprox/sparseprox.h"

namespace {

using SparseRows = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;
using DenseRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Layer {
    int rows = 0, cols = 0;
    std::vector<int> ia, ja;
    std::vector<float> va;
    SparseRows eigen;
    rsb_mtx_t* rsb = nullptr;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

void finish(Layer& l) {
    std::vector<Eigen::Triplet<float, int>> t;
    for (std::size_t k = 0; k < l.va.size(); ++k) t.emplace_back(l.ia[k], l.ja[k], l.va[k]);
    l.eigen.resize(l.rows, l.cols);
    l.eigen.setFromTriplets(t.begin(), t.end());
    l.eigen.makeCompressed();
    rsb_err_t err = RSB_ERR_NO_ERROR;
    l.rsb = rsb_mtx_alloc_from_coo_const(l.va.data(), l.ia.data(), l.ja.data(), static_cast<rsb_nnz_idx_t>(l.va.size()),
                                         RSB_NUMERICAL_TYPE_FLOAT, l.rows, l.cols, 1, 1, RSB_FLAG_NOFLAGS, &err);
    if (!l.rsb || err != RSB_ERR_NO_ERROR) throw std::runtime_error("rsb_mtx_alloc_from_coo_const failed");
}

std::vector<Layer> random_layers(double density, std::mt19937& rng) {
    const int sizes[4] = {784, 300, 100, 10};
    std::vector<Layer> out;
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int i = 0; i < 3; ++i) {
        Layer l;
        l.rows = sizes[i + 1];
        l.cols = sizes[i];
        for (int r = 0; r < l.rows; ++r)
            for (int c = 0; c < l.cols; ++c)
                if (u(rng) < density) {
                    l.ia.push_back(r);
                    l.ja.push_back(c);
                    l.va.push_back(u(rng) - 0.5f);
                }
        finish(l);
        out.push_back(std::move(l));
    }
    return out;
}

std::vector<Layer> model_layers(const std::string& path) {
    const sparseprox::Model m = sparseprox::load_model(path);
    std::vector<Layer> out;
    for (std::size_t i = 0; i < m.n_weight_layers(); ++i) {
        const auto& shape = m.weight_shape(i);
        Layer l;
        l.rows = static_cast<int>(shape[0]);
        l.cols = static_cast<int>(m.weights(i).size() / shape[0]);
        for (int r = 0; r < l.rows; ++r)
            for (int c = 0; c < l.cols; ++c) {
                const float w = m.weights(i)[static_cast<std::size_t>(r) * l.cols + c];
                if (w != 0.0f) {
                    l.ia.push_back(r);
                    l.ja.push_back(c);
                    l.va.push_back(w);
                }
            }
        finish(l);
        out.push_back(std::move(l));
    }
    return out;
}

void compare(const std::string& what, std::vector<Layer>& layers, int repeats) {
    std::size_t nnz = 0;
    for (const Layer& l : layers) nnz += l.va.size();
    std::printf("%s: %zu nonzeros\n", what.c_str(), nnz);
    std::printf("  %-6s %14s %14s %10s\n", "batch", "eigen us", "librsb us", "rsb/eigen");
    for (int batch : {1, 32, 256}) {
        std::vector<DenseRows> act;  // act[i]: (cols of layer i, batch)
        for (const Layer& l : layers) act.push_back(DenseRows::Constant(l.cols, batch, 0.5f));
        DenseRows last(layers.back().rows, batch);
        // As the engine: one sample is a sparse matrix x vector product.
        auto eigen_pass = [&] {
            for (std::size_t i = 0; i < layers.size(); ++i) {
                DenseRows& out = i + 1 < layers.size() ? act[i + 1] : last;
                if (batch == 1)
                    Eigen::Map<Eigen::VectorXf>(out.data(), out.rows()).noalias() =
                        layers[i].eigen * Eigen::Map<const Eigen::VectorXf>(act[i].data(), act[i].rows());
                else
                    out.noalias() = layers[i].eigen * act[i];
            }
        };
        const float one = 1.0f, zero = 0.0f;
        auto rsb_pass = [&] {
            for (std::size_t i = 0; i < layers.size(); ++i) {
                DenseRows& out = i + 1 < layers.size() ? act[i + 1] : last;
                const rsb_err_t e = rsb_spmm(RSB_TRANSPOSITION_N, &one, layers[i].rsb, batch, RSB_FLAG_WANT_ROW_MAJOR_ORDER,
                                             act[i].data(), batch, &zero, out.data(), batch);
                if (e != RSB_ERR_NO_ERROR) throw std::runtime_error("rsb_spmm failed");
            }
        };
        const int passes = std::max(3, static_cast<int>(2e7 / (static_cast<double>(nnz) * batch)));
        std::vector<double> te, tr;
        for (int w = 0; w < 3; ++w) {
            eigen_pass();
            rsb_pass();
        }
        for (int r = 0; r < repeats; ++r) {
            auto t0 = std::chrono::steady_clock::now();
            for (int p = 0; p < passes; ++p) eigen_pass();
            auto t1 = std::chrono::steady_clock::now();
            for (int p = 0; p < passes; ++p) rsb_pass();
            auto t2 = std::chrono::steady_clock::now();
            te.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / passes);
            tr.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count() / passes);
        }
        std::printf("  %-6d %14.2f %14.2f %9.2fx\n", batch, median(te), median(tr), median(tr) / median(te));
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<double> densities;
    std::string model;
    int repeats = 11;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--density" && i + 1 < argc) densities.push_back(std::stod(argv[++i]));
        else if (a == "--model" && i + 1 < argc) model = argv[++i];
        else if (a == "--repeats" && i + 1 < argc) repeats = std::stoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: csr_libraries [--density D]... [--model FILE] [--repeats R]\n");
            return 2;
        }
    }
    if (densities.empty() && model.empty()) densities = {0.05, 0.02};
    if (rsb_lib_init(RSB_NULL_INIT_OPTIONS) != RSB_ERR_NO_ERROR) {
        std::fprintf(stderr, "csr_libraries: rsb_lib_init failed\n");
        return 1;
    }
    try {
        std::mt19937 rng(1);
        for (double d : densities) {
            std::vector<Layer> layers = random_layers(d, rng);
            compare("784-300-100-10 at density " + std::to_string(d), layers, repeats);
            for (Layer& l : layers) rsb_mtx_free(l.rsb);
        }
        if (!model.empty()) {
            std::vector<Layer> layers = model_layers(model);
            compare(model, layers, repeats);
            for (Layer& l : layers) rsb_mtx_free(l.rsb);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "csr_libraries: %s\n", e.what());
        return 1;
    }
    rsb_lib_exit(RSB_NULL_EXIT_OPTIONS);
    return 0;
}
