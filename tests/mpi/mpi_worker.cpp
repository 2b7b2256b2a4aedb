// A program of the data-parallel tests, started by mpirun (tests/mpi/test_mpi.cpp); it uses the
// public API only.
//   mpi_worker train          every rank trains worker_options() data-parallel over the world
//                             and prints "rank R steps S stopped B nnz N0,N1,... hash H loss L"
//   mpi_worker die R STEP T   the same with a T-second timeout, but rank R exits (status 3)
//                             once it has passed STEP steps; the others must fail naming it
//   mpi_worker app            as `train`, with MPI initialized by the program itself and the
//                             communicator made from its MPI_COMM_WORLD (communicator_from_mpi)
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker_setup.h"

using namespace sparseprox;

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode != "train" && mode != "die" && mode != "app") {
        std::fprintf(stderr, "usage: mpi_worker train | die RANK STEP TIMEOUT | app\n");
        return 2;
    }
    if (mode == "app") MPI_Init(&argc, &argv);
    Communicator world;
    try {
        world = mode == "app" ? communicator_from_mpi(MPI_COMM_WORLD) : Communicator::world();
        const DataSplit data = test::worker_data();
        TrainOptions o = test::worker_options();
        o.communicator = world;
        if (mode == "die") {
            const int dying = std::atoi(argv[2]);
            const std::size_t after = static_cast<std::size_t>(std::atol(argv[3]));
            world.set_timeout(std::atof(argv[4]));
            o.stop = StopRule{};  // no early stop: the run is still going when the rank dies
            o.steps = 1000000;
            o.progress_seconds = 1e-9;  // a report at every poll (every 32 steps)
            o.on_progress = [&](const Progress& p) {
                if (world.rank() == dying && p.step >= after) std::_Exit(3);
            };
        }
        const TrainResult r = train(test::worker_init(), data.train, &data.test, o);
        std::string nnz;
        for (std::size_t n : r.nnz) nnz += (nnz.empty() ? "" : ",") + std::to_string(n);
        std::printf("rank %d steps %zu stopped %d nnz %s hash %llx loss %.17g\n", world.rank(), r.steps,
                    r.stopped_in_band ? 1 : 0, nnz.c_str(),
                    static_cast<unsigned long long>(test::slab_hash(r.model.slab())), r.test_eval.loss);
        std::fflush(stdout);
        if (mode == "app") {
            world = Communicator();  // the library's duplicate of MPI_COMM_WORLD is freed first
            MPI_Finalize();
        }
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "sparseprox: error: %s\n", e.what());
        std::fflush(stderr);
        if (world.distributed()) world.abort(1);
        return 1;
    }
}
