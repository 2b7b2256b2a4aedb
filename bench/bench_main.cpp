// sparseprox_bench: measurements, not impressions (style.md item 11).
//
// (a) The fused prox step over N parameters (4 square dense layers, N = 1e5 .. --max-n): buffers
//     allocated first, warm-up, then the median of --repeats timings taken with CUDA events on
//     the working stream. Bytes per parameter: read w and g, write w = 12; GB/s from that, and
//     its fraction of the measured device-to-device copy bandwidth (cudaMemcpyAsync moving the
//     same 12 bytes per parameter: 6 read + 6 written). Beside it the unfused reference (an SGD
//     pass, a threshold pass and a thrust::count_if per layer) and the CPU twin (chrono).
// (b) Training throughput through the public train() API on every available device: the
//     6-128-128-64-1 regression net on the embedded Mackey-Glass data (full batch) and the
//     784-300-100-10 MLP on MNIST, batch 128 (from --data-dir; skipped when absent), the MLP with
//     every sparsifier (l1, l0 with per-weight and group gates, spred, gmp). Each run is
//     preceded by a short warm-up run; samples/s is TrainResult::samples_per_second (training
//     time including engine setup, excluding the final evaluation).
//
// Prints a table on stdout and writes the same figures as JSON (--json, written atomically).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "cpu/prox_step.h"
#include "sparseprox/sparseprox.h"

#if defined(SPARSEPROX_WITH_CUDA)
#include <cuda_runtime_api.h>

#include "core/backend_query.h"
#include "cuda/common.h"
#include "cuda/context.h"
#include "cuda/tile_table.h"
#include "kernels/prox_step.cuh"
#endif

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
};

void usage() {
    std::printf(
        "usage: sparseprox_bench [--quick] [--max-n N] [--repeats R] [--json FILE] [--data-dir DIR]\n"
        "  --quick       short runs: N up to 1e7, 5 repeats, fewer training steps\n"
        "  --max-n N     largest parameter count of the prox benchmark (default 1e8; 1e7 with --quick)\n"
        "  --repeats R   timings per figure, the median is reported (default 20)\n"
        "  --json FILE   where the JSON goes (default bench/results/bench.json)\n"
        "  --data-dir D  folder holding mnist/ (default ../shared/data)\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    bool max_n_given = false, repeats_given = false;
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

json bench_cpu_prox(const ModelSpec& spec, int repeats) {
    const ParamLayout layout = ParamLayout::of(spec);
    const std::size_t n = n_params(layout);
    std::vector<float> params = pattern(layout.slab_size, 1), grads = pattern(layout.slab_size, 2);
    const std::vector<float> lambdas(layout.segments.size(), kBenchLambda);
    std::vector<std::size_t> nnz(layout.segments.size());
    using Clock = std::chrono::steady_clock;
    cpu::prox_step(params.data(), grads.data(), layout, kBenchLr, lambdas.data(), nnz.data());  // warm-up
    std::vector<double> ms;
    const int r = n >= 10000000 ? std::min(repeats, 5) : repeats;  // ~0.1 s per step at 1e8 on a few cores
    for (int i = 0; i < r; ++i) {
        const auto t0 = Clock::now();
        cpu::prox_step(params.data(), grads.data(), layout, kBenchLr, lambdas.data(), nnz.data());
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const double t = median(ms);
    return {{"device", "cpu"}, {"variant", "cpu::prox_step"}, {"n_params", n}, {"repeats", r},
            {"median_ms", t}, {"gb_per_s", kBytesPerParam * static_cast<double>(n) / (t * 1e6)}};
}

#if defined(SPARSEPROX_WITH_CUDA)

class EventPair {
public:
    EventPair() {
        SPARSEPROX_CUDA_CHECK(cudaEventCreate(&start_));
        SPARSEPROX_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    ~EventPair() {
        cudaEventDestroy(start_);
        cudaEventDestroy(stop_);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;

    // Milliseconds between events recorded on `stream` around the work f queues.
    template <class F>
    double time_ms(cudaStream_t stream, F&& f) {
        SPARSEPROX_CUDA_CHECK(cudaEventRecord(start_, stream));
        f();
        SPARSEPROX_CUDA_CHECK(cudaEventRecord(stop_, stream));
        SPARSEPROX_CUDA_CHECK(cudaEventSynchronize(stop_));
        float ms = 0.0f;
        SPARSEPROX_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
        return ms;
    }

private:
    cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

template <class F>
double median_ms(EventPair& events, cudaStream_t stream, int warmup, int repeats, F&& f) {
    for (int i = 0; i < warmup; ++i) events.time_ms(stream, f);
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) ms.push_back(events.time_ms(stream, f));
    return median(ms);
}

// The three GPU figures for one size; an empty list (with a message) when memory is short.
std::vector<json> bench_cuda_prox(const ModelSpec& spec, int repeats) {
    const ParamLayout layout = ParamLayout::of(spec);
    const std::size_t n = n_params(layout);
    const std::size_t copy_bytes = static_cast<std::size_t>(kBytesPerParam / 2.0 * static_cast<double>(n));
    const std::size_t need = 2 * layout.slab_size * sizeof(float) + 2 * copy_bytes;
    cuda::CudaContext ctx(0);
    std::size_t free_bytes = 0, total_bytes = 0;
    SPARSEPROX_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (need + (std::size_t{256} << 20) > free_bytes) {
        std::printf("  cuda prox N=%zu: skipped (needs %.1f GiB, %.1f GiB free)\n", n, need / 1073741824.0,
                    free_bytes / 1073741824.0);
        return {};
    }
    const cudaStream_t s = ctx.stream();
    // Allocate and fill everything before timing anything.
    cuda::DeviceBuffer<float> params(layout.slab_size), grads(layout.slab_size);
    params.copy_from_host(pattern(layout.slab_size, 1).data(), layout.slab_size, s);
    grads.copy_from_host(pattern(layout.slab_size, 2).data(), layout.slab_size, s);
    const std::vector<float> lambdas(layout.segments.size(), kBenchLambda);
    std::vector<float> hyper{kBenchLr};
    hyper.insert(hyper.end(), lambdas.begin(), lambdas.end());
    cuda::DeviceBuffer<float> hyper_device(hyper.size());
    hyper_device.copy_from_host(hyper.data(), hyper.size(), s);
    cuda::TileTable table(layout, s);
    cuda::DeviceBuffer<std::uint64_t> layer_nnz(std::max<std::size_t>(layout.segments.size(), 1));
    cuda::DeviceBuffer<unsigned char> copy_src(copy_bytes), copy_dst(copy_bytes);
    SPARSEPROX_CUDA_CHECK(cudaMemsetAsync(copy_src.data(), 1, copy_bytes, s));
    ctx.synchronize();

    EventPair events;
    const int warmup = 3;
    const double t_copy = median_ms(events, s, warmup, repeats, [&] {
        SPARSEPROX_CUDA_CHECK(cudaMemcpyAsync(copy_dst.data(), copy_src.data(), copy_bytes, cudaMemcpyDeviceToDevice, s));
    });
    const double t_fused = median_ms(events, s, warmup, repeats, [&] {
        const cuda::SlabTiles t = table.tiles();
        cuda::launch_prox_step(params.data(), grads.data(), t.tiles, t.n_tiles, hyper_device.data(), nullptr,
                               t.tile_nnz, s);
        table.sum_per_layer(layer_nnz.data(), s);
    });
    const double t_unfused = median_ms(events, s, warmup, repeats, [&] {
        cuda::launch_prox_step_unfused(params.data(), grads.data(), layout, hyper_device.data(), s);
        table.count(params.data(), layer_nnz.data(), s);
    });

    const double bytes = kBytesPerParam * static_cast<double>(n);
    const double copy_gbps = bytes / (t_copy * 1e6);
    auto row = [&](const char* variant, double t) {
        const double gbps = bytes / (t * 1e6);
        return json{{"device", "cuda:0"},          {"variant", variant},  {"n_params", n},
                    {"repeats", repeats},          {"median_ms", t},      {"gb_per_s", gbps},
                    {"fraction_of_copy", gbps / copy_gbps}};
    };
    return {row("d2d copy (same bytes)", t_copy), row("fused (prox kernel + per-layer count)", t_fused),
            row("unfused (sgd, threshold, count_if per layer)", t_unfused)};
}

#endif  // SPARSEPROX_WITH_CUDA

json bench_training(const std::string& workload, const Model& init, const Dataset& data, TrainOptions opt,
                    const Device& device) {
    opt.device = device;
    opt.progress_seconds = 0;
    TrainOptions warm = opt;  // engine, cuBLAS and allocator start-up, caches, clocks
    warm.steps = std::min<std::size_t>(opt.steps, 10);
    train(init, data, nullptr, warm);
    const TrainResult r = train(init, data, nullptr, opt);
    std::size_t nnz = 0;
    for (std::size_t v : r.nnz) nnz += v;
    return {{"workload", workload},
            {"method", method_name(opt.method.method)},
            {"device", device.to_string()},
            {"steps", r.steps},
            {"batch", opt.batch_size == 0 ? data.n_samples : opt.batch_size},
            {"samples_per_second", r.samples_per_second},
            {"wall_seconds", r.wall_seconds},
            {"train_loss", r.train_eval.loss},
            {"nnz", nnz},
            {"n_weights", init.spec().n_weights()}};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options opt = parse_options(argc, argv);
        std::vector<Device> devices = {Device{DeviceKind::cpu, 0}};
        std::string no_cuda_why = "this build has no CUDA backend";
#if defined(SPARSEPROX_WITH_CUDA)
        if (detail::cuda_device_count_impl(&no_cuda_why) > 0) devices.push_back(Device{DeviceKind::cuda, 0});
#endif
        const bool have_cuda = devices.size() > 1;
        json out;
        out["version"] = version();
        out["quick"] = opt.quick;
        out["repeats"] = opt.repeats;
        out["devices"] = json::array();
        std::printf("SparseProx %s benchmark%s\n", version(), opt.quick ? " (quick)" : "");
        for (const Device& d : devices) {
            const std::string desc = describe_device(d);
            out["devices"].push_back({{"device", d.to_string()}, {"description", desc}});
            std::printf("  device %s\n", desc.c_str());
        }
        if (!have_cuda) std::printf("  cuda: skipped (%s)\n", no_cuda_why.c_str());

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
        for (std::size_t n = 100000; n <= opt.max_n; n *= 10) {
            const ModelSpec spec = square_net(n);
#if defined(SPARSEPROX_WITH_CUDA)
            if (have_cuda)
                for (const json& r : bench_cuda_prox(spec, opt.repeats)) {
                    print_row(r);
                    out["prox_step"].push_back(r);
                }
#endif
            const json r = bench_cpu_prox(spec, opt.repeats);
            print_row(r);
            out["prox_step"].push_back(r);
        }

        // ---- (b) training throughput -----------------------------------------------------------
        std::printf("\n(b) training throughput through train()\n");
        std::printf("  %-44s %-8s %7s %6s %14s %9s %10s\n", "workload", "device", "steps", "batch", "samples/s",
                    "wall s", "train loss");
        out["training"] = json::array();
        auto run = [&](const std::string& workload, const Model& init, const Dataset& data, TrainOptions t,
                       std::size_t cpu_steps, std::size_t cuda_steps) {
            for (const Device& d : devices) {
                t.steps = d.kind == DeviceKind::cpu ? cpu_steps : cuda_steps;
                const json r = bench_training(workload, init, data, t, d);
                std::printf("  %-44s %-8s %7zu %6zu %14.0f %9.2f %10.5f\n", workload.c_str(), d.to_string().c_str(),
                            r["steps"].get<std::size_t>(), r["batch"].get<std::size_t>(),
                            r["samples_per_second"].get<double>(), r["wall_seconds"].get<double>(),
                            r["train_loss"].get<double>());
                out["training"].push_back(r);
            }
        };
        {
            const DataSplit mg = mackey_glass();
            TrainOptions t;
            t.lr = 0.1f;
            t.lambdas = {1e-4f};
            t.batch_size = 0;
            run("mackey-glass dense:6-128-128-64-1 full batch", Model::initialize(ModelSpec::parse("dense:6-128-128-64-1"), 1),
                mg.train, t, opt.quick ? 50 : 500, opt.quick ? 500 : 5000);
        }
        const std::string mnist_dir = opt.data_dir + "/mnist";
        if (std::filesystem::is_directory(mnist_dir)) {
            const DataSplit mnist = read_idx_dir(mnist_dir);
            TrainOptions t;
            t.lr = 0.1f;
            t.lambdas = {1e-4f};
            t.batch_size = 128;
            t.seed = 1;
            const Model mlp = Model::initialize(ModelSpec::parse("dense:784-300-100-10"), 1);
            run("mnist dense:784-300-100-10 batch 128", mlp, mnist.train, t, opt.quick ? 20 : 200,
                opt.quick ? 200 : 2 * 469);
            // The other sparsifiers on the same workload: the cost of their extra per-step work.
            struct MethodRow {
                const char* name;
                Method method;
                bool group;
            };
            for (const MethodRow& m : {MethodRow{"l0", Method::l0, false}, MethodRow{"l0 group gates", Method::l0, true},
                                       MethodRow{"spred", Method::spred, false}, MethodRow{"gmp", Method::gmp, false}}) {
                TrainOptions tm = t;
                tm.method.method = m.method;
                tm.method.l0.group = m.group;
                tm.lambdas = {m.method == Method::l0 ? 2e-5f : 1e-4f};
                if (m.method == Method::gmp) tm.stop.targets = {13310};  // 5% at the end of the schedule
                run(std::string("mnist dense:784-300-100-10 batch 128, ") + m.name, mlp, mnist.train, tm,
                    opt.quick ? 20 : 200, opt.quick ? 200 : 2 * 469);
            }
        } else {
            std::printf("  mnist: skipped (no folder %s; give --data-dir)\n", mnist_dir.c_str());
            out["training_skipped"] = "mnist: no folder " + mnist_dir;
        }

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
