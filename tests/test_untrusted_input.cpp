// Hostile inputs: deeply nested JSON, repeated keys, huge claimed sizes, and error messages that
// quote what they refuse without printing it whole.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "io/input_text.h"
#include "sparseprox/error.h"
#include "sparseprox/model.h"
#include "sparseprox/safetensors.h"
#include "test_util.h"

using namespace sparseprox;
using sparseprox::testing_util::throws_error_with;

namespace {

constexpr std::size_t kDeep = 200000;

std::string nested_array(std::size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

std::string safetensors_bytes(const std::string& header, std::size_t data_bytes = 0) {
    std::string s;
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
    s += header;
    s.append(data_bytes, '\0');
    return s;
}

using UntrustedFiles = sparseprox::testing_util::TempDirTest;

}  // namespace

// ---- messages ------------------------------------------------------------------------------------

TEST(Excerpt, EscapesControlBytesAndCapsLength) {
    EXPECT_EQ(excerpt("abc"), "abc");
    EXPECT_EQ(excerpt(std::string("1\0" "2", 3)), "1\\0" "2");
    EXPECT_EQ(excerpt("a\nb\tc\x01"), "a\\nb\\tc\\x01");
    const std::string long_text(10000, 'x');
    const std::string e = excerpt(long_text);
    EXPECT_LT(e.size(), 100u);
    EXPECT_NE(e.find("(10000 bytes)"), std::string::npos) << e;
    EXPECT_EQ(std::strlen(e.c_str()), e.size());
}

TEST(Excerpt, JsonValuesAreCutNotDumpedWhole) {
    nlohmann::json big = nlohmann::json::array();
    for (int i = 0; i < 100000; ++i) big.push_back(i);
    const std::string e = json_excerpt(big);
    EXPECT_LT(e.size(), 100u);
    EXPECT_EQ(e.rfind("[0,1,2,", 0), 0u) << e;
    EXPECT_EQ(json_excerpt(nlohmann::json::parse(R"({"a":[1,2]})")), R"({"a":[1,2]})");
}

// ---- JSON: depth and repeated keys --------------------------------------------------------------

TEST(UntrustedJson, DeepNestingIsRefusedWithoutRecursion) {
    EXPECT_TRUE(throws_error_with([] { parse_json_input(nested_array(kDeep), "test input"); },
                                  {"test input", "nested deeper than 64"}));
    EXPECT_NO_THROW(parse_json_input(nested_array(64), "test input"));
    EXPECT_TRUE(throws_error_with([] { parse_json_input(nested_array(65), "x"); }, {"deeper than 64"}));
}

TEST(UntrustedJson, ModelWithDeeplyNestedKernelFailsCleanly) {
    // The error path used to print the offending value with a recursive dump(): a stack overflow.
    const std::string text =
        R"({"input_shape": [1, 8, 8], "layers": [{"type": "conv2d", "filters": 1, "kernel": )" + nested_array(kDeep) +
        "}]}";
    EXPECT_TRUE(throws_error_with([&] { ModelSpec::from_json(text, "model file 'deep.json'"); },
                                  {"model file 'deep.json'", "nested deeper"}));
    // A value that is merely wrong (not deep) is quoted, capped.
    std::string wide = R"({"input_shape": [1, 8, 8], "layers": [{"type": "conv2d", "filters": 1, "kernel": [)";
    for (int i = 0; i < 50000; ++i) wide += "3,";
    wide += "3]}]}";
    try {
        ModelSpec::from_json(wide, "model");
        ADD_FAILURE() << "accepted a kernel of 50001 sizes";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("layers[0].kernel"), std::string::npos) << e.what();
        EXPECT_LT(std::strlen(e.what()), 400u) << e.what();
    }
}

TEST(UntrustedJson, RepeatedKeysAreRefused) {
    EXPECT_TRUE(throws_error_with(
        [] { ModelSpec::from_json(R"({"inputs": 6, "inputs": 7, "layers": [{"type": "dense", "units": 1}]})"); },
        {"\"inputs\"", "twice"}));
    EXPECT_TRUE(throws_error_with(
        [] {
            ModelSpec::from_json(R"({"inputs": 6, "layers": [{"type": "dense", "units": 4, "units": 1}]})");
        },
        {"\"units\"", "twice"}));
    // The same key in two different objects is fine.
    EXPECT_NO_THROW(ModelSpec::from_json(
        R"({"inputs": 6, "layers": [{"type": "dense", "units": 4}, {"type": "dense", "units": 1}]})"));
}

TEST_F(UntrustedFiles, ModelFileWithDeepNestingFailsCleanly) {
    const std::string p = write("deep.json", R"({"inputs": 6, "layers": )" + nested_array(kDeep) + "}");
    EXPECT_TRUE(throws_error_with([&] { ModelSpec::parse(p); }, {p, "nested deeper"}));
}

TEST_F(UntrustedFiles, SafetensorsHeaderWithDeepNestingFailsCleanly) {
    const std::string p = write("deep.safetensors",
                                safetensors_bytes(R"({"w":{"dtype":"F32","shape":)" + nested_array(kDeep) +
                                                  R"(,"data_offsets":[0,0]}})"));
    EXPECT_TRUE(throws_error_with([&] { read_safetensors(p); }, {p, "nested deeper"}));
    EXPECT_TRUE(throws_error_with([&] { load_model(p); }, {p, "nested deeper"}));
    // Shallow but wrong: the shape is quoted, capped.
    std::string wide = "[";
    for (int i = 0; i < 50000; ++i) wide += "[1],";
    wide += "[1]]";
    const std::string q =
        write("wide.safetensors", safetensors_bytes(R"({"w":{"dtype":"F32","shape":)" + wide + R"(,"data_offsets":[0,0]}})"));
    try {
        read_safetensors(q);
        ADD_FAILURE() << "accepted a shape of arrays";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not a list of sizes"), std::string::npos) << e.what();
        EXPECT_LT(std::strlen(e.what()), 400u + q.size()) << e.what();
    }
}

TEST_F(UntrustedFiles, SafetensorsHeaderWithARepeatedTensorIsRefused) {
    const std::string entry = R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    const std::string p = write("twice.safetensors", safetensors_bytes("{" + entry + "," + entry + "}", 4));
    EXPECT_TRUE(throws_error_with([&] { read_safetensors(p); }, {p, "\"w\"", "twice"}));
}

TEST_F(UntrustedFiles, LongNamesAndValuesAreElidedInMessages) {
    const std::string name(100000, 'n');
    const std::string p =
        write("longname.safetensors", safetensors_bytes(R"({")" + name + R"(":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})", 2));
    try {
        read_safetensors(p);
        ADD_FAILURE() << "accepted F16";
    } catch (const Error& e) {
        EXPECT_LT(std::strlen(e.what()), 400u + p.size()) << e.what();
        EXPECT_NE(std::string(e.what()).find("(100000 bytes)"), std::string::npos);
    }
}

// ---- sizes ----------------------------------------------------------------------------------------

TEST(UntrustedSizes, LayerWeightCountsCannotWrap) {
    // 2^40 inputs x 2^24 units = 2^64 weights: the count used to wrap to 0.
    EXPECT_TRUE(throws_error_with(
        [] {
            ModelSpec::from_json(
                R"({"input_shape": [1, 1048576, 1048576], "layers": [{"type": "dense", "units": 16777216}]})",
                "model file 'wrap.json'");
        },
        {"model file 'wrap.json'", "layer 0 (dense)", "limit of 2^40 weights", "16777216 units"}));
    // Below the limit in each layer, above it together.
    EXPECT_TRUE(throws_error_with([] { ModelSpec::parse("dense:1048576-1048576-1048576-1"); },
                                  {"layer 2 (dense)", "limit of 2^40 weights", "in the layers before"}));
    // Convolutions: every factor below 2^31, the product far above.
    EXPECT_TRUE(throws_error_with(
        [] {
            ModelSpec::from_json(
                R"({"input_shape": [2147483648, 1, 1], "layers": [{"type": "conv2d", "filters": 2147483648, "kernel": 1}]})");
        },
        {"conv2d", "limit of 2^40 weights"}));
    const ModelSpec ok = ModelSpec::parse("dense:1048576-1048575-1");
    EXPECT_EQ(ok.n_weights(), std::size_t{1048576} * 1048575 + 1048575);
}
