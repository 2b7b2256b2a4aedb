// libFuzzer harness: the safetensors reader and load_model. An accepted file must write back
// and read again to the same tensors; a loaded model must save and load again bit for bit.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "fuzz_util.h"
#include "sparseprox/error.h"
#include "sparseprox/model.h"
#include "sparseprox/safetensors.h"

namespace {

bool same(const sparseprox::TensorFile& a, const sparseprox::TensorFile& b) {
    if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
    for (const auto& [name, t] : a.tensors) {
        const auto it = b.tensors.find(name);
        if (it == b.tensors.end() || it->second.shape != t.shape || it->second.data.size() != t.data.size()) return false;
        if (!t.data.empty() && std::memcmp(t.data.data(), it->second.data.data(), 4 * t.data.size()) != 0) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string path = sparseprox_fuzz::put("input.safetensors", data, size);
    const std::string again = (sparseprox_fuzz::scratch_dir() / "again.safetensors").string();
    try {
        const sparseprox::TensorFile f = sparseprox::read_safetensors(path);
        bool writable = true;
        try {
            sparseprox::write_safetensors(again, f);
        } catch (const sparseprox::Error&) {
            writable = false;  // e.g. a name that is not UTF-8: the writer's JSON refuses it
        }
        if (writable) SPARSEPROX_FUZZ_CHECK(same(f, sparseprox::read_safetensors(again)));
    } catch (const sparseprox::Error&) {
    }
    try {
        std::map<std::string, std::string> meta;
        const sparseprox::Model m = sparseprox::load_model(path, &meta);
        meta.erase("format");
        meta.erase("architecture");
        sparseprox::save_model(again, m, meta);
        const sparseprox::Model back = sparseprox::load_model(again);
        SPARSEPROX_FUZZ_CHECK(back.spec().to_json() == m.spec().to_json());
        SPARSEPROX_FUZZ_CHECK(back.slab().size() == m.slab().size());
        SPARSEPROX_FUZZ_CHECK(m.slab().empty() ||
                              std::memcmp(back.slab().data(), m.slab().data(), 4 * m.slab().size()) == 0);
    } catch (const sparseprox::Error&) {
    }
    return 0;
}
