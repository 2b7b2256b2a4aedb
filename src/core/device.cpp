#include "sparseprox/device.h"

#include <omp.h>

#include "core/backend_query.h"
#include "sparseprox/error.h"
#include "sparseprox/version.h"

namespace sparseprox {

const char* version() { return SPARSEPROX_VERSION_STRING; }

std::string Device::to_string() const {
    return kind == DeviceKind::cpu ? "cpu" : "cuda:" + std::to_string(index);
}

bool cuda_compiled() {
#ifdef SPARSEPROX_WITH_CUDA
    return true;
#else
    return false;
#endif
}

namespace {
int cuda_count(std::string* why) {
#ifdef SPARSEPROX_WITH_CUDA
    return detail::cuda_device_count_impl(why);
#else
    if (why) *why = "this build of SparseProx has no CUDA backend (configured with SPARSEPROX_CUDA=OFF or without a CUDA toolkit)";
    return 0;
#endif
}
}  // namespace

int cuda_device_count() { return cuda_count(nullptr); }

Device parse_device(const std::string& text) {
    if (text == "cpu") return {DeviceKind::cpu, 0};
    if (text == "auto") return cuda_device_count() > 0 ? Device{DeviceKind::cuda, 0} : Device{DeviceKind::cpu, 0};
    int index = 0;
    if (text == "cuda") {
        index = 0;
    } else if (text.rfind("cuda:", 0) == 0) {
        const std::string n = text.substr(5);
        if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos)
            throw Error("device '" + text + "': expected cpu, cuda, cuda:N or auto");
        index = std::stoi(n);
    } else {
        throw Error("device '" + text + "': expected cpu, cuda, cuda:N or auto");
    }
    std::string why;
    const int count = cuda_count(&why);
    if (count == 0) throw Error("device '" + text + "' requested but no usable CUDA device: " + why);
    if (index >= count)
        throw Error("device '" + text + "' requested but only " + std::to_string(count) + " CUDA device" +
                    (count == 1 ? " is" : "s are") + " visible");
    return {DeviceKind::cuda, index};
}

std::string describe_device(const Device& device) {
    if (device.kind == DeviceKind::cpu)
        return "cpu (" + std::to_string(omp_get_max_threads()) + " threads, OpenBLAS)";
#ifdef SPARSEPROX_WITH_CUDA
    return device.to_string() + " (" + detail::cuda_device_description(device.index) + ")";
#else
    return device.to_string();
#endif
}

}  // namespace sparseprox
