#include "cuda/common.h"

namespace sparseprox {
namespace cuda {

void throw_status(const char* call, const char* status_name, const char* status_text, const char* file, int line) {
    throw Error(std::string(call) + " failed: " + status_name + " (" + status_text + ") at " + file + ":" +
                std::to_string(line));
}

void check_status(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw_status(call, cublasGetStatusName(status), cublasGetStatusString(status), file, line);
}

}  // namespace cuda
}  // namespace sparseprox
