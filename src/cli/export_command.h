// `sparseprox export`: a saved model in another form (PyTorch, ONNX through a script, CSR
// arrays, the compacted network).
#pragma once

#include <set>
#include <string>

#include <CLI/CLI.hpp>

namespace sparseprox {
namespace cli {

struct ExportFlags {
    std::string model;   // a model file written by --save
    std::string to;      // torch, csr or compact
    std::string out;     // the file to write
    std::string report;  // JSON
    bool quiet = false;
    std::set<std::string> given;
    bool has(const char* flag) const { return given.count(flag) > 0; }
};

void add_export_flags(CLI::App& app, ExportFlags& f);
int run_export(const ExportFlags& f);

}  // namespace cli
}  // namespace sparseprox
