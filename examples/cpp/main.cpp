// Train on in-memory data, search a lambda for a target sparsity, save, load and predict, through
// the public API only. Usage: sparseprox_example [cpu|cuda|cuda:N|auto] [folder for the model]
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <sparseprox/sparseprox.h>

using namespace sparseprox;

// y = sin(x0) + x1 x2 - 0.5 x3 on uniform inputs: a small regression set made in memory.
Dataset make_data(std::size_t n, std::uint32_t seed) {
    Dataset d;
    d.name = "in-memory";
    d.task = Task::regression;
    d.n_samples = n;
    d.n_features = 4;
    d.n_outputs = 1;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (std::size_t i = 0; i < n; ++i) {
        float x[4];
        for (float& v : x) v = u(rng);
        d.x.insert(d.x.end(), x, x + 4);
        d.y.push_back(std::sin(x[0]) + x[1] * x[2] - 0.5f * x[3]);
    }
    return d;
}

int main(int argc, char** argv) {
    try {
        const Device device = parse_device(argc > 1 ? argv[1] : "auto");
        const std::string folder = argc > 2 ? argv[2] : ".";
        const Dataset train_set = make_data(512, 1), test_set = make_data(128, 2);
        const Model init = Model::initialize(ModelSpec::parse("dense:4-32-32-1"), 0);

        // One lambda, plain Algorithm 3.
        TrainOptions opt;
        opt.device = device;
        opt.lr = 0.05f;
        opt.lambdas = {1e-3f};
        opt.steps = 400;
        opt.progress_seconds = 0;
        const TrainResult trained = train(init, train_set, &test_set, opt);
        std::printf("train on %s: %zu of %zu weights nonzero, test MSE %.5f\n", trained.device.c_str(),
                    trained.model.nnz_total(), init.spec().n_weights(), trained.test_eval.loss);

        // lambda for 25% of the weights.
        SearchOptions so;
        so.train = opt;
        so.train.stop.targets = {init.spec().n_weights() / 4};
        so.train.stop.tolerance = 0.05;
        so.strategy = SearchStrategy::paper;  // Algorithm 1: whole runs, the next lambda from the gradient
        so.lambda0 = {0.02f};
        so.max_outer = 30;
        const SearchResult s = search(init, train_set, &test_set, so);
        std::printf("search: %s, lambda %.3g, %zu nonzero, test MSE %.5f\n", s.reached ? "in band" : "band missed",
                    s.lambda_final.empty() ? 0.0 : s.lambda_final[0], s.run.model.nnz_total(), s.run.test_eval.loss);

        // Save, load, predict: the loaded model gives the same outputs.
        const std::string path = folder + "/example.safetensors";
        save_model(path, s.run.model, {{"note", "sparseprox example"}});
        const Model loaded = load_model(path);
        const std::vector<float> a = s.run.model.predict(test_set, device), b = loaded.predict(test_set, device);
        double mse = 0.0;
        for (std::size_t i = 0; i < b.size(); ++i) mse += (b[i] - test_set.y[i]) * (b[i] - test_set.y[i]);
        mse /= static_cast<double>(b.size());
        std::printf("loaded %s: first layer %zu x %zu, predictions %s, MSE %.5f\n", path.c_str(),
                    loaded.weight_shape(0)[0], loaded.weight_shape(0)[1], a == b ? "identical" : "DIFFERENT", mse);
        return a == b && std::isfinite(mse) ? 0 : 1;
    } catch (const Error& e) {
        std::fprintf(stderr, "sparseprox_example: error: %s\n", e.what());
        return 1;
    }
}
