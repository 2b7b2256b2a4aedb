// sparseprox: the command-line front end of the library.
#include <chrono>
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/export_command.h"
#include "cli/predict_command.h"
#include "cli/search_command.h"
#include "cli/train_command.h"
#include "cli/usage.h"
#include "sparseprox/files.h"
#include "sparseprox/sparseprox.h"

namespace {

// Every usage error, like every other error: one line, exit status 1.
int usage_error(const std::string& message) {
    std::fprintf(stderr, "sparseprox: error: %s\n", message.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace sparseprox;
    // A signal while an output is being written leaves no temporary file behind.
    install_temp_file_cleanup();
    CLI::App app{"SparseProx: sparse neural networks by l1 proximal training"};
    app.set_version_flag("--version", std::string("sparseprox ") + version());
    // Unknown arguments are collected, not thrown, so that the message is ours (with the
    // closest known flag) and the exit status 1.
    app.allow_extras();

    cli::TrainFlags train_flags;
    CLI::App* train_cmd = app.add_subcommand("train", "train a network by proximal SGD (Algorithm 3)");
    cli::add_train_flags(*train_cmd, train_flags);

    cli::SearchFlags search_flags;
    CLI::App* search_cmd =
        app.add_subcommand("search", "choose lambda (or one lambda per layer) for a target NNZ (Algorithms 1 and 2)");
    cli::add_search_flags(*search_cmd, search_flags);

    cli::PredictFlags predict_flags;
    CLI::App* predict_cmd = app.add_subcommand(
        "predict", "run a saved model on data prepared as its training data were (loss, accuracy, outputs)");
    cli::add_predict_flags(*predict_cmd, predict_flags);

    cli::ExportFlags export_flags;
    CLI::App* export_cmd = app.add_subcommand(
        "export", "write a saved model for PyTorch (torch), as CSR arrays (csr) or compacted (compact)");
    cli::add_export_flags(*export_cmd, export_flags);

    CLI::App* devices_cmd = app.add_subcommand("devices", "list the devices this build can use");
    const std::vector<CLI::App*> commands = {train_cmd, search_cmd, predict_cmd, export_cmd, devices_cmd};
    for (CLI::App* c : commands) c->allow_extras();

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // The command whose flag failed, for the flag's type in the message.
        const CLI::App* where = &app;
        for (CLI::App* c : commands)
            if (c->parsed()) where = c;
        return usage_error(cli::usage_message(e, *where));
    }

    const CLI::App* chosen = nullptr;
    for (CLI::App* c : commands)
        if (c->parsed()) chosen = c;
    std::vector<std::string> command_names;
    for (CLI::App* c : commands) command_names.push_back(c->get_name());
    const std::vector<std::string> top_extras = app.remaining();
    if (!chosen) {
        if (top_extras.empty())
            return usage_error("no command given: sparseprox train, search, predict, export or devices (see sparseprox --help)");
        const std::string& word = top_extras.front();
        if (!word.empty() && word[0] == '-')
            return usage_error(cli::extras_message(top_extras, app, "sparseprox", {train_cmd, search_cmd, predict_cmd, export_cmd}));
        return usage_error("unknown command '" + word + "' (expected train, search, predict, export or devices)" +
                           cli::did_you_mean(word, command_names));
    }
    if (!top_extras.empty())
        return usage_error(cli::extras_message(top_extras, app, "sparseprox", {train_cmd, search_cmd, predict_cmd, export_cmd}) +
                           "; flags go after the command");
    const std::vector<std::string> extras = chosen->remaining();
    if (!extras.empty()) {
        std::vector<const CLI::App*> others;
        for (CLI::App* c : commands)
            if (c != chosen) others.push_back(c);
        return usage_error(cli::extras_message(extras, *chosen, "sparseprox " + chosen->get_name(), others));
    }

    cli::record_given_flags(*train_cmd, train_flags.given);
    cli::record_given_flags(*search_cmd, search_flags.train.given);
    cli::record_given_flags(*predict_cmd, predict_flags.given);
    cli::record_given_flags(*export_cmd, export_flags.given);
    // Under mpirun, train and search run on every rank: MPI starts here (only when the launcher
    // started several ranks), and the ranks other than 0 print nothing but their errors.
    Communicator world;
    // An error ends the whole job: under mpirun the other ranks would otherwise wait in their
    // next collective until the timeout. Rank 0 says it; another rank says it with its number,
    // after a moment in which rank 0, failing on the same input, usually ends the job first (so
    // bad input gives one line, not one per rank).
    auto fail = [&](const std::string& message, int status) {
        if (world.distributed() && world.rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::fprintf(stderr, "sparseprox: %s%s\n",
                     world.distributed() && world.rank() != 0 ? ("rank " + std::to_string(world.rank()) + ": ").c_str() : "",
                     message.c_str());
        std::fflush(stderr);
        if (world.distributed()) world.abort(status);
        return status;
    };
    try {
        if (chosen == train_cmd || chosen == search_cmd) {
            world = Communicator::world();
            cli::set_world(world);
            if (world.rank() != 0 && !std::freopen("/dev/null", "w", stdout))
                throw Error("rank " + std::to_string(world.rank()) + ": cannot silence the standard output");
        }
        if (chosen == train_cmd) return cli::run_train(train_flags);
        if (chosen == search_cmd) return cli::run_search(search_flags);
        if (chosen == predict_cmd) return cli::run_predict(predict_flags);
        if (chosen == export_cmd) return cli::run_export(export_flags);
        std::printf("%s\n", describe_device(Device{}).c_str());
        const int n = cuda_device_count();
        if (!cuda_compiled()) std::printf("CUDA backend not compiled in\n");
        for (int i = 0; i < n; ++i) std::printf("%s\n", describe_device(Device{DeviceKind::cuda, i}).c_str());
        if (cuda_compiled() && n == 0) std::printf("no usable CUDA device\n");
        return 0;
    } catch (const Error& e) {
        return fail(std::string("error: ") + e.what(), 1);
    } catch (const std::bad_alloc&) {
        return fail("error: out of memory", 1);
    } catch (const std::exception& e) {
        return fail(std::string("internal error: ") + e.what(), 2);
    }
}
