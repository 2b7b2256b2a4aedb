// libFuzzer harness: model specs from JSON text (model files, the "architecture" of a model file)
// and the dense:... short form. An accepted spec must print (to_json, to_short) to text that
// parses back to the same spec.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "sparseprox/error.h"
#include "sparseprox/model.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        // parse() would also try the text as a file path; only its short forms are fuzzed here.
        const sparseprox::ModelSpec spec = text.rfind("dense:", 0) == 0 ? sparseprox::ModelSpec::parse(text)
                                                                        : sparseprox::ModelSpec::from_json(text, "fuzz");
        spec.validate();
        const std::string json = spec.to_json();
        SPARSEPROX_FUZZ_CHECK(sparseprox::ModelSpec::from_json(json).to_json() == json);
        SPARSEPROX_FUZZ_CHECK(sparseprox::ModelSpec::parse(spec.to_short()).to_json() == json);
        const sparseprox::ParamLayout layout = sparseprox::ParamLayout::of(spec);
        std::size_t weights = 0;
        for (const auto& s : layout.segments) weights += s.n_weights;
        SPARSEPROX_FUZZ_CHECK(weights == spec.n_weights() && layout.segments.size() == spec.n_weight_layers());
    } catch (const sparseprox::Error&) {
    }
    return 0;
}
