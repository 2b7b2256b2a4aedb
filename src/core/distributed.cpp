// The public Communicator handle (sparseprox/distributed.h) and the single-process group; the
// MPI group is in core/collective_mpi.cpp.
#include "sparseprox/distributed.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/collective.h"
#include "sparseprox/error.h"

namespace sparseprox {
namespace {

class SingleProcess final : public Collective {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    double timeout() const override { return timeout_; }
    void set_timeout(double seconds) override { timeout_ = seconds; }
    void sum(float*, std::size_t, const char*) override {}
    void sum(double*, std::size_t, const char*) override {}
    void broadcast(void*, std::size_t, int root, const char* what) override {
        if (root != 0) throw Error(std::string(what) + ": broadcast from rank " + std::to_string(root) + " of 1");
    }
    std::vector<double> gather(const std::vector<double>& mine, const char*) override { return mine; }
    std::shared_ptr<Collective> split(int) override { return std::make_shared<SingleProcess>(); }
    [[noreturn]] void lost(const char* what) override {
        throw Error(std::string(what) + " did not complete within " + std::to_string(timeout_) + " s");
    }
    [[noreturn]] void abort(int code) override { std::exit(code); }
    std::string describe() const override { return "single process"; }

private:
    double timeout_ = 30.0;
};

}  // namespace

std::shared_ptr<Collective> make_single_process_collective() { return std::make_shared<SingleProcess>(); }

int launched_ranks() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
        const char* v = std::getenv(name);
        if (!v || !*v) continue;
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (end && *end == '\0' && n > 1 && n < (1L << 30)) return static_cast<int>(n);
    }
    return 1;
}

#if !SPARSEPROX_WITH_MPI
std::shared_ptr<Collective> make_world_collective() {
    const int n = launched_ranks();
    if (n > 1)
        throw Error("launched as " + std::to_string(n) +
                    " processes (OMPI_COMM_WORLD_SIZE or PMI_SIZE), but this build of SparseProx has no MPI "
                    "(CMake SPARSEPROX_MPI): each would train its own copy; rebuild with MPI or run one process");
    return make_single_process_collective();
}

std::shared_ptr<Collective> make_mpi_collective(const void*, std::size_t) {
    throw Error("this build of SparseProx has no MPI (CMake SPARSEPROX_MPI): a communicator cannot be made from an MPI_Comm");
}
#endif

bool mpi_compiled() {
#if SPARSEPROX_WITH_MPI
    return true;
#else
    return false;
#endif
}

Communicator::Communicator() : impl_(make_single_process_collective()) {}
Communicator::Communicator(std::shared_ptr<Collective> impl) : impl_(std::move(impl)) {
    if (!impl_) impl_ = make_single_process_collective();
}

Communicator Communicator::world() { return Communicator(make_world_collective()); }
Communicator Communicator::from_mpi_handle(const void* comm, std::size_t size) {
    return Communicator(make_mpi_collective(comm, size));
}

int Communicator::rank() const { return impl_->rank(); }
int Communicator::size() const { return impl_->size(); }
double Communicator::timeout() const { return impl_->timeout(); }
void Communicator::set_timeout(double seconds) {
    if (!(std::isfinite(seconds) && seconds > 0.0))
        throw Error("communication timeout " + std::to_string(seconds) + " s must be positive and finite");
    impl_->set_timeout(seconds);
}
std::string Communicator::describe() const { return impl_->describe(); }
Communicator Communicator::split(int color) const { return Communicator(impl_->split(color)); }
void Communicator::abort(int code) const {
    impl_->abort(code);
    std::_Exit(code);  // unreachable: every group ends the process
}

}  // namespace sparseprox
