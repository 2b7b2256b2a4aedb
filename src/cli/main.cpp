// sparseprox: the command-line front end of the library.
#include <cstdio>
#include <exception>
#include <new>

#include <CLI/CLI.hpp>

#include "cli/search_command.h"
#include "cli/train_command.h"
#include "sparseprox/sparseprox.h"

int main(int argc, char** argv) {
    using namespace sparseprox;
    CLI::App app{"SparseProx: sparse neural networks by l1 proximal training"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("sparseprox ") + version());

    cli::TrainFlags train_flags;
    CLI::App* train_cmd = app.add_subcommand("train", "train a network by proximal SGD (Algorithm 3)");
    cli::add_train_flags(*train_cmd, train_flags);

    cli::SearchFlags search_flags;
    CLI::App* search_cmd =
        app.add_subcommand("search", "choose lambda (or one lambda per layer) for a target NNZ (Algorithms 1 and 2)");
    cli::add_search_flags(*search_cmd, search_flags);

    CLI::App* devices_cmd = app.add_subcommand("devices", "list the devices this build can use");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    cli::record_given_flags(*train_cmd, train_flags.given);
    cli::record_given_flags(*search_cmd, search_flags.train.given);
    try {
        if (*train_cmd) return cli::run_train(train_flags);
        if (*search_cmd) return cli::run_search(search_flags);
        if (*devices_cmd) {
            std::printf("%s\n", describe_device(Device{}).c_str());
            const int n = cuda_device_count();
            if (!cuda_compiled()) std::printf("CUDA backend not compiled in\n");
            for (int i = 0; i < n; ++i) std::printf("%s\n", describe_device(Device{DeviceKind::cuda, i}).c_str());
            if (cuda_compiled() && n == 0) std::printf("no usable CUDA device\n");
            return 0;
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "sparseprox: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "sparseprox: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sparseprox: internal error: %s\n", e.what());
        return 2;
    }
    return 0;
}
