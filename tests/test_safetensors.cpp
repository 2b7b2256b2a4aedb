// safetensors files: the low-level reader/writer, the byte layout other implementations expect,
// and model save/load.
#include <gtest/gtest.h>

#include "test_util.h"
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sparseprox/error.h"
#include "sparseprox/model.h"
#include "sparseprox/safetensors.h"

namespace fs = std::filesystem;
using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;
using nlohmann::json;

namespace {


std::uint32_t bits_of(float f) {
    std::uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}

float float_of(std::uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}

// Bitwise equality, so -0.0 vs +0.0 and NaN payloads would count as differences.
testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
    for (std::size_t i = 0; i < a.size(); ++i)
        if (bits_of(a[i]) != bits_of(b[i]))
            return testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
    return testing::AssertionSuccess();
}

// Little-endian byte helpers written independently of the library's.
void put_le(std::string& s, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::uint64_t get_le(const std::string& s, std::size_t at, int bytes) {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
    return v;
}

// A safetensors file assembled by hand: header text as given (no padding), then the floats.
std::string hand_made(const std::string& header, const std::vector<float>& values) {
    std::string s;
    put_le(s, header.size(), 8);
    s += header;
    for (float v : values) put_le(s, bits_of(v), 4);
    return s;
}

class SafetensorsDir : public sparseprox::testing_util::TempDirTest {
protected:
    std::string slurp(const std::string& p) const {
        std::ifstream in(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
};

TensorFile sample_file() {
    TensorFile f;
    f.tensors["b.weight"] = {
        {2, 3},
        {1.0f, -0.0f, 0.1f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max(), -3.25f}};
    f.tensors["a.bias"] = {{2}, {7.5f, -1e-30f}};
    f.tensors["scalar"] = {{}, {42.0f}};
    f.tensors["empty"] = {{0, 4}, {}};
    f.metadata["note"] = "hello \"quoted\" \xC3\xA9";
    f.metadata["lambda"] = "0.001";
    return f;
}

}  // namespace

// ---- low level -----------------------------------------------------------------------------------

using Safetensors = SafetensorsDir;

TEST_F(Safetensors, RoundTripIsBitwise) {
    const TensorFile f = sample_file();
    const std::string p = path("t.safetensors");
    write_safetensors(p, f);
    const TensorFile g = read_safetensors(p);
    EXPECT_EQ(g.metadata, f.metadata);
    ASSERT_EQ(g.tensors.size(), f.tensors.size());
    for (const auto& [name, t] : f.tensors) {
        ASSERT_EQ(g.tensors.count(name), 1u) << name;
        EXPECT_EQ(g.tensors.at(name).shape, t.shape) << name;
        EXPECT_TRUE(same_bits(g.tensors.at(name).data, t.data)) << name;
    }
    // No temporary file is left behind next to the result.
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(fs::path(p).parent_path())) files += e.is_regular_file();
    EXPECT_EQ(files, 1u);
}

TEST_F(Safetensors, HeaderBytesFollowTheFormat) {
    // Parsed here without the library's reader, as another safetensors implementation would.
    const TensorFile f = sample_file();
    const std::string p = path("layout.safetensors");
    write_safetensors(p, f);
    const std::string bytes = slurp(p);
    ASSERT_GE(bytes.size(), 8u);
    const std::uint64_t n = get_le(bytes, 0, 8);
    ASSERT_LE(8 + n, bytes.size());
    EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-byte aligned";
    const std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.front(), '{');
    const std::size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
    EXPECT_LT(header.size() - last - 1, 8u) << "padding is fewer than 8 spaces";

    const json j = json::parse(header);
    ASSERT_TRUE(j.is_object());
    ASSERT_TRUE(j.contains("__metadata__"));
    EXPECT_EQ(j["__metadata__"]["note"], f.metadata.at("note"));
    EXPECT_EQ(j["__metadata__"]["lambda"], "0.001");
    EXPECT_EQ(j.size(), f.tensors.size() + 1);

    const std::string data = bytes.substr(8 + n);
    std::uint64_t expect_begin = 0;
    for (const auto& [name, t] : f.tensors) {  // sorted names: a.bias, b.weight, empty, scalar
        ASSERT_TRUE(j.contains(name)) << name;
        const json& e = j[name];
        EXPECT_EQ(e["dtype"], "F32") << name;
        EXPECT_EQ(e["shape"].get<std::vector<std::size_t>>(), t.shape) << name;
        const auto off = e["data_offsets"].get<std::vector<std::uint64_t>>();
        ASSERT_EQ(off.size(), 2u);
        EXPECT_EQ(off[0], expect_begin) << name << " is not contiguous in name order";
        EXPECT_EQ(off[1] - off[0], 4 * t.data.size()) << name;
        for (std::size_t i = 0; i < t.data.size(); ++i)
            EXPECT_EQ(get_le(data, off[0] + 4 * i, 4), bits_of(t.data[i])) << name << "[" << i << "]";
        expect_begin = off[1];
    }
    EXPECT_EQ(expect_begin, data.size()) << "no bytes after the last tensor";
}

TEST_F(Safetensors, ReadsAFileWrittenByHand) {
    // Unpadded header, keys in non-sorted order, data stored in reverse name order: all legal.
    const std::string header = R"({"z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("a":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]},"__metadata__":{"k":"v"}})";
    const std::string p = write("hand.safetensors", hand_made(header, {1.5f, -2.0f, 0.25f}));
    const TensorFile f = read_safetensors(p);
    EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"k", "v"}}));
    EXPECT_EQ(f.tensors.at("z").shape, (std::vector<std::size_t>{2}));
    EXPECT_EQ(f.tensors.at("z").data, (std::vector<float>{1.5f, -2.0f}));
    EXPECT_EQ(f.tensors.at("a").shape, (std::vector<std::size_t>{1, 1}));
    EXPECT_EQ(f.tensors.at("a").data, (std::vector<float>{0.25f}));
}

TEST_F(Safetensors, ReaderRejectsBrokenFiles) {
    const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    struct Case {
        std::string name;
        std::string bytes;
        std::vector<std::string> parts;
    };
    std::string huge_len;
    put_le(huge_len, 1000, 8);
    huge_len += "{}";
    const std::vector<Case> cases = {
        {"tiny", "abc", {"truncated"}},
        {"hlen", huge_len, {"header length 1000", "past the end"}},
        {"json", hand_made("{\"w\": [1, 2", {}), {"invalid JSON"}},
        {"array", hand_made("[1,2]", {}), {"not a JSON object"}},
        {"dtype", hand_made(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", {0}), {"'w'", "F16"}},
        {"noshape", hand_made(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", {0}), {"'w'", "shape"}},
        {"negshape", hand_made(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", {0}), {"'w'", "shape"}},
        {"size",
         hand_made(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", {0, 0}),
         {"'w'", "span 8 bytes", "[3]", "needs 12"}},
        {"range",
         hand_made(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", {0, 0}),
         {"'w'", "past the data buffer"}},
        {"reversed", hand_made(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", {0, 0}), {"'w'", "range"}},
        {"overlap",
         hand_made("{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", {0, 0, 0}),
         {"'v'", "overlap", "'w'"}},
        {"gap", hand_made(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", {0, 0}), {"'w'", "unused"}},
        {"tail", hand_made("{" + ok_entry + "}", {0, 0, 0}), {"4 bytes after the last tensor"}},
        {"nan",
         hand_made("{" + ok_entry + "}", {1.0f, std::numeric_limits<float>::quiet_NaN()}),
         {"'w'", "value 1", "NaN"}},
        {"inf",
         hand_made("{" + ok_entry + "}", {-std::numeric_limits<float>::infinity(), 0}),
         {"'w'", "value 0", "Inf"}},
        {"meta", hand_made(R"({"__metadata__":{"k":1}})", {}), {"metadata", "'k'", "not a string"}},
    };
    for (const Case& c : cases) {
        const std::string p = write(c.name + ".safetensors", c.bytes);
        std::vector<std::string> parts = c.parts;
        parts.push_back(c.name + ".safetensors");
        testing::AssertionResult r = testing::AssertionFailure() << "did not throw";
        try {
            read_safetensors(p);
        } catch (const Error& e) {
            r = testing::AssertionSuccess();
            for (const auto& part : parts)
                if (std::string(e.what()).find(part) == std::string::npos)
                    r = testing::AssertionFailure() << "\"" << e.what() << "\" lacks \"" << part << "\"";
        }
        EXPECT_TRUE(r) << "case " << c.name;
    }
    EXPECT_TRUE(throws_error_with([&] { read_safetensors(path("missing.safetensors")); }, {"missing.safetensors"}));
}

TEST_F(Safetensors, TruncatedWrittenFileIsRejected) {
    const std::string p = path("full.safetensors");
    write_safetensors(p, sample_file());
    const std::string bytes = slurp(p);
    const std::string cut = write("cut.safetensors", bytes.substr(0, bytes.size() - 3));
    EXPECT_TRUE(throws_error_with([&] { read_safetensors(cut); }, {"cut.safetensors", "past the data buffer"}));
    const std::string header_cut = write("hcut.safetensors", bytes.substr(0, 20));
    EXPECT_TRUE(throws_error_with([&] { read_safetensors(header_cut); }, {"hcut.safetensors", "header length"}));
}

TEST_F(Safetensors, WriterRejectsWhatTheReaderWouldRefuse) {
    TensorFile nan;
    nan.tensors["w"] = {{2}, {0.0f, std::numeric_limits<float>::quiet_NaN()}};
    const std::string p = path("never.safetensors");
    EXPECT_TRUE(throws_error_with([&] { write_safetensors(p, nan); }, {"never.safetensors", "'w'", "NaN"}));
    TensorFile mismatch;
    mismatch.tensors["w"] = {{2, 2}, {1, 2, 3}};
    EXPECT_TRUE(throws_error_with([&] { write_safetensors(p, mismatch); }, {"'w'", "[2, 2]", "3 values"}));
    TensorFile reserved;
    reserved.tensors["__metadata__"] = {{1}, {1}};
    EXPECT_TRUE(throws_error_with([&] { write_safetensors(p, reserved); }, {"__metadata__"}));
    EXPECT_FALSE(fs::exists(p));
}

// ---- models --------------------------------------------------------------------------------------

using SafetensorsModel = SafetensorsDir;

namespace {

Model small_model() {
    Model m = Model::initialize(ModelSpec::parse("dense:3-5-2"), 11);
    // Values whose bits a lossy path would change.
    m.weight(0)[0] = -0.0f;
    m.weight(0)[1] = std::numeric_limits<float>::denorm_min();
    m.weight(0)[2] = 0.1f;
    m.weight(0)[14] = -std::numeric_limits<float>::max();
    m.bias(0)[4] = float_of(0x3EAAAAABu);  // 1/3 rounded
    m.weight(1)[9] = 1e-38f;
    m.bias(1)[0] = -7.0f;
    return m;
}

std::vector<float> weights_of(const Model& m, std::size_t i) {
    const ParamSegment& s = m.layout().segments.at(i);
    return std::vector<float>(m.weight(i), m.weight(i) + s.n_weights);
}
std::vector<float> biases_of(const Model& m, std::size_t i) {
    const ParamSegment& s = m.layout().segments.at(i);
    return std::vector<float>(m.bias(i), m.bias(i) + s.n_bias);
}

}  // namespace

TEST_F(SafetensorsModel, SaveLoadIsBitwiseAndKeepsMetadata) {
    const Model m = small_model();
    const std::string p = path("model.safetensors");
    save_model(p, m, {{"lambda", "0.001"}, {"seed", "11"}});

    std::map<std::string, std::string> meta;
    const Model back = load_model(p, &meta);
    EXPECT_EQ(back.spec().to_json(), m.spec().to_json());
    ASSERT_EQ(back.n_weight_layers(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
        EXPECT_TRUE(same_bits(weights_of(back, i), weights_of(m, i))) << "layer " << i;
        EXPECT_TRUE(same_bits(biases_of(back, i), biases_of(m, i))) << "layer " << i;
    }
    EXPECT_EQ(meta.at("format"), "sparseprox");
    EXPECT_EQ(meta.at("architecture"), m.spec().to_json());
    EXPECT_EQ(meta.at("lambda"), "0.001");
    EXPECT_EQ(meta.at("seed"), "11");
    EXPECT_NO_THROW(load_model(p));  // metadata out-parameter is optional

    // The tensors, as any safetensors reader sees them: PyTorch Linear's (out, in) layout.
    const TensorFile f = read_safetensors(p);
    EXPECT_EQ(f.tensors.size(), 4u);
    EXPECT_EQ(f.tensors.at("layers.0.weight").shape, (std::vector<std::size_t>{5, 3}));
    EXPECT_EQ(f.tensors.at("layers.0.bias").shape, (std::vector<std::size_t>{5}));
    EXPECT_EQ(f.tensors.at("layers.1.weight").shape, (std::vector<std::size_t>{2, 5}));
    EXPECT_EQ(f.tensors.at("layers.1.bias").shape, (std::vector<std::size_t>{2}));
    EXPECT_TRUE(same_bits(f.tensors.at("layers.1.weight").data, weights_of(m, 1)));
}

TEST_F(SafetensorsModel, LoadRejectsFilesThatDoNotFitTheArchitecture) {
    const Model m = small_model();
    const std::string good = path("good.safetensors");
    save_model(good, m);
    const TensorFile base = read_safetensors(good);

    TensorFile no_arch = base;
    no_arch.metadata.erase("architecture");
    const std::string p1 = path("no_arch.safetensors");
    write_safetensors(p1, no_arch);
    EXPECT_TRUE(throws_error_with([&] { load_model(p1); }, {"no_arch.safetensors", "architecture"}));

    TensorFile wrong_shape = base;
    wrong_shape.tensors["layers.1.weight"] = {{5, 2}, std::vector<float>(10, 0.5f)};
    const std::string p2 = path("shape.safetensors");
    write_safetensors(p2, wrong_shape);
    EXPECT_TRUE(throws_error_with([&] { load_model(p2); },
                                  {"shape.safetensors", "layers.1.weight", "expected shape [2, 5]", "found [5, 2]"}));

    TensorFile missing = base;
    missing.tensors.erase("layers.0.bias");
    const std::string p3 = path("missing.safetensors");
    write_safetensors(p3, missing);
    EXPECT_TRUE(throws_error_with([&] { load_model(p3); }, {"missing.safetensors", "layers.0.bias", "[5]"}));

    TensorFile extra = base;
    extra.tensors["layers.2.weight"] = {{1, 2}, {1, 2}};
    const std::string p4 = path("extra.safetensors");
    write_safetensors(p4, extra);
    EXPECT_TRUE(throws_error_with([&] { load_model(p4); }, {"extra.safetensors", "layers.2.weight"}));

    TensorFile bad_arch = base;
    bad_arch.metadata["architecture"] = "{not json";
    const std::string p5 = path("bad_arch.safetensors");
    write_safetensors(p5, bad_arch);
    EXPECT_TRUE(throws_error_with([&] { load_model(p5); }, {"bad_arch.safetensors"}));

    TensorFile other = base;
    other.metadata["format"] = "pt";
    const std::string p6 = path("other.safetensors");
    write_safetensors(p6, other);
    EXPECT_TRUE(throws_error_with([&] { load_model(p6); }, {"other.safetensors", "format 'pt'"}));

    // A value corrupted on disk is caught by the reader and named.
    std::string bytes;
    {
        std::ifstream in(good, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    for (std::size_t i = bytes.size() - 4; i < bytes.size(); ++i) bytes[i] = static_cast<char>(0xFF);  // a NaN
    const std::string p7 = write("nan.safetensors", bytes);
    EXPECT_TRUE(throws_error_with([&] { load_model(p7); }, {"nan.safetensors", "NaN"}));

    EXPECT_TRUE(throws_error_with(
        [&] {
            save_model(path("r.safetensors"), m, {{"format", "x"}});
        },
        {"format", "reserved"}));
    EXPECT_TRUE(throws_error_with([&] { load_model(path("absent.safetensors")); }, {"absent.safetensors"}));
}

TEST_F(SafetensorsModel, AClaimedArchitectureIsCheckedBeforeItIsAllocated) {
    // A small file whose metadata claims a network of 10^12 weights: the tensors it holds do not
    // fit, and that is the error (not an allocation of 4 TB).
    const Model m = small_model();
    const std::string good = path("good.safetensors");
    save_model(good, m);
    TensorFile claim = read_safetensors(good);
    claim.metadata["architecture"] = ModelSpec::parse("dense:3-1000000-1000000-2").to_json();
    const std::string p = path("claim.safetensors");
    write_safetensors(p, claim);
    EXPECT_TRUE(throws_error_with([&] { load_model(p); }, {"claim.safetensors", "layers.0.weight", "[1000000, 3]"}));
}

