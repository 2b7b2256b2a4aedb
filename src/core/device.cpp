#include "sparseprox/device.h"

#include <cstdio>
#include <mutex>

#include "core/cuda_plugin.h"
#include "cpu/gemm.h"
#include "sparseprox/error.h"
#include "sparseprox/threads.h"
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
// Devices the CUDA backend library sees; 0 with the reason when it cannot be loaded or sees none.
int cuda_count(std::string* why) {
    const detail::CudaPlugin* p = detail::cuda_plugin(why);
    if (!p) return 0;
    char reason[1024] = {};
    const int n = p->device_count(reason, sizeof reason);
    if (n == 0 && why) *why = reason;
    return n;
}
}  // namespace

int cuda_device_count() { return cuda_count(nullptr); }

Device parse_device(const std::string& text) {
    if (text == "cpu") return {DeviceKind::cpu, 0};
    if (text == "auto") {
        std::string why;
        if (cuda_count(&why) > 0) return {DeviceKind::cuda, 0};
        // Said once per process: the CPU is used because CUDA is not, and why.
        static std::once_flag said;
        std::call_once(said, [&why] { std::fprintf(stderr, "sparseprox: note: device auto uses the CPU: %s\n", why.c_str()); });
        return {DeviceKind::cpu, 0};
    }
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

namespace {

// "OpenBLAS", or in a build with oneDNN "OpenBLAS; dense layers oneDNN", and on a CPU with AVX-512
// "OpenBLAS; dense layers and im2col convolutions oneDNN" (cpu/gemm.h).
std::string cpu_products_text() {
    if (cpu::dense_gemm_library() == cpu::GemmLibrary::openblas) return "OpenBLAS";
    if (cpu::conv_gemm_library() == cpu::GemmLibrary::onednn) return "OpenBLAS; dense layers and im2col convolutions oneDNN";
    return "OpenBLAS; dense layers oneDNN";
}

}  // namespace

std::string describe_device(const Device& device) {
    if (device.kind == DeviceKind::cpu)
        return "cpu (" + describe_threads() + ", " + cpu_products_text() + ")";
    std::string why;
    const detail::CudaPlugin* p = detail::cuda_plugin(&why);
    if (!p) throw Error("device '" + device.to_string() + "': " + why);
    char text[1024] = {};
    if (p->describe(device.index, text, sizeof text) != 0) throw Error(text);
    return device.to_string() + " (" + text + ")";
}

}  // namespace sparseprox
