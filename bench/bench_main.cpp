// sparseprox_bench: measurements, not impressions (style.md item 11).
//
// (a) The fused prox step over N parameters (4 square dense layers, N = 1e5 .. --max-n) on every
//     backend, through the same operations the network calls: buffers allocated first, warm-up,
//     then the median of --repeats timings (on CUDA each timing covers 10 queued steps closed by
//     one synchronization). Bytes per parameter: read w and g, write w = 12; GB/s from that, and
//     its fraction of the measured copy bandwidth of the same backend (a copy moving the same 12
//     bytes per parameter: 6 read + 6 written). Beside it the unfused reference (an SGD pass, a
//     threshold pass and a count per layer).
// (b) Training throughput through the public train() API on every available device, the
//     workloads bench/torch_compare.py runs in PyTorch: the 6-128-128-64-1 regression net on the
//     embedded Mackey-Glass data (full batch, 1000 rows), and batch 128 on MNIST (from
//     --data-dir; synthetic MNIST-shaped rows when absent) of lenet300100, cnn8 and lenet5;
//     with --methods also the MLP with every sparsifier (l0 per weight and group gates, spred,
//     gmp). Each run is preceded by a short warm-up run; samples/s is
//     TrainResult::samples_per_second (training time including engine setup, excluding the
//     final evaluation).
//
// (c) Inference (--infer LABEL=FILE[@DENSITY], repeatable): each saved model in the three formats
//     of sparseprox/inference.h (dense, csr, compact) at batch 1, 32 and 256 on every device of
//     the run (the CPU, and CUDA device 0 when one is usable; rows labelled by device). Every
//     engine is built first; then, per repeat, the formats run in turn (interleaved, so a load
//     change on a shared machine hits all three alike) for a fixed number of passes after 3
//     warm-up passes. A pass is InferenceEngine::run: on CUDA the input upload, the queued layers
//     and the output download, which waits for them, so host wall-clock timings are synchronized.
//     Reported: the median latency of a pass, samples/s = batch / latency, and the median over
//     repeats of each format's speed-up over dense on the same device in the same repeat.
//     With @DENSITY the file's weights are first pruned by magnitude to that fraction of all
//     weights (one threshold over every layer). Also the sizes of the model file and of its
//     compacted file, and the load average before and after (/proc/loadavg).
//
// --threads N fixes the CPU threads (sparseprox/threads.h); the JSON names the machine: CPU
// model, cores available, thread setting and the load average before and after.
// Prints a table on stdout and writes the same figures as JSON (--json, written atomically).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "core/atomic_file.h"
#include "core/backend.h"
#include "core/layer_shapes.h"
#include "cpu/conv_direct.h"
#include "cpu/conv_winograd.h"
#include "cpu/conv_ops.h"
#include "cpu/gemm.h"
#include "sparseprox/sparseprox.h"

using namespace sparseprox;
using json = nlohmann::json;

namespace {

constexpr double kBytesPerParam = 12.0;  // read w, read g, write w (float32)

struct Options {
    std::size_t max_n = 100000000;
    bool quick = false;
    int repeats = 20;
    std::string json_path = "bench/results/bench.json";
    std::string data_dir = "../shared/data";
    std::vector<std::string> infer;  // LABEL=FILE[@DENSITY]
    std::string threads = "auto";
    bool prox = true, training = true, methods = false, cuda = true, cpu = true;
    double seconds = 2.0;  // training: about this long per measured run (CPU)
    std::vector<std::string> workloads;  // --workloads: the training workloads to run (empty: all)
    bool data_parallel = false;    // --data-parallel: training throughput on the launcher's ranks
    std::size_t dp_steps = 300;    // steps of each measured data-parallel run
};

void usage() {
    std::printf(
        "usage: sparseprox_bench [--quick] [--max-n N] [--repeats R] [--json FILE] [--data-dir DIR]\n"
        "                        [--threads N|auto] [--only prox|training] [--methods] [--cpu-only|--cuda-only] [--seconds S]\n"
        "  --quick       short runs: N up to 1e7, 5 repeats, fewer training steps\n"
        "  --max-n N     largest parameter count of the prox benchmark (default 1e8; 1e7 with --quick)\n"
        "  --repeats R   timings per figure, the median is reported (default 20)\n"
        "  --json FILE   where the JSON goes (default bench/results/bench.json)\n"
        "  --data-dir D  folder holding mnist/ (default ../shared/data)\n"
        "  --infer LABEL=FILE[@DENSITY]  (c) inference formats on a saved model, or preset:NAME for a preset's\n"
        "                initialized weights (repeatable); @DENSITY:\n"
        "                prune by magnitude (one threshold over all layers) to that fraction first\n"
        "  --inference-only  run (c) only\n"
        "  --threads N   CPU threads (default auto: sparseprox/threads.h)\n"
        "  --only X      only the prox step (prox) or only the training workloads (training)\n"
        "  --methods     also the MLP with every sparsifier (l0, l0 group gates, spred, gmp)\n"
        "  --cpu-only    skip the CUDA backend even when a GPU is present\n"
        "  --cuda-only   skip the CPU backend (an error without a usable GPU)\n"
        "  --seconds S   about how long each measured CPU training run lasts (default 2; 0.5 with --quick)\n"
        "  --workloads L only these training workloads, comma-separated: mackey_glass, lenet300100, cnn8, lenet5\n"
        "  --data-parallel [--dp-steps N]  only data-parallel training throughput on the CPU over the ranks\n"
        "                mpirun started (run it alone for 1 rank, under mpirun -np 2 for 2; N steps, default 300)\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    bool max_n_given = false, repeats_given = false, seconds_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw Error("option " + a + " needs a value");
            return argv[++i];
        };
        if (a == "--quick") {
            o.quick = true;
        } else if (a == "--max-n") {
            const double n = std::stod(value());
            if (!(n >= 1.0)) throw Error("--max-n must be at least 1");
            o.max_n = static_cast<std::size_t>(n);
            max_n_given = true;
        } else if (a == "--repeats") {
            o.repeats = std::stoi(value());
            if (o.repeats < 1) throw Error("--repeats must be at least 1");
            repeats_given = true;
        } else if (a == "--json") {
            o.json_path = value();
        } else if (a == "--data-dir") {
            o.data_dir = value();
        } else if (a == "--infer") {
            o.infer.push_back(value());
        } else if (a == "--inference-only") {
            o.prox = o.training = false;
        } else if (a == "--threads") {
            o.threads = value();
        } else if (a == "--only") {
            const std::string v = value();
            if (v != "prox" && v != "training") throw Error("--only: '" + v + "' is not prox or training");
            o.prox = v == "prox";
            o.training = v == "training";
        } else if (a == "--methods") {
            o.methods = true;
        } else if (a == "--cpu-only") {
            o.cuda = false;
        } else if (a == "--cuda-only") {
            o.cpu = false;
        } else if (a == "--seconds") {
            o.seconds = std::stod(value());
            if (!(o.seconds > 0.0)) throw Error("--seconds must be positive");
            seconds_given = true;
        } else if (a == "--workloads") {
            const std::string v = value();
            o.workloads.clear();
            std::size_t start = 0;
            while (start <= v.size()) {
                const std::size_t end = std::min(v.find(',', start), v.size());
                const std::string w = v.substr(start, end - start);
                if (w != "mackey_glass" && w != "lenet300100" && w != "cnn8" && w != "lenet5")
                    throw Error("--workloads: '" + w + "' is not a training workload (mackey_glass, lenet300100, cnn8, lenet5)");
                o.workloads.push_back(w);
                start = end + 1;
            }
        } else if (a == "--data-parallel") {
            o.data_parallel = true;
        } else if (a == "--dp-steps") {
            const long n = std::stol(value());
            if (n < 1) throw Error("--dp-steps must be at least 1");
            o.dp_steps = static_cast<std::size_t>(n);
        } else if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        } else {
            usage();
            throw Error("unknown option " + a);
        }
    }
    if (o.quick && !max_n_given) o.max_n = 10000000;
    if (o.quick && !repeats_given) o.repeats = 5;
    if (o.quick && !seconds_given) o.seconds = 0.5;
    return o;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Four square dense layers holding about n weights.
ModelSpec square_net(std::size_t n) {
    const auto k = static_cast<std::size_t>(std::max(1.0, std::round(std::sqrt(static_cast<double>(n) / 4.0))));
    const std::string w = std::to_string(k);
    return ModelSpec::parse("dense:" + w + "-" + w + "-" + w + "-" + w + "-" + w);
}

std::size_t n_params(const ParamLayout& layout) {
    std::size_t n = 0;
    for (const ParamSegment& s : layout.segments) n += s.n_weights + s.n_bias;
    return n;
}

// Values in [-1, 1] from a multiplicative hash: cheap for 1e8 entries, the same on every run.
std::vector<float> pattern(std::size_t n, std::uint32_t salt) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ salt;
        v[i] = static_cast<float>(static_cast<int>((h >> 8) % 2001u) - 1000) * 1e-3f;
    }
    return v;
}

// lr and lambda small enough that repeated steps leave the weights about where they were.
constexpr float kBenchLr = 1e-3f;
constexpr float kBenchLambda = 1e-3f;

// Median milliseconds per call of f on `backend`: calls queued in groups of `group`, each group
// closed by a synchronization (so an asynchronous backend is timed on its device, and the
// synchronization is spread over the group), after `warmup` untimed groups.
template <class F>
double median_ms(Backend& backend, int warmup, int repeats, int group, F&& f) {
    using Clock = std::chrono::steady_clock;
    for (int i = 0; i < warmup; ++i) {
        for (int k = 0; k < group; ++k) f();
        backend.synchronize();
    }
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = Clock::now();
        for (int k = 0; k < group; ++k) f();
        backend.synchronize();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / group);
    }
    return median(ms);
}

// The fused step, the unfused reference and a copy of the same bytes (the bandwidth ceiling) on
// one backend; an empty list (with a message) when its memory is short.
std::vector<json> bench_prox(Backend& backend, const ModelSpec& spec, int repeats) {
    const ParamLayout layout = ParamLayout::of(spec);
    const std::size_t n = n_params(layout);
    const std::size_t copy_floats = static_cast<std::size_t>(kBytesPerParam / 2.0 / sizeof(float) * static_cast<double>(n));
    std::vector<json> rows;
    try {
        // Allocate and fill everything before timing anything.
        Buffer<float> params(backend, layout.slab_size), grads(backend, layout.slab_size);
        params.upload(pattern(layout.slab_size, 1).data(), layout.slab_size);
        grads.upload(pattern(layout.slab_size, 2).data(), layout.slab_size);
        std::vector<float> hyper{kBenchLr};
        hyper.insert(hyper.end(), layout.segments.size(), kBenchLambda);
        Buffer<float> hyper_device(backend, hyper.size());
        hyper_device.upload(hyper.data(), hyper.size());
        Buffer<std::uint64_t> nnz(backend, std::max<std::size_t>(layout.segments.size(), 1));
        Buffer<float> copy_src(backend, copy_floats), copy_dst(backend, copy_floats);
        copy_src.zero();
        backend.synchronize();

        const bool cpu = backend.name() == "cpu";
        const int r = cpu && n >= 10000000 ? std::min(repeats, 5) : repeats;  // ~0.1 s per CPU step at 1e8
        const int group = cpu ? 1 : 10;
        // The CPU's automatic thread count settles over its first steps (cpu/threads.h): the
        // prox step is timed as a step, after enough warm-up steps for a tuning round.
        const int warm = cpu ? 12 : 2;
        const double t_copy = median_ms(backend, 2, r, group, [&] {
            backend.copy(copy_dst.data(), copy_src.data(), copy_floats * sizeof(float));
        });
        const double t_fused = median_ms(backend, warm, r, group, [&] {
            backend.begin_step();
            backend.prox_step(params.data(), grads.data(), layout, hyper_device.data(), nullptr, nnz.data());
            backend.end_step();
        });
        const double t_unfused = median_ms(backend, warm, r, group, [&] {
            backend.begin_step();
            backend.prox_step_unfused(params.data(), grads.data(), layout, hyper_device.data(), nnz.data());
            backend.end_step();
        });
        const double bytes = kBytesPerParam * static_cast<double>(n);
        const double copy_gbps = bytes / (t_copy * 1e6);
        auto row = [&](const char* variant, double t) {
            const double gbps = bytes / (t * 1e6);
            return json{{"device", backend.name()}, {"variant", variant},  {"n_params", n},
                        {"repeats", r},             {"median_ms", t},      {"gb_per_s", gbps},
                        {"fraction_of_copy", gbps / copy_gbps}};
        };
        rows = {row("copy (same bytes)", t_copy), row("fused (prox step + per-layer count)", t_fused),
                row("unfused (sgd, threshold, count per layer)", t_unfused)};
    } catch (const Error& e) {
        std::printf("  %s prox N=%zu: skipped (%s)\n", backend.name().c_str(), n, e.what());
    }
    return rows;
}

// The CPU's ceilings for the napkin math (bench/README.md): sgemm GFLOP/s at (m, n, k) = (512,
// 512, 512) through the backend's blocked GEMM, and copy GB/s (bytes read + written) over 2 x 256
// MB, each the median of `repeats`, at the thread count in force.
json cpu_peaks(int repeats) {
    using Clock = std::chrono::steady_clock;
    const std::size_t g = 512;
    std::vector<float> A = pattern(g * g, 1), B = pattern(g * g, 2), C(g * g);
    std::vector<double> t;
    for (int i = 0; i < repeats + 2; ++i) {
        const auto t0 = Clock::now();
        cpu::sgemm(false, false, g, g, g, A.data(), g, B.data(), g, 0.0f, C.data(), g);
        if (i >= 2) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const double gflops = 2.0 * g * g * g / median(t) / 1e9;
    const std::size_t n = std::size_t{64} << 20;  // floats: 256 MB
    std::unique_ptr<Backend> cpu = make_cpu_backend();
    Buffer<float> src(*cpu, n), dst(*cpu, n);
    src.zero();
    dst.zero();
    t.clear();
    for (int i = 0; i < repeats + 1; ++i) {
        const auto t0 = Clock::now();
        cpu->copy(dst.data(), src.data(), n * sizeof(float));
        if (i >= 1) t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const double copy_gbps = 2.0 * n * sizeof(float) / median(t) / 1e9;
    return {{"sgemm_512_gflops", gflops}, {"copy_gb_per_s", copy_gbps}, {"threads", describe_threads()}};
}

// The step's GEMMs alone (bench/README.md, "Napkin math"): every product one training step of
// `spec` at `batch` makes through the CPU backend's sgemm (cpu/gemm.h), the way the backend makes
// them, at the most threads the backend uses (num_threads(): the automatic tuner may have left
// the team smaller after its last step), timed together, the best of `repeats`. A dense layer is
// three products over the batch (forward, weight gradient, input gradient; the first weight layer
// has no input gradient), each spread over the threads; a convolution the same three per chunk of
// samples (cpu::chunk_samples) over its im2col matrix, or for a Winograd layer 16 or 36 of each
// over the chunk's tiles, the chunks spread over the threads.
// batch / that time bounds the samples/s of any step built on these GEMMs: everything else a step
// does (im2col, activations, pools, the loss, the prox step) only adds to it.
double gemm_floor_seconds(const ModelSpec& spec, std::size_t batch, int repeats) {
    struct Product {
        bool ta, tb;
        std::size_t m, n, k;
        cpu::GemmLibrary library = cpu::GemmLibrary::openblas;  // the step's own for each layer kind
    };
    struct Group {
        std::size_t copies = 1;  // conv: chunks, run in parallel, each product at one thread
        std::vector<Product> products;
    };
    std::vector<Group> groups;
    bool first = true;
    for (const LayerSpec& l : spec.layers) {
        Group g;
        if (l.kind == LayerKind::dense) {
            const cpu::GemmLibrary lib = cpu::dense_gemm_library();
            g.products.push_back({false, true, batch, l.n_out, l.n_in, lib});  // Y = X W^T
            g.products.push_back({true, false, l.n_out, l.n_in, batch, lib});  // dW = dY^T X
            if (!first) g.products.push_back({false, false, batch, l.n_in, l.n_out, lib});  // dX = dY W
        } else if (l.kind == LayerKind::conv2d) {
            const ConvShape cs = conv_shape(l, batch);
            const std::size_t chunk = cpu::chunk_samples(cs), K = l.fan_in(), c_out = cs.c_out;
            const std::size_t cols = chunk * cs.h_out() * cs.w_out();
            g.copies = (batch + chunk - 1) / chunk;
            if (!cpu::conv_direct_applies(cs) && cpu::conv_winograd_applies(cs)) {
                // Winograd (cpu/conv_winograd.h): each product is 16 GEMMs over a chunk's 2x2
                // tiles (F(2x2, 3x3)) or 36 over its 4x4 tiles (F(4x4, 3x3)), with K = c_in
                // (forward), the tiles (weight gradient) or c_out; the forward and the backward
                // have chunks of their own.
                const std::size_t n = cpu::winograd_tile(cs), points = n == 4 ? 36 : cpu::kWinogradPoints;
                const std::size_t c_in = cs.c_in, tiles = ((cs.h_out() + n - 1) / n) * ((cs.w_out() + n - 1) / n);
                for (const bool backward : {false, true}) {
                    const std::size_t m = cpu::chunk_samples(cs, backward), T = m * tiles;
                    Group w;
                    w.copies = (batch + m - 1) / m;
                    for (std::size_t xi = 0; xi < points; ++xi) {
                        if (!backward) {
                            w.products.push_back({false, false, c_out, T, c_in});  // M = U V
                            continue;
                        }
                        w.products.push_back({false, true, c_out, c_in, T});              // dU = dM V^T
                        if (!first) w.products.push_back({true, false, c_in, T, c_out});  // dV = U^T dM
                    }
                    groups.push_back(w);
                }
                first = false;
                continue;
            }
            // A layer the direct kernels take (cpu/conv_direct.h) has no GEMM for these two.
            const cpu::GemmLibrary lib = cpu::conv_gemm_library();
            if (!cpu::conv_direct_applies(cs)) {
                g.products.push_back({false, false, c_out, cols, K, lib});  // Y = W col
                g.products.push_back({false, true, c_out, K, cols, lib});   // dW = dY col^T
            }
            if (!first) g.products.push_back({true, false, K, cols, c_out, lib});  // dcol = W^T dY
        } else {
            continue;
        }
        if (!g.products.empty()) groups.push_back(g);
        first = false;
    }
    std::size_t a = 1, b = 1, c = 1, copies = 1;
    for (const Group& g : groups) {
        copies = std::max(copies, g.copies);
        for (const Product& p : g.products) {
            a = std::max(a, p.m * p.k);
            b = std::max(b, p.k * p.n);
            c = std::max(c, p.m * p.n);
        }
    }
    const std::vector<float> A = pattern(a, 11), B = pattern(b, 12);
    // One output block per thread, reused from chunk to chunk as the backend's per-thread scratch
    // is: a block per chunk had every product write memory no other product had touched.
    const std::size_t n_blocks = static_cast<std::size_t>(std::max(num_threads(), 1));
    std::vector<float> C(c * std::min(copies, n_blocks));
    omp_set_num_threads(num_threads());  // the backend's next operation sets its own count again
    auto run = [&](const Product& p, float* out) {
        cpu::sgemm(p.ta, p.tb, p.m, p.n, p.k, A.data(), p.ta ? p.m : p.k, B.data(), p.tb ? p.k : p.n, 0.0f, out,
                   p.n, nullptr, false, {}, p.library);
    };
    double best = std::numeric_limits<double>::infinity();
    for (int r = 0; r < repeats + 1; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (const Group& g : groups) {
            if (g.copies == 1) {
                for (const Product& p : g.products) run(p, C.data());
                continue;
            }
            const long long n_chunks = static_cast<long long>(g.copies);
#pragma omp parallel for schedule(static)
            for (long long i = 0; i < n_chunks; ++i)
                for (const Product& p : g.products)
                    run(p, C.data() + static_cast<std::size_t>(omp_get_thread_num()) % n_blocks * c);
        }
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) best = std::min(best, t);  // the first pass warms the caches and the pools
    }
    return best;
}

// One training workload on one device: a warm-up run of `warm_steps` (engine, cuBLAS and
// allocator start-up, caches, clocks; its rate sizes the measured run), then a run of about
// `seconds` (at least 3/4 of it: below). With the automatic CPU thread count the measured run is
// at least kTunedSteps steps: each run's tuner tries every candidate count for a few steps first
// (cpu/threads.h; 10 steps on 2 cores), which a training run of an epoch or more spends once and
// a run of ten steps would spend entirely, so the figure is that of the tuned count with the
// tuning's cost at most 5%.
json bench_training(const std::string& key, const std::string& workload, const Model& init, const Dataset& data,
                    TrainOptions opt, const Device& device, double seconds, std::size_t warm_steps) {
    opt.device = device;
    opt.progress_seconds = 0;
    const std::size_t batch = opt.batch_size == 0 ? data.n_samples : opt.batch_size;
    TrainOptions warm = opt;
    warm.steps = warm_steps;
    const TrainResult w = train(init, data, nullptr, warm);
    const double steps = seconds * w.samples_per_second / static_cast<double>(batch);
    constexpr double kTunedSteps = 200.0;
    const bool tuned = device.kind == DeviceKind::cpu && num_threads_automatic();
    opt.steps = static_cast<std::size_t>(std::clamp(steps, tuned ? kTunedSteps : 10.0, 200000.0));
    TrainResult r = train(init, data, nullptr, opt);
    // The warm-up's rate counts its start-up and, with the automatic thread count, the tuner's
    // first steps at one thread, so a short warm-up can size the run at a third of `seconds`,
    // where the tuner's first look (about 0.1 s) is then a large share. A run that came out
    // shorter than 3/4 of `seconds` is sized again from its own rate and run again, and that
    // second run is the figure.
    if (r.samples_per_second > 0 && r.wall_seconds < 0.75 * seconds && opt.steps < 200000) {
        const double again = seconds * r.samples_per_second / static_cast<double>(batch);
        opt.steps = static_cast<std::size_t>(std::clamp(again, static_cast<double>(opt.steps), 200000.0));
        r = train(init, data, nullptr, opt);
    }
    std::size_t nnz = 0;
    for (std::size_t v : r.nnz) nnz += v;
    json gemm_floor = nullptr;
    if (device.kind == DeviceKind::cpu) {
        const double t = gemm_floor_seconds(init.spec(), batch, 5);
        gemm_floor = {{"samples_per_second", static_cast<double>(batch) / t},
                      {"seconds_per_step", t},
                      {"share_of_step", t * r.samples_per_second / static_cast<double>(batch)}};
    }
    return {{"key", key},
            {"gemm_floor", gemm_floor},
            {"workload", workload},
            {"method", method_name(opt.method.method)},
            {"device", device.to_string()},
            {"threads", device.kind == DeviceKind::cpu ? describe_threads() : std::string()},
            {"steps", r.steps},
            {"batch", batch},
            {"samples_per_second", r.samples_per_second},
            {"wall_seconds", r.wall_seconds},
            {"train_loss", r.train_eval.loss},
            {"nnz", nnz},
            {"n_weights", init.spec().n_weights()}};
}

// MNIST-shaped rows when the real files are absent: 10 classes, pixels in [-1, 1] from a hash.
Dataset synthetic_mnist(std::size_t n) {
    Dataset d;
    d.name = "synthetic-mnist";
    d.task = Task::classification;
    d.n_samples = n;
    d.n_features = 784;
    d.n_outputs = 10;
    d.x = pattern(n * 784, 7);
    for (std::size_t i = 0; i < n; ++i) d.labels.push_back(static_cast<std::int32_t>((i * 2654435761u >> 7) % 10));
    return d;
}

std::string first_line_of(const char* path, const std::string& prefix) {
    std::FILE* f = std::fopen(path, "r");
    if (!f) return "";
    char line[512];
    std::string found;
    while (std::fgets(line, sizeof line, f)) {
        const std::string l = line;
        if (l.rfind(prefix, 0) == 0) {
            found = l.substr(l.find(':') == std::string::npos ? 0 : l.find(':') + 1);
            break;
        }
    }
    std::fclose(f);
    while (!found.empty() && (found.back() == '\n' || found.back() == ' ')) found.pop_back();
    while (!found.empty() && found.front() == ' ') found.erase(found.begin());
    return found;
}

std::string load_average() {
    std::FILE* f = std::fopen("/proc/loadavg", "r");
    if (!f) return "";
    char line[128] = {};
    if (!std::fgets(line, sizeof line, f)) line[0] = 0;
    std::fclose(f);
    std::string l = line;
    // "0.50 1.33 2.46 1/234 5678": the three averages.
    std::size_t cut = 0;
    for (int k = 0; k < 3 && cut != std::string::npos; ++k) cut = l.find(' ', cut + 1);
    return cut == std::string::npos ? l : l.substr(0, cut);
}

}  // namespace

// Keeps the round(density * n) largest |w| over all weight layers together (one global
// threshold, as magnitude pruning of a whole network; ties by position).
void prune_by_magnitude(Model& m, double density) {
    std::vector<std::pair<std::size_t, std::size_t>> where;  // (layer, index)
    for (std::size_t i = 0; i < m.n_weight_layers(); ++i)
        for (std::size_t k = 0; k < m.weights(i).size(); ++k) where.emplace_back(i, k);
    const auto keep = static_cast<std::size_t>(std::llround(density * static_cast<double>(where.size())));
    std::stable_sort(where.begin(), where.end(), [&](const auto& a, const auto& b) {
        return std::fabs(m.weights(a.first)[a.second]) > std::fabs(m.weights(b.first)[b.second]);
    });
    for (std::size_t k = keep; k < where.size(); ++k) m.weights(where[k].first)[where[k].second] = 0.0f;
}

// (c) for one model: rows of {batch, format, median latency, samples/s, speed-up over dense}.
json bench_inference(const std::string& label, const std::string& spec_text, int repeats,
                     const std::vector<Device>& devices) {
    std::string file = spec_text;
    double density = 0.0;
    const std::size_t at = spec_text.rfind('@');
    if (at != std::string::npos) {
        file = spec_text.substr(0, at);
        density = std::stod(spec_text.substr(at + 1));
        if (!(density > 0.0 && density <= 1.0)) throw Error("--infer " + label + ": density must be in (0, 1]");
    }
    // preset:NAME: the preset's initialized weights (seed 1): the timing depends on the shapes
    // and the pattern's density, not on the values.
    Model model = file.rfind("preset:", 0) == 0 ? Model::initialize(ModelSpec::preset(file.substr(7)), 1) : load_model(file);
    if (density > 0.0) prune_by_magnitude(model, density);
    const auto tmp = std::filesystem::temp_directory_path();
    const std::string dense_file = (tmp / ("sparseprox_bench_" + label + ".safetensors")).string();
    const std::string compact_file = (tmp / ("sparseprox_bench_" + label + "-compact.safetensors")).string();
    save_model(dense_file, model);
    const CompactModel c = compact(model);
    save_model(compact_file, c.model, compact_metadata(c));
    json r;
    r["label"] = label;
    r["file"] = file;
    r["pruned_to_density"] = density > 0.0 ? json(density) : json(nullptr);
    r["architecture"] = model.spec().to_short();
    r["nnz_total"] = model.nnz_total();
    r["n_weights_total"] = model.spec().n_weights();
    r["compact_architecture"] = c.model.spec().to_short();
    r["compact_weights"] = c.model.spec().n_weights();
    r["file_bytes"] = std::filesystem::file_size(dense_file);
    r["compact_file_bytes"] = std::filesystem::file_size(compact_file);
    std::filesystem::remove(dense_file);
    std::filesystem::remove(compact_file);
    // A network that is not a preset or a dense chain prints as its weight shapes (its JSON
    // description is in the report).
    auto brief = [](const ModelSpec& spec) {
        const std::string s = spec.to_short();
        if (s.find('{') == std::string::npos) return s;
        std::string out = "weights ";
        const ParamLayout layout = ParamLayout::of(spec);
        for (std::size_t l = 0; l < layout.segments.size(); ++l) {
            if (l) out += ", ";
            const std::vector<std::size_t>& shape = layout.segments[l].weight_shape;
            for (std::size_t k = 0; k < shape.size(); ++k) out += (k ? "x" : "") + std::to_string(shape[k]);
        }
        return out;
    };
    std::printf("  %s: %s, %zu of %zu weights nonzero%s; compact %s; file %zu -> %zu bytes (%.1fx smaller)\n",
                label.c_str(), brief(model.spec()).c_str(), model.nnz_total(), model.spec().n_weights(),
                density > 0.0 ? " (magnitude-pruned)" : "", brief(c.model.spec()).c_str(),
                r["file_bytes"].get<std::size_t>(), r["compact_file_bytes"].get<std::size_t>(),
                static_cast<double>(r["file_bytes"].get<std::size_t>()) / static_cast<double>(r["compact_file_bytes"].get<std::size_t>()));
    const InferenceFormat formats[3] = {InferenceFormat::dense, InferenceFormat::csr, InferenceFormat::compact};
    r["rows"] = json::array();
    for (const Device& device : devices) {
        // One block per device; the CPU-only table keeps its single, unlabelled block.
        if (devices.size() > 1) std::printf("  on %s\n", device.to_string().c_str());
        std::printf("  %-6s %-8s %12s %14s %10s %12s\n", "batch", "format", "latency ms", "samples/s", "vs dense",
                    "MACs/sample");
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> u(0.0f, 1.0f);
        for (std::size_t batch : {std::size_t{1}, std::size_t{32}, std::size_t{256}}) {
            std::vector<float> x(batch * model.spec().n_inputs);
            for (float& v : x) v = u(rng);
            std::vector<float> y(batch * model.spec().n_outputs());
            std::vector<std::unique_ptr<InferenceEngine>> engines;
            for (InferenceFormat f : formats) engines.push_back(std::make_unique<InferenceEngine>(model, device, f, batch));
            // Passes per timing: about 2e8 dense multiply-adds, at least 3. Every pass ends with
            // the download of its outputs, which on CUDA waits for the pass: the timings cover
            // the upload, the layers and the download, synchronized.
            const double macs = static_cast<double>(engines[0]->multiply_adds_per_sample()) * static_cast<double>(batch);
            const int passes = static_cast<int>(std::max(3.0, std::min(2000.0, 2e8 / std::max(macs, 1.0))));
            std::vector<std::vector<double>> ms(3), speedup(3);
            for (auto& e : engines)
                for (int w = 0; w < 3; ++w) e->run(x.data(), batch, y.data());
            for (int rep = 0; rep < repeats; ++rep) {
                double t[3];
                for (int k = 0; k < 3; ++k) {
                    const auto t0 = std::chrono::steady_clock::now();
                    for (int p = 0; p < passes; ++p) engines[k]->run(x.data(), batch, y.data());
                    t[k] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / passes;
                    ms[k].push_back(t[k]);
                }
                for (int k = 0; k < 3; ++k) speedup[k].push_back(t[0] / t[k]);
            }
            for (int k = 0; k < 3; ++k) {
                json row;
                row["device"] = device.to_string();
                row["batch"] = batch;
                row["format"] = to_string(formats[k]);
                row["median_latency_ms"] = median(ms[k]);
                row["samples_per_second"] = static_cast<double>(batch) / (median(ms[k]) / 1000.0);
                row["speedup_vs_dense"] = median(speedup[k]);
                row["multiply_adds_per_sample"] = engines[k]->multiply_adds_per_sample();
                row["passes_per_timing"] = passes;
                std::printf("  %-6zu %-8s %12.4f %14.0f %9.2fx %12zu\n", batch, to_string(formats[k]),
                            row["median_latency_ms"].get<double>(), row["samples_per_second"].get<double>(),
                            row["speedup_vs_dense"].get<double>(), engines[k]->multiply_adds_per_sample());
                r["rows"].push_back(row);
            }
        }
    }
    return r;
}

// Data-parallel training throughput (README, "Distributed training"): the MNIST MLP at batch 128
// and 1024 and the regression net at full batch, each trained `dp_steps` steps on every rank of
// the launcher's world (a fixed count: the ranks must run the same steps), after a 20-step
// warm-up. Rank 0 prints and writes the JSON; the others only compute. Per step each rank
// all-reduces the gradient slab once: a ring moves 2 (N - 1) / N x slab bytes in and out of
// every rank (docs/scaling.md).
int run_data_parallel(const Options& opt) {
    Communicator world;
    try {
        world = Communicator::world();
        const bool root = world.rank() == 0;
        const int n = world.size();
        Dataset images;
        std::string images_what;
        const std::string mnist_dir = opt.data_dir + "/mnist";
        if (std::filesystem::is_directory(mnist_dir)) {
            images = read_idx_dir(mnist_dir).train;
            images_what = "mnist (" + mnist_dir + ")";
        } else {
            images = synthetic_mnist(60000);
            images_what = "synthetic MNIST-shaped rows (no folder " + mnist_dir + ")";
        }
        const DataSplit mg = mackey_glass();
        struct Job {
            const char* key;
            const char* model;
            const Dataset* data;
            std::size_t batch;
        };
        const std::vector<Job> jobs = {{"mnist_mlp_b128", "dense:784-300-100-10", &images, 128},
                                       {"mnist_mlp_b1024", "dense:784-300-100-10", &images, 1024},
                                       {"mackey_glass_full", "dense:6-128-128-64-1", &mg.train, 0}};
        if (root)
            std::printf("data-parallel training on %s, %s per rank, %zu steps per run\n%-20s %6s %14s %14s %12s\n",
                        world.describe().c_str(), describe_threads().c_str(), opt.dp_steps, "workload", "ranks",
                        "samples/s", "slab bytes", "ms/step");
        json rows = json::array();
        for (const Job& j : jobs) {
            const Model init = Model::initialize(ModelSpec::parse(j.model), 1);
            TrainOptions o;
            o.communicator = world;
            o.lambdas = {1e-4f};
            o.batch_size = j.batch;
            o.progress_seconds = 0;
            o.steps = 20;
            train(init, *j.data, nullptr, o);  // warm-up
            o.steps = opt.dp_steps;
            const TrainResult r = train(init, *j.data, nullptr, o);
            const double slab_bytes = 4.0 * static_cast<double>(init.slab().size());
            const std::size_t batch = j.batch ? j.batch : j.data->n_samples;
            const double ms_per_step = 1000.0 * static_cast<double>(batch) / r.samples_per_second;
            if (root)
                std::printf("%-20s %6d %14.0f %14.0f %12.3f\n", j.key, n, r.samples_per_second, slab_bytes, ms_per_step);
            rows.push_back({{"key", j.key},
                            {"model", j.model},
                            {"batch", batch},
                            {"ranks", n},
                            {"steps", r.steps},
                            {"samples_per_second", r.samples_per_second},
                            {"ms_per_step", ms_per_step},
                            {"slab_bytes", slab_bytes},
                            {"ring_bytes_per_rank_per_step", 2.0 * (n - 1) / n * slab_bytes}});
        }
        if (root) {
            json out{{"data_parallel", rows},
                     {"communicator", world.describe()},
                     {"threads", describe_threads()},
                     {"images", images_what},
                     {"steps", opt.dp_steps}};
            write_file_atomic(opt.json_path, out.dump(2) + "\n");
            std::printf("wrote %s\n", opt.json_path.c_str());
        }
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "sparseprox_bench: error: %s\n", e.what());
        if (world.distributed()) world.abort(1);
        return 1;
    }
}

int main(int argc, char** argv) {
    try {
        const Options opt = parse_options(argc, argv);
        if (opt.threads != "auto") {
            if (opt.threads.empty() || opt.threads.find_first_not_of("0123456789") != std::string::npos ||
                opt.threads.size() > 6 || std::stoi(opt.threads) < 1)
                throw Error("--threads: '" + opt.threads + "' is not a thread count (a whole number >= 1, or auto)");
            set_num_threads(std::stoi(opt.threads));
        }
        if (opt.data_parallel) return run_data_parallel(opt);
        std::vector<Device> devices = {Device{DeviceKind::cpu, 0}};
        std::vector<std::unique_ptr<Backend>> backends;
        backends.push_back(make_cpu_backend());
        std::string no_cuda_why = "--cpu-only";
        if (opt.cuda) {
            try {
                backends.push_back(make_cuda_backend(0));
                devices.push_back(Device{DeviceKind::cuda, 0});
            } catch (const Error& e) {
                no_cuda_why = e.what();
            }
        }
        if (!opt.cpu) {
            if (devices.size() < 2) throw Error("--cuda-only: no usable CUDA device: " + no_cuda_why);
            devices.erase(devices.begin());
            backends.erase(backends.begin());
        }
        const bool have_cuda = devices.back().kind == DeviceKind::cuda;
        json out;
        out["version"] = version();
        out["quick"] = opt.quick;
        out["repeats"] = opt.repeats;
        out["machine"] = {{"cpu", first_line_of("/proc/cpuinfo", "model name")},
                          {"logical_cpus", std::thread::hardware_concurrency()},
                          {"vector_isa", __builtin_cpu_supports("avx512f") ? "avx512f"
                                         : __builtin_cpu_supports("avx2") ? "avx2"
                                                                           : "baseline"},
                          {"threads", describe_threads()},
                          {"num_threads", num_threads()},
                          {"dense_gemm", cpu::describe_gemm_library(cpu::dense_gemm_library())},
                          {"conv_gemm", cpu::describe_gemm_library(cpu::conv_gemm_library())},
                          {"winograd_gemm", cpu::describe_gemm_library(cpu::GemmLibrary::openblas)},
                          {"load_average_before", load_average()}};
        out["devices"] = json::array();
        std::printf("SparseProx %s benchmark%s\n", version(), opt.quick ? " (quick)" : "");
        for (const Device& d : devices) {
            const std::string desc = describe_device(d);
            out["devices"].push_back({{"device", d.to_string()}, {"description", desc}});
            std::printf("  device %s\n", desc.c_str());
        }
        if (!have_cuda) std::printf("  cuda: skipped (%s)\n", no_cuda_why.c_str());
        std::printf("  cpu products: dense layers %s, convolutions %s\n",
                    out["machine"]["dense_gemm"].get<std::string>().c_str(),
                    out["machine"]["conv_gemm"].get<std::string>().c_str());

        if (opt.cpu && (opt.prox || opt.training)) {
            out["cpu_peaks"] = cpu_peaks(std::min(opt.repeats, 10));
            std::printf("  cpu peaks: sgemm 512^3 %.1f GFLOP/s, copy %.1f GB/s (read + written)\n",
                        out["cpu_peaks"]["sgemm_512_gflops"].get<double>(), out["cpu_peaks"]["copy_gb_per_s"].get<double>());
        }

        // ---- (a) the prox step -----------------------------------------------------------------
        std::printf("\n(a) prox step, %g bytes per parameter, median of %d\n", kBytesPerParam, opt.repeats);
        std::printf("  %-12s %-8s %-46s %10s %10s %8s\n", "params", "device", "variant", "ms", "GB/s", "of copy");
        out["prox_step"] = json::array();
        auto print_row = [](const json& r) {
            const std::string frac = r.contains("fraction_of_copy")
                                         ? std::to_string(static_cast<int>(std::lround(100.0 * r["fraction_of_copy"].get<double>()))) + "%"
                                         : "";
            std::printf("  %-12zu %-8s %-46s %10.4f %10.1f %8s\n", r["n_params"].get<std::size_t>(),
                        r["device"].get<std::string>().c_str(), r["variant"].get<std::string>().c_str(),
                        r["median_ms"].get<double>(), r["gb_per_s"].get<double>(), frac.c_str());
        };
        for (std::size_t n = 100000; opt.prox && n <= opt.max_n; n *= 10) {
            const ModelSpec spec = square_net(n);
            for (auto& b : backends)
                for (const json& r : bench_prox(*b, spec, opt.repeats)) {
                    print_row(r);
                    out["prox_step"].push_back(r);
                }
        }

        // ---- (b) training throughput -----------------------------------------------------------
        std::printf("\n(b) training throughput through train()\n");
        std::printf("  %-44s %-8s %7s %6s %14s %9s %10s %12s\n", "workload", "device", "steps", "batch", "samples/s",
                    "wall s", "train loss", "GEMM floor");
        out["training"] = json::array();
        auto wanted = [&](const std::string& key) {
            return opt.workloads.empty() || std::find(opt.workloads.begin(), opt.workloads.end(), key) != opt.workloads.end();
        };
        auto run = [&](const std::string& key, const std::string& workload, const Model& init, const Dataset& data,
                       const TrainOptions& t, std::size_t warm_steps) {
            if (!wanted(key)) return;
            for (const Device& d : devices) {
                const json r = bench_training(key, workload, init, data, t, d, opt.seconds, warm_steps);
                const std::string floor =
                    r["gemm_floor"].is_null()
                        ? std::string("-")
                        : std::to_string(std::llround(r["gemm_floor"]["samples_per_second"].get<double>()));
                std::printf("  %-44s %-8s %7zu %6zu %14.0f %9.2f %10.5f %12s\n", workload.c_str(),
                            d.to_string().c_str(), r["steps"].get<std::size_t>(), r["batch"].get<std::size_t>(),
                            r["samples_per_second"].get<double>(), r["wall_seconds"].get<double>(),
                            r["train_loss"].get<double>(), floor.c_str());
                std::fflush(stdout);
                out["training"].push_back(r);
            }
        };
        if (opt.training) {
            const DataSplit mg = mackey_glass();
            TrainOptions t;
            t.lr = 0.1f;
            t.lambdas = {1e-4f};
            t.batch_size = 0;
            run("mackey_glass", "mackey-glass dense:6-128-128-64-1 full batch",
                Model::initialize(ModelSpec::parse("dense:6-128-128-64-1"), 1), mg.train, t, 20);

            const std::string mnist_dir = opt.data_dir + "/mnist";
            Dataset images;
            const bool need_images = opt.methods || wanted("lenet300100") || wanted("cnn8") || wanted("lenet5");
            if (need_images && std::filesystem::is_directory(mnist_dir)) {
                images = read_idx_dir(mnist_dir).train;
                out["images"] = "mnist (" + mnist_dir + ")";
            } else if (need_images) {
                images = synthetic_mnist(60000);
                out["images"] = "synthetic MNIST-shaped rows (no folder " + mnist_dir + ")";
                std::printf("  mnist: no folder %s, synthetic MNIST-shaped rows instead\n", mnist_dir.c_str());
            }
            TrainOptions c;
            c.lr = 0.1f;
            c.lambdas = {1e-4f};
            c.batch_size = 128;
            c.seed = 1;
            const Model mlp = Model::initialize(ModelSpec::preset("lenet300100"), 1);
            run("lenet300100", "lenet300100 (784-300-100-10) batch 128", mlp, images, c, 20);
            run("cnn8", "cnn8 batch 128", Model::initialize(ModelSpec::preset("cnn8"), 1), images, c, 2);
            run("lenet5", "lenet5 batch 128", Model::initialize(ModelSpec::preset("lenet5"), 1), images, c, 3);
            // The other sparsifiers on the MLP: the cost of their extra per-step work.
            struct MethodRow {
                const char* name;
                Method method;
                bool group;
            };
            for (const MethodRow& m : {MethodRow{"l0", Method::l0, false}, MethodRow{"l0 group gates", Method::l0, true},
                                       MethodRow{"spred", Method::spred, false}, MethodRow{"gmp", Method::gmp, false}}) {
                if (!opt.methods) break;
                TrainOptions tm = c;
                tm.method.method = m.method;
                tm.method.l0.group = m.group;
                tm.lambdas = {m.method == Method::l0 ? 2e-5f : 1e-4f};
                if (m.method == Method::gmp) tm.stop.targets = {13310};  // 5% at the end of the schedule
                run(std::string("lenet300100_") + m.name, std::string("lenet300100 batch 128, ") + m.name, mlp, images,
                    tm, 20);
            }
        }

        // ---- (c) inference formats ----------------------------------------------------------------
        if (!opt.infer.empty()) {
            std::string on;
            for (const Device& d : devices) on += (on.empty() ? "" : " and ") + (d.kind == DeviceKind::cpu ? std::string("the CPU") : d.to_string());
            std::printf("\n(c) inference on %s: dense vs csr vs compact, median of %d interleaved repeats\n", on.c_str(),
                        opt.repeats);
            out["inference_load_before"] = load_average();
            std::printf("  load average before: %s\n", out["inference_load_before"].get<std::string>().c_str());
            out["inference"] = json::array();
            for (const std::string& item : opt.infer) {
                const std::size_t eq = item.find('=');
                if (eq == std::string::npos || eq == 0) throw Error("--infer " + item + ": expected LABEL=FILE[@DENSITY]");
                out["inference"].push_back(bench_inference(item.substr(0, eq), item.substr(eq + 1), opt.repeats, devices));
            }
            out["inference_load_after"] = load_average();
            std::printf("  load average after: %s\n", out["inference_load_after"].get<std::string>().c_str());
        }
        out["machine"]["load_average_after"] = load_average();

        const std::filesystem::path path(opt.json_path);
        if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
        write_file_atomic(opt.json_path, out.dump(2) + "\n");
        std::printf("\nwrote %s\n", opt.json_path.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sparseprox_bench: %s\n", e.what());
        return 1;
    }
}
