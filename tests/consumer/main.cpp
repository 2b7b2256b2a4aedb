// Trains a tiny sparse regression net through the installed public API only.
#include <cstdio>

#include <sparseprox/sparseprox.h>

int main() {
    using namespace sparseprox;
    MackeyGlassOptions mg;
    mg.n_train = 200;
    mg.n_test = 50;
    DataSplit data = mackey_glass(mg);
    Model init = Model::initialize(ModelSpec::parse("dense:6-16-1"), 7);
    TrainOptions opt;
    opt.lr = 0.1f;
    opt.lambdas = {1e-3f};
    opt.steps = 200;
    opt.progress_seconds = 0;
    TrainResult r = train(init, data.train, &data.test, opt);
    std::printf("sparseprox %s: nnz %zu of %zu, test mse %.5f\n", version(), r.model.nnz_total(),
                r.model.spec().n_weights(), r.test_eval.loss);
    return r.steps == 200 && r.test_eval.loss < 1.0 ? 0 : 1;
}
