// sparseprox._sparseprox: the Python module over the public C++ API (include/sparseprox/*.h).
//
// Arrays come in as nanobind ndarrays (NumPy arrays and any DLPack tensor on the CPU, PyTorch's
// included) of any dtype and strides; they are checked (dtype, shape, finite values, class
// range) and copied once, converting to float32 on the way, into the library's Dataset, which
// owns its rows. Model parameters go out as NumPy views into the model's slab, without a copy.
// Training and search run with the GIL released; the progress hook takes it back to check for
// signals (Ctrl-C raises KeyboardInterrupt there, which unwinds the run) and to call the user's
// callback. The keyword handling and the defaults live in python/sparseprox/__init__.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "sparseprox/sparseprox.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace sp = sparseprox;

namespace {

// ---- exceptions -----------------------------------------------------------------------------------

PyObject* g_error = nullptr;           // sparseprox.Error: a ValueError and a RuntimeError
PyObject* g_diverged_error = nullptr;  // sparseprox.DivergedError(Error)

// ---- arrays in ------------------------------------------------------------------------------------

using AnyArray = nb::ndarray<nb::ro>;  // any dtype, shape, strides and device

std::string dtype_name(const nb::dlpack::dtype& t) {
    const char* kind = "?";
    switch (static_cast<nb::dlpack::dtype_code>(t.code)) {
        case nb::dlpack::dtype_code::Int: kind = "int"; break;
        case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
        case nb::dlpack::dtype_code::Float: kind = "float"; break;
        case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
        case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
        case nb::dlpack::dtype_code::Bool: return "bool";
        default: break;
    }
    return std::string(kind) + std::to_string(t.bits);
}

std::string shape_text(const AnyArray& a) {
    std::string s = "(";
    for (std::size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_cpu(const AnyArray& a, const char* what) {
    if (a.device_type() != nb::device::cpu::value)
        throw nb::value_error((std::string(what) + ": the array lives on a device other than the CPU; move it to "
                               "the CPU first (tensor.cpu())").c_str());
}

bool is_float(const AnyArray& a) {
    return a.dtype().code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) &&
           (a.dtype().bits == 32 || a.dtype().bits == 64) && a.dtype().lanes == 1;
}
bool is_integer(const AnyArray& a) {
    const auto c = static_cast<nb::dlpack::dtype_code>(a.dtype().code);
    return (c == nb::dlpack::dtype_code::Int || c == nb::dlpack::dtype_code::UInt) && a.dtype().lanes == 1 &&
           (a.dtype().bits == 8 || a.dtype().bits == 16 || a.dtype().bits == 32 || a.dtype().bits == 64);
}

// Element i (row-major over the array's shape) read through its strides, as T.
template <class T>
T element_at(const AnyArray& a, const std::vector<std::int64_t>& index) {
    std::int64_t offset = 0;
    for (std::size_t d = 0; d < index.size(); ++d) offset += index[d] * a.stride(d);
    const char* base = static_cast<const char*>(a.data()) + offset * static_cast<std::int64_t>(a.dtype().bits / 8);
    const auto code = static_cast<nb::dlpack::dtype_code>(a.dtype().code);
    switch (a.dtype().bits) {
        case 8: return code == nb::dlpack::dtype_code::Int ? static_cast<T>(*reinterpret_cast<const std::int8_t*>(base))
                                                           : static_cast<T>(*reinterpret_cast<const std::uint8_t*>(base));
        case 16: return code == nb::dlpack::dtype_code::Int ? static_cast<T>(*reinterpret_cast<const std::int16_t*>(base))
                                                            : static_cast<T>(*reinterpret_cast<const std::uint16_t*>(base));
        case 32:
            if (code == nb::dlpack::dtype_code::Float) return static_cast<T>(*reinterpret_cast<const float*>(base));
            return code == nb::dlpack::dtype_code::Int ? static_cast<T>(*reinterpret_cast<const std::int32_t*>(base))
                                                       : static_cast<T>(*reinterpret_cast<const std::uint32_t*>(base));
        default:
            if (code == nb::dlpack::dtype_code::Float) return static_cast<T>(*reinterpret_cast<const double*>(base));
            return code == nb::dlpack::dtype_code::Int ? static_cast<T>(*reinterpret_cast<const std::int64_t*>(base))
                                                       : static_cast<T>(*reinterpret_cast<const std::uint64_t*>(base));
    }
}

bool c_contiguous(const AnyArray& a) {
    std::int64_t expect = 1;
    for (std::size_t d = a.ndim(); d-- > 0;) {
        if (a.shape(d) != 1 && a.stride(d) != expect) return false;
        expect *= static_cast<std::int64_t>(a.shape(d));
    }
    return true;
}

// Every element in row-major order, through the strides; f(flat_index, value).
template <class T, class F>
void for_each_element(const AnyArray& a, F&& f) {
    const std::size_t n = a.size();
    if (n == 0) return;
    if (c_contiguous(a) && is_float(a)) {
        if (a.dtype().bits == 32) {
            const float* p = static_cast<const float*>(a.data());
            for (std::size_t i = 0; i < n; ++i) f(i, static_cast<T>(p[i]));
        } else {
            const double* p = static_cast<const double*>(a.data());
            for (std::size_t i = 0; i < n; ++i) f(i, static_cast<T>(p[i]));
        }
        return;
    }
    std::vector<std::int64_t> index(a.ndim(), 0);
    for (std::size_t i = 0; i < n; ++i) {
        f(i, element_at<T>(a, index));
        for (std::size_t d = a.ndim(); d-- > 0;) {
            if (++index[d] < static_cast<std::int64_t>(a.shape(d))) break;
            index[d] = 0;
        }
    }
}

// "X[12, 3]" for flat element i of an array of this shape.
std::string index_text(const char* what, const AnyArray& a, std::size_t i) {
    std::vector<std::size_t> idx(a.ndim());
    for (std::size_t d = a.ndim(); d-- > 0;) {
        idx[d] = i % a.shape(d);
        i /= a.shape(d);
    }
    std::string s = std::string(what) + "[";
    for (std::size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
    return s + "]";
}

std::string number_text(double v) {
    std::ostringstream s;
    s.precision(9);
    s << v;
    return s.str();
}

// The floats of `a` (float32 or float64, any order) into out, each checked finite in float32.
void copy_floats(const AnyArray& a, const char* what, float* out) {
    if (!is_float(a))
        throw nb::type_error((std::string(what) + ": dtype " + dtype_name(a.dtype()) +
                              " is not supported (give float32 or float64)").c_str());
    if (c_contiguous(a) && a.dtype().bits == 32) {
        std::memcpy(out, a.data(), a.size() * sizeof(float));
    } else {
        for_each_element<float>(a, [&](std::size_t i, float v) { out[i] = v; });
    }
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!std::isfinite(out[i])) {
            double v = out[i];
            if (!c_contiguous(a) || a.dtype().bits != 32) {
                for_each_element<double>(a, [&](std::size_t k, double x) {
                    if (k == i) v = x;
                });
            }
            const std::string why = std::isnan(v)        ? "is NaN"
                                    : std::isinf(v)      ? "is infinite"
                                                         : "= " + number_text(v) + " overflows float32";
            throw nb::value_error((index_text(what, a, i) + " " + why + ": every value must be finite").c_str());
        }
}

// The model's expected input, for messages: "6 features" or "(1, 28, 28) images".
std::string input_text(const sp::ModelSpec& spec) {
    if (spec.input_shape.is_flat()) return std::to_string(spec.n_inputs) + " features";
    return "inputs of shape " + spec.input_shape.to_string() + " (" + std::to_string(spec.n_inputs) + " features)";
}

// X of shape (n, features) or (n, c, h, w) against the model's input.
std::size_t check_x(const AnyArray& x, const char* what, const sp::ModelSpec& spec) {
    check_cpu(x, what);
    if (x.ndim() == 2) {
        if (x.shape(1) != spec.n_inputs)
            throw nb::value_error((std::string(what) + " has shape " + shape_text(x) + ": " + std::to_string(x.shape(1)) +
                                   " features per row, but the model takes " + input_text(spec)).c_str());
    } else if (x.ndim() == 4) {
        const sp::SampleShape s{x.shape(1), x.shape(2), x.shape(3)};
        if (s != spec.input_shape)
            throw nb::value_error((std::string(what) + " has shape " + shape_text(x) + ": samples of shape " +
                                   s.to_string() + ", but the model takes " + input_text(spec)).c_str());
    } else {
        throw nb::value_error((std::string(what) + " has shape " + shape_text(x) + ": give (n_samples, n_features) or "
                               "(n_samples, channels, height, width) (the model takes " + input_text(spec) + ")").c_str());
    }
    if (x.shape(0) == 0) throw nb::value_error((std::string(what) + " has no rows").c_str());
    return x.shape(0);
}

// A data set for `spec` from X and y: integer y is class indices (classification), float y
// regression targets, (n,) for one output or (n, k).
sp::Dataset make_dataset(const AnyArray& x, const AnyArray& y, const sp::ModelSpec& spec, const char* x_what,
                         const char* y_what, const std::string& name) {
    const std::size_t n = check_x(x, x_what, spec);
    check_cpu(y, y_what);
    if (y.ndim() == 0 || y.shape(0) != n)
        throw nb::value_error((std::string(y_what) + " has shape " + shape_text(y) + " but " + x_what + " has " +
                               std::to_string(n) + " rows: give one target (or class) per row").c_str());
    const std::size_t n_out = spec.n_outputs();
    sp::Dataset d;
    d.name = name;
    d.n_samples = n;
    d.n_features = spec.n_inputs;
    d.x.resize(n * spec.n_inputs);
    copy_floats(x, x_what, d.x.data());
    if (is_integer(y)) {
        if (y.ndim() != 1)
            throw nb::value_error((std::string(y_what) + " holds integers (class indices) of shape " + shape_text(y) +
                                   ": class indices are one per row, shape (" + std::to_string(n) + ",)").c_str());
        if (n_out < 2)
            throw nb::value_error((std::string(y_what) + " holds integers (class indices), but the model has " +
                                   std::to_string(n_out) + " output: classification needs one output per class; for "
                                   "regression give float targets").c_str());
        d.task = sp::Task::classification;
        d.n_outputs = n_out;
        d.labels.resize(n);
        std::string bad;
        for_each_element<std::int64_t>(y, [&](std::size_t i, std::int64_t v) {
            if (bad.empty() && (v < 0 || static_cast<std::uint64_t>(v) >= n_out))
                bad = std::string(y_what) + "[" + std::to_string(i) + "] = " + std::to_string(v) +
                      " is not a class of the model's " + std::to_string(n_out) + " outputs (classes 0 to " +
                      std::to_string(n_out - 1) + ")";
            d.labels[i] = static_cast<std::int32_t>(v);
        });
        // uint64 above INT64_MAX reads as negative: caught above.
        if (!bad.empty()) throw nb::value_error(bad.c_str());
    } else if (is_float(y)) {
        const std::size_t k = y.ndim() == 1 ? 1 : y.shape(1);
        if (y.ndim() > 2 || k != n_out)
            throw nb::value_error((std::string(y_what) + " holds floats (regression targets) of shape " + shape_text(y) +
                                   ", but the model has " + std::to_string(n_out) + " outputs: give shape (" +
                                   std::to_string(n) + ", " + std::to_string(n_out) + ")" +
                                   (n_out > 1 ? ", or integer class indices for classification" : " or (" +
                                                                                                      std::to_string(n) + ",)"))
                                      .c_str());
        d.task = sp::Task::regression;
        d.n_outputs = n_out;
        d.y.resize(n * n_out);
        copy_floats(y, y_what, d.y.data());
    } else {
        throw nb::type_error((std::string(y_what) + ": dtype " + dtype_name(y.dtype()) +
                              " is not supported (integer class indices, or float32/float64 regression targets)")
                                 .c_str());
    }
    d.validate();
    return d;
}

// ---- arrays out -----------------------------------------------------------------------------------

using FloatArray = nb::ndarray<nb::numpy, float>;

// A NumPy array that owns `values` (moved onto the heap, freed with the array).
FloatArray owned_array(std::vector<float>&& values, std::vector<std::size_t> shape) {
    auto* heap = new std::vector<float>(std::move(values));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
    return FloatArray(heap->data(), shape.size(), shape.data(), owner);
}

// ---- models ---------------------------------------------------------------------------------------

bool looks_like_safetensors(const std::string& text) {
    if (text.size() >= 12 && text.compare(text.size() - 12, 12, ".safetensors") == 0) return true;
    return false;
}

sp::Model make_model(const std::string& spec_or_path, std::uint64_t seed) {
    if (looks_like_safetensors(spec_or_path)) return sp::load_model(spec_or_path);
    return sp::Model::initialize(sp::ModelSpec::parse(spec_or_path), seed);
}

// A weight layer of a model: views into its parameters.
struct LayerView {
    nb::object model;  // the Python Model, kept alive by every view
    std::size_t index = 0;

    sp::Model& get() const { return nb::cast<sp::Model&>(model); }
};

FloatArray weight_view(const LayerView& v) {
    sp::Model& m = v.get();
    const auto& shape = m.weight_shape(v.index);
    return FloatArray(m.weights(v.index).data(), shape.size(), shape.data(), v.model);
}
FloatArray bias_view(const LayerView& v) {
    sp::Model& m = v.get();
    const std::size_t n = m.biases(v.index).size();
    return FloatArray(m.biases(v.index).data(), {n}, v.model);
}

const sp::LayerSpec& layer_spec(const sp::Model& m, std::size_t weight_layer) {
    return m.spec().layers.at(m.layout().segments.at(weight_layer).layer);
}

nb::tuple shape_tuple(const sp::SampleShape& s) { return nb::make_tuple(s.channels, s.height, s.width); }

// The architecture as a list of dicts, one per layer (for to_torch and inspection).
nb::list architecture(const sp::ModelSpec& spec) {
    nb::list out;
    for (const sp::LayerSpec& l : spec.layers) {
        nb::dict d;
        d["type"] = sp::to_string(l.kind);
        d["n_in"] = l.n_in;
        d["n_out"] = l.n_out;
        d["in_shape"] = shape_tuple(l.in_shape);
        d["out_shape"] = shape_tuple(l.out_shape);
        if (l.kind == sp::LayerKind::activation) d["activation"] = sp::to_string(l.activation);
        if (l.kind == sp::LayerKind::conv2d || l.kind == sp::LayerKind::maxpool2d || l.kind == sp::LayerKind::avgpool2d) {
            d["kernel"] = nb::make_tuple(l.kh, l.kw);
            d["stride"] = nb::make_tuple(l.stride_h, l.stride_w);
            d["padding"] = nb::make_tuple(l.pad_h, l.pad_w);
        }
        out.append(d);
    }
    return out;
}

FloatArray predict(const sp::Model& model, const AnyArray& x, const std::string& device) {
    const sp::ModelSpec& spec = model.spec();
    const std::size_t n = check_x(x, "X", spec);
    std::vector<float> rows(n * spec.n_inputs);
    copy_floats(x, "X", rows.data());
    const sp::Device dev = sp::parse_device(device);
    std::vector<float> out;
    {
        nb::gil_scoped_release release;
        out = model.predict(rows, dev);
    }
    return owned_array(std::move(out), {n, spec.n_outputs()});
}

// ---- options from the Python layer ----------------------------------------------------------------

template <class T>
T opt(const nb::dict& d, const char* key) {
    if (!d.contains(key)) throw std::logic_error(std::string("sparseprox: internal: option '") + key + "' missing");
    return nb::cast<T>(d[key]);
}

std::vector<std::size_t> density_targets(const std::vector<double>& d, const sp::ModelSpec& spec) {
    for (double x : d)
        if (!(x > 0.0 && x <= 1.0)) throw sp::Error("target_density: " + number_text(x) + " is outside (0, 1]");
    const sp::ParamLayout layout = sp::ParamLayout::of(spec);
    std::vector<std::size_t> targets;
    if (d.size() == 1) {
        // The same rounding as the command line's --target-density (a float there).
        const float f = static_cast<float>(d[0]);
        targets.push_back(std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(f * spec.n_weights()))));
    } else {
        if (d.size() != layout.segments.size())
            throw sp::Error("target_density: got " + std::to_string(d.size()) + " values but the model has " +
                            std::to_string(layout.segments.size()) + " weight layers");
        for (std::size_t l = 0; l < d.size(); ++l) {
            const float f = static_cast<float>(d[l]);
            targets.push_back(std::max<std::size_t>(
                1, static_cast<std::size_t>(std::llround(f * static_cast<double>(layout.segments[l].n_weights)))));
        }
    }
    return targets;
}

struct RunSetup {
    sp::TrainOptions options;
    bool classification = false;
    std::string data_name, test_name;
    std::size_t train_rows = 0, test_rows = 0;
    std::uint64_t seed = 0;
    float lr = 0.1f;
};

// TrainOptions from the keyword dict the Python layer filled (every key present, defaults applied).
RunSetup make_options(const nb::dict& o, const sp::ModelSpec& spec, const sp::Dataset& train_set,
                      bool with_lambda) {
    RunSetup s;
    sp::TrainOptions& t = s.options;
    s.classification = train_set.task == sp::Task::classification;
    t.device = sp::parse_device(opt<std::string>(o, "device"));
    t.lr = opt<float>(o, "lr");
    s.lr = t.lr;
    if (with_lambda) t.lambdas = opt<std::vector<float>>(o, "lam");
    t.weight_decay = opt<float>(o, "weight_decay");
    if (!(std::isfinite(t.weight_decay) && t.weight_decay >= 0))
        throw sp::Error("weight_decay: " + number_text(t.weight_decay) + " must be finite and >= 0");
    nb::object batch = o["batch"];
    if (batch.is_none()) {
        t.batch_size = s.classification ? 128 : 0;
    } else if (nb::isinstance<nb::str>(batch)) {
        if (nb::cast<std::string>(batch) != "full")
            throw sp::Error("batch: '" + nb::cast<std::string>(batch) + "' (give a positive size or 'full')");
        t.batch_size = 0;
    } else {
        const std::int64_t b = nb::cast<std::int64_t>(batch);
        if (b <= 0) throw sp::Error("batch: " + std::to_string(b) + " (give a positive size or 'full')");
        t.batch_size = static_cast<std::size_t>(b);
        if (t.batch_size > train_set.n_samples)
            throw sp::Error("batch " + std::to_string(b) + " is larger than the " + std::to_string(train_set.n_samples) +
                            " training rows (give at most that many, or 'full')");
    }
    t.epochs = opt<std::size_t>(o, "epochs");
    t.steps = opt<std::size_t>(o, "steps");
    if (t.epochs == 0 && t.steps == 0) {
        if (s.classification) t.epochs = 5;
        else t.steps = 5000;
    }
    s.seed = opt<std::uint64_t>(o, "seed");
    t.seed = s.seed;
    sp::MethodOptions& m = t.method;
    m.method = sp::parse_method(opt<std::string>(o, "method"));
    m.l1.form = sp::parse_l1_form(opt<std::string>(o, "l1_form"));
    if (m.method != sp::Method::l1 && m.l1.form != sp::L1Form::automatic)
        throw sp::Error("l1_form applies to method='l1' only");
    t.stop.targets = opt<std::vector<std::size_t>>(o, "target_nnz");
    t.stop.tolerance = opt<double>(o, "tolerance");
    if (!(t.stop.tolerance >= 0 && t.stop.tolerance < 1))
        throw sp::Error("tolerance: " + number_text(t.stop.tolerance) + " is outside [0, 1)");
    t.stop.min_layers = opt<std::size_t>(o, "min_layers");
    sp::OptimizerOptions& op = t.optimizer;
    op.kind = sp::parse_optimizer(opt<std::string>(o, "optimizer"));
    op.momentum = opt<float>(o, "momentum");
    op.beta1 = opt<float>(o, "beta1");
    op.beta2 = opt<float>(o, "beta2");
    op.eps = opt<float>(o, "adam_eps");
    sp::LrSchedule& ls = t.lr_schedule;
    ls.kind = sp::parse_lr_schedule(opt<std::string>(o, "lr_schedule"));
    ls.step_every = opt<std::size_t>(o, "lr_step_every");
    ls.gamma = opt<float>(o, "lr_gamma");
    ls.lr_min = opt<float>(o, "lr_min");
    ls.warmup_steps = opt<std::size_t>(o, "warmup_steps");
    t.finetune = opt<bool>(o, "finetune");
    t.finetune_lr = opt<float>(o, "finetune_lr");
    // Under mpirun: every rank trains the same run (README, "Distributed training").
    if (opt<bool>(o, "distributed")) t.communicator = sp::Communicator::world();
    const double comm_timeout = opt<double>(o, "comm_timeout");
    if (comm_timeout != 0.0) {
        if (!t.communicator.distributed())
            throw sp::Error("comm_timeout applies to distributed=True under mpirun (this is one process)");
        try {
            t.communicator.set_timeout(comm_timeout);
        } catch (const sp::Error& e) {
            throw sp::Error(std::string("comm_timeout: ") + e.what());
        }
    }
    nb::object loss = o["loss"];
    if (!loss.is_none()) t.loss = sp::parse_loss(nb::cast<std::string>(loss));
    (void)spec;
    return s;
}

// ---- the report: the keys of the command line's JSON report (src/cli) ------------------------------

nb::object number_or_none(double v) { return std::isfinite(v) ? nb::object(nb::float_(v)) : nb::none(); }

// A float setting as the command line's report stores it: the shortest decimal that reads back
// as the same float (0.1, not 0.10000000149011612).
nb::object float_setting(float v) { return number_or_none(sp::shortest_decimal(v)); }

template <class T>
nb::list to_list(const std::vector<T>& v) {
    nb::list l;
    for (const T& x : v) l.append(x);
    return l;
}
nb::list floats_to_list(const std::vector<float>& v) {
    nb::list l;
    for (float x : v) l.append(static_cast<double>(x));
    return l;
}

nb::dict optimizer_report(const sp::OptimizerOptions& o) {
    nb::dict j;
    j["kind"] = sp::optimizer_name(o.kind);
    switch (o.kind) {
        case sp::OptimizerKind::sgd: break;
        case sp::OptimizerKind::momentum:
        case sp::OptimizerKind::nesterov: j["momentum"] = float_setting(o.momentum); break;
        case sp::OptimizerKind::adam:
        case sp::OptimizerKind::adamw:
            j["beta1"] = float_setting(o.beta1);
            j["beta2"] = float_setting(o.beta2);
            j["eps"] = float_setting(o.eps);
            break;
    }
    return j;
}

nb::dict setup_report(const char* command, const RunSetup& s, const sp::ModelSpec& spec) {
    const sp::TrainOptions& t = s.options;
    nb::dict j;
    j["command"] = command;
    j["version"] = sp::version();
    j["device"] = sp::describe_device(t.device);
    j["data"] = s.data_name;
    j["test_data"] = s.test_name.empty() ? nb::none() : nb::object(nb::str(s.test_name.c_str()));
    j["train_rows"] = s.train_rows;
    j["test_rows"] = s.test_rows;
    j["model"] = spec.to_short();
    const sp::Task task = s.classification ? sp::Task::classification : sp::Task::regression;
    j["loss"] = sp::to_string(t.loss.value_or(sp::default_loss(task)));
    // Data from memory: no source or split; the task, input shape and outputs (model_info.h).
    sp::ModelInfo info;
    info.data = sp::DataPreparation::of("", sp::DataOptions{}, task, spec.n_outputs(), spec.input_shape);
    j["data_preparation"] = nb::module_::import_("json").attr("loads")(sp::to_metadata(info).at("data"));
    j["lr"] = float_setting(s.lr);
    j["weight_decay"] = float_setting(t.weight_decay);
    j["batch"] = t.batch_size == 0 ? nb::object(nb::str("full")) : nb::object(nb::int_(t.batch_size));
    j["seed"] = s.seed;
    j["init"] = nb::none();
    j["optimizer"] = optimizer_report(t.optimizer);
    nb::dict ls;
    ls["kind"] = sp::lr_schedule_name(t.lr_schedule.kind);
    ls["step_every"] = t.lr_schedule.step_every;
    ls["gamma"] = float_setting(t.lr_schedule.gamma);
    ls["lr_min"] = float_setting(t.lr_schedule.lr_min);
    ls["warmup_steps"] = t.lr_schedule.warmup_steps;
    j["lr_schedule"] = ls;
    j["method"] = sp::to_string(t.method.method);
    nb::dict mo;
    switch (t.method.method) {
        case sp::Method::l1:
            // The form the run used: train's auto is the greedy step; search resolves its own.
            mo["form"] = sp::to_string(t.method.l1.form == sp::L1Form::lazy ? sp::L1Form::lazy : sp::L1Form::greedy);
            break;
        case sp::Method::l0:
            mo["group"] = t.method.l0.group;
            mo["gate_lr"] = float_setting(t.method.l0.gate_lr);
            mo["drop_init"] = float_setting(t.method.l0.drop_init);
            mo["drop_init_first"] = float_setting(t.method.l0.drop_init_first);
            mo["beta"] = float_setting(t.method.l0.beta);
            mo["gamma"] = float_setting(t.method.l0.gamma);
            mo["zeta"] = float_setting(t.method.l0.zeta);
            break;
        case sp::Method::spred: mo["threshold"] = float_setting(t.method.spred.threshold); break;
        case sp::Method::gmp:
            mo["begin"] = t.method.gmp.begin;
            mo["end"] = t.method.gmp.end;
            mo["interval"] = t.method.gmp.interval;
            mo["per_layer"] = t.method.gmp.per_layer;
            break;
    }
    j["method_options"] = mo;
    j["n_weights_total"] = spec.n_weights();
    j["target_nnz"] = to_list(t.stop.targets);
    j["tolerance"] = t.stop.tolerance;
    j["min_layers"] = t.stop.min_layers;
    j["finetune"] = t.finetune;
    j["finetune_lr"] = float_setting(t.finetune_lr > 0.0f ? t.finetune_lr : t.lr);
    return j;
}

nb::dict run_report(const char* command, const RunSetup& s, const sp::ModelSpec& spec, const sp::TrainResult& r) {
    nb::dict j = setup_report(command, s, spec);
    const auto& segs = r.model.layout().segments;
    nb::list layers;
    for (std::size_t l = 0; l < segs.size(); ++l) {
        nb::dict d;
        d["name"] = "layers." + std::to_string(l);
        d["shape"] = to_list(segs[l].weight_shape);
        d["n_weights"] = segs[l].n_weights;
        d["nnz"] = r.nnz[l];
        d["alive_units"] = r.alive.size() > l ? r.alive[l] : 0;
        d["lambda"] = float_setting(r.lambdas[l]);
        layers.append(d);
    }
    j["layers"] = layers;
    j["nnz_total"] = r.model.nnz_total();
    j["train_loss"] = number_or_none(r.train_eval.loss);
    j["test_loss"] = number_or_none(r.test_eval.loss);
    j["train_accuracy"] = s.classification ? number_or_none(r.train_eval.accuracy) : nb::none();
    j["test_accuracy"] = s.classification && s.test_rows > 0 ? number_or_none(r.test_eval.accuracy) : nb::none();
    j["steps"] = r.steps;
    j["finetune_steps"] = r.finetune_steps;
    j["epochs_started"] = r.epochs_started;
    j["stopped_in_band"] = r.stopped_in_band;
    j["wall_seconds"] = r.wall_seconds;
    j["samples_per_second"] = r.samples_per_second;
    j["diverged"] = false;
    return j;
}

std::size_t total(const std::vector<std::size_t>& v) {
    std::size_t t = 0;
    for (auto n : v) t += n;
    return t;
}

nb::dict iteration_dict(const sp::SearchIteration& it, bool classification) {
    nb::dict j;
    j["iteration"] = it.index;
    j["rule"] = sp::to_string(it.rule);
    if (!it.layer_rules.empty()) {
        nb::list rules;
        for (sp::LambdaRule r : it.layer_rules) rules.append(sp::to_string(r));
        j["layer_rules"] = rules;
    }
    j["lambda"] = floats_to_list(it.lambdas);
    j["candidates"] = to_list(it.n_candidates);
    j["nnz"] = to_list(it.nnz);
    j["nnz_total"] = total(it.nnz);
    j["steps"] = it.steps;
    j["finetune_steps"] = it.finetune_steps;
    j["total_steps"] = it.total_steps;
    j["in_band"] = it.in_band;
    j["train_loss"] = number_or_none(it.train_loss);
    j["test_loss"] = number_or_none(it.test_loss);
    j["test_accuracy"] = classification && it.test_accuracy >= 0 ? number_or_none(it.test_accuracy) : nb::none();
    j["seconds"] = it.seconds;
    j["elapsed_seconds"] = it.elapsed_seconds;
    j["round"] = it.round;
    j["rank"] = it.rank;
    return j;
}

// ---- progress, signals ----------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

// The library's progress hook, called on the training thread with the GIL released. It takes
// the GIL, runs Python's signal handlers (Ctrl-C raises KeyboardInterrupt there) and calls the
// user's callback at most every `every` seconds. A Python exception leaves as nb::python_error
// and unwinds the run (the library holds its state in RAII objects); nanobind raises it again
// when the call returns to Python.
struct ProgressBridge {
    nb::object callback;  // None: signals only
    double every = 2.0;
    std::size_t n_weights = 0;
    Clock::time_point last = Clock::now() - std::chrono::hours(1);

    // How often the library should call in: often enough for Ctrl-C to feel immediate.
    double hook_seconds() const { return every > 0 ? std::min(every, 0.2) : 0.2; }

    void on_progress(const sp::Progress& p) {
        nb::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw nb::python_error();
        if (callback.is_none() || every <= 0) return;
        const auto now = Clock::now();
        if (std::chrono::duration<double>(now - last).count() < every) return;
        last = now;
        nb::dict d;
        d["event"] = "progress";
        d["epoch"] = p.epoch;
        d["step"] = p.step;
        d["loss"] = p.loss;
        const std::size_t nnz = total(p.nnz);
        d["nnz"] = nnz;
        d["nnz_per_layer"] = to_list(p.nnz);
        d["density"] = n_weights ? static_cast<double>(nnz) / static_cast<double>(n_weights) : 0.0;
        d["samples_per_second"] = p.samples_per_second;
        d["seconds"] = p.seconds;
        callback(d);
    }

    void on_iteration(const sp::SearchIteration& it, bool classification) {
        nb::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw nb::python_error();
        if (callback.is_none()) return;
        nb::dict d = iteration_dict(it, classification);
        d["event"] = "iteration";
        d["density"] = n_weights ? static_cast<double>(total(it.nnz)) / static_cast<double>(n_weights) : 0.0;
        callback(d);
    }

    void install(sp::TrainOptions& t) {
        t.progress_seconds = hook_seconds();
        t.on_progress = [this](const sp::Progress& p) { on_progress(p); };
    }
};

[[noreturn]] void raise_diverged(const sp::DivergedError& e, nb::dict report) {
    report["diverged"] = true;
    report["diverged_step"] = e.last_step();
    report["diverged_first_step"] = e.first_step();
    report["error"] = e.what();
    nb::object type = nb::borrow(g_diverged_error);
    nb::object exc = type(std::string(e.what()) + "; try a smaller lr");
    nb::setattr(exc, "first_step", nb::int_(e.first_step()));
    nb::setattr(exc, "last_step", nb::int_(e.last_step()));
    nb::setattr(exc, "report", report);
    PyErr_SetObject(g_diverged_error, exc.ptr());
    throw nb::python_error();
}

struct Inputs {
    sp::Dataset train, test;
    bool has_test = false;
};

Inputs make_inputs(const sp::Model& model, const AnyArray& x, const AnyArray& y, const std::optional<AnyArray>& x_test,
                   const std::optional<AnyArray>& y_test) {
    Inputs in;
    in.train = make_dataset(x, y, model.spec(), "X", "y", "array/train");
    if (x_test.has_value() != y_test.has_value()) throw nb::value_error("test: give (X_test, y_test)");
    if (x_test) {
        in.test = make_dataset(*x_test, *y_test, model.spec(), "X_test", "y_test", "array/test");
        if (in.test.task != in.train.task)
            throw nb::value_error("y_test holds a different kind of target than y (class indices against regression "
                                  "targets): give both as integers or both as floats");
        in.has_test = true;
    }
    return in;
}

std::string array_name(const char* what, const AnyArray& a) {
    return std::string(what) + " " + dtype_name(a.dtype()) + shape_text(a);
}

// The run's options from the keywords, with the names and row counts of its arrays.
RunSetup make_setup(const nb::dict& options, const sp::Model& model, const Inputs& in, const AnyArray& x,
                    const std::optional<AnyArray>& x_test, bool with_lambda) {
    RunSetup s = make_options(options, model.spec(), in.train, with_lambda);
    s.data_name = array_name("array", x);
    s.test_name = in.has_test ? array_name("array", *x_test) : "";
    s.train_rows = in.train.n_samples;
    s.test_rows = in.has_test ? in.test.n_samples : 0;
    return s;
}

nb::tuple train_py(const sp::Model& model, const AnyArray& x, const AnyArray& y, const std::optional<AnyArray>& x_test,
                   const std::optional<AnyArray>& y_test, const nb::dict& options, nb::object callback,
                   double progress_seconds) {
    Inputs in = make_inputs(model, x, y, x_test, y_test);
    RunSetup s = make_setup(options, model, in, x, x_test, true);
    s.options.validate(model.spec());
    ProgressBridge bridge{callback, progress_seconds, model.spec().n_weights()};
    bridge.install(s.options);
    sp::TrainResult r;
    try {
        nb::gil_scoped_release release;
        r = sp::train(model, in.train, in.has_test ? &in.test : nullptr, s.options);
    } catch (const sp::DivergedError& e) {
        raise_diverged(e, setup_report("train", s, model.spec()));
    }
    nb::dict report = run_report("train", s, model.spec(), r);
    return nb::make_tuple(std::move(r.model), report);
}

nb::tuple search_py(const sp::Model& model, const AnyArray& x, const AnyArray& y, const std::optional<AnyArray>& x_test,
                    const std::optional<AnyArray>& y_test, const nb::dict& options, nb::object callback,
                    double progress_seconds) {
    Inputs in = make_inputs(model, x, y, x_test, y_test);
    RunSetup s = make_setup(options, model, in, x, x_test, false);
    const auto densities = opt<std::vector<double>>(options, "target_density");
    const bool have_nnz = !s.options.stop.targets.empty(), have_density = !densities.empty();
    if (have_nnz == have_density)
        throw nb::value_error(have_nnz ? "give target_nnz or target_density, not both"
                                       : "a search needs a target: target_nnz=N (or one count per weight layer) or "
                                         "target_density=D");
    if (have_density) s.options.stop.targets = density_targets(densities, model.spec());

    sp::SearchOptions so;
    so.train = s.options;
    so.strategy = sp::choose_search_strategy(opt<std::string>(options, "strategy"), so.train);
    so.allocation = sp::parse_allocation(opt<std::string>(options, "allocation"));
    so.train.method.l1.form = sp::search_l1_form(so);  // auto resolved: the reports say which ran
    s.options.method.l1.form = so.train.method.l1.form;
    so.lambda0 = opt<std::vector<float>>(options, "lambda0");
    so.lambda1 = opt<float>(options, "lambda1");
    so.max_outer = opt<std::size_t>(options, "max_outer");
    so.adapt_interval = opt<std::size_t>(options, "adapt_interval");
    so.adapt_rate = opt<double>(options, "adapt_rate");
    so.adapt_rule = sp::parse_adapt_rule(opt<std::string>(options, "adapt_rule"));
    so.adapt_ramp = opt<std::size_t>(options, "adapt_ramp");
    so.start_rows = opt<std::size_t>(options, "start_rows");
    so.ranks_per_run = opt<std::size_t>(options, "ranks_per_run");
    so.stop_run0 = opt<bool>(options, "stop_run0");
    so.bisect_stalls = opt<bool>(options, "bisect_stalls");
    so.finetune = opt<bool>(options, "search_finetune");
    so.validate(model.spec());

    const bool classification = s.classification;
    ProgressBridge bridge{callback, progress_seconds, model.spec().n_weights()};
    bridge.install(so.train);
    so.on_iteration = [&](const sp::SearchIteration& it) { bridge.on_iteration(it, classification); };
    std::vector<sp::SearchIteration> done;  // for the report of a diverged search
    const auto forward = so.on_iteration;
    so.on_iteration = [&](const sp::SearchIteration& it) {
        done.push_back(it);
        forward(it);
    };
    sp::SearchResult r;
    try {
        nb::gil_scoped_release release;
        r = sp::search(model, in.train, in.has_test ? &in.test : nullptr, so);
    } catch (const sp::DivergedError& e) {
        nb::dict j = setup_report("search", s, model.spec());
        j["strategy"] = sp::to_string(so.strategy);
        nb::list its;
        for (const auto& it : done) its.append(iteration_dict(it, classification));
        j["search"] = its;
        raise_diverged(e, j);
    }
    // As the command line reports it: the fine-tuning the search applied.
    s.options.finetune = so.finetune || so.train.finetune;
    nb::dict j = run_report("search", s, model.spec(), r.run);
    j["strategy"] = sp::to_string(r.strategy);
    j["reached"] = r.reached;
    j["best_iteration"] = r.best_iteration;
    j["lambda_final"] = floats_to_list(r.lambda_final);
    j["lambda_start"] = floats_to_list(r.lambda_start);
    j["lambda_start_computed"] = r.lambda_start_computed;
    j["lambda_start_rows"] = r.lambda_start_rows;
    j["lambda1"] = static_cast<double>(so.lambda1);
    j["max_outer"] = so.max_outer;
    j["stop_run0"] = so.stop_run0;
    j["bisect_stalls"] = so.bisect_stalls;
    if (so.strategy == sp::SearchStrategy::adaptive) {
        j["adapt_interval"] = r.adapt_interval;
        j["adapt_rate"] = so.adapt_rate;
        j["adapt_rule"] = sp::to_string(so.adapt_rule);
        j["adapt_ramp"] = r.adapt_ramp;
        j["landing_step"] = r.landing_step;
        j["landed"] = r.landed;
        j["allocation"] = sp::to_string(r.allocation);
        nb::list targets;
        for (std::size_t t : r.layer_targets) targets.append(t);
        j["layer_targets"] = targets;
    }
    j["outer_iterations"] = r.outer_iterations;
    j["rounds"] = r.rounds;
    j["runs_per_round"] = r.parallel_runs;
    j["ranks_per_run"] = so.ranks_per_run == 0 ? static_cast<std::size_t>(so.train.communicator.size()) : so.ranks_per_run;
    j["total_steps"] = r.total_steps;
    j["search_wall_seconds"] = r.wall_seconds;
    nb::list its;
    for (const auto& it : r.iterations) its.append(iteration_dict(it, classification));
    j["search"] = its;
    return nb::make_tuple(std::move(r.run.model), j);
}

// ---- data sets ------------------------------------------------------------------------------------

nb::tuple dataset_arrays(sp::Dataset&& d) {
    const std::size_t n = d.n_samples, f = d.n_features;
    FloatArray x = owned_array(std::move(d.x), {n, f});
    nb::object y;
    if (d.task == sp::Task::classification) {
        auto* heap = new std::vector<std::int64_t>(d.labels.begin(), d.labels.end());
        nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<std::int64_t>*>(p); });
        y = nb::cast(nb::ndarray<nb::numpy, std::int64_t>(heap->data(), {n}, owner));
    } else if (d.n_outputs == 1) {
        y = nb::cast(owned_array(std::move(d.y), {n}));
    } else {
        y = nb::cast(owned_array(std::move(d.y), {n, d.n_outputs}));
    }
    return nb::make_tuple(nb::cast(x), y);
}

nb::tuple split_arrays(sp::DataSplit&& s) {
    nb::tuple train = dataset_arrays(std::move(s.train));
    nb::object test = s.test.n_samples ? nb::object(dataset_arrays(std::move(s.test))) : nb::none();
    return nb::make_tuple(train, test);
}

sp::PixelScale parse_pixel_scale(const std::string& s) {
    if (s == "symmetric") return sp::PixelScale::symmetric;
    if (s == "unit") return sp::PixelScale::unit;
    if (s == "raw") return sp::PixelScale::raw;
    throw sp::Error("pixel_scale: '" + s + "' (expected symmetric, unit or raw)");
}

}  // namespace

NB_MODULE(_sparseprox, m) {
    m.doc() = "SparseProx: sparse neural networks by l1 proximal training (the compiled core; use the sparseprox "
              "package).";

    // sparseprox.Error is both a ValueError (bad input, the common case) and a RuntimeError (a
    // failing backend call), so either `except` catches it.
    nb::object bases = nb::make_tuple(nb::handle(PyExc_ValueError), nb::handle(PyExc_RuntimeError));
    g_error = PyErr_NewExceptionWithDoc("sparseprox.Error",
                                        "Raised by every SparseProx call on bad input or a failing backend call; the "
                                        "message names the file, field or value at fault.",
                                        bases.ptr(), nullptr);
    g_diverged_error = PyErr_NewExceptionWithDoc(
        "sparseprox.DivergedError",
        "A run whose loss became NaN or infinite. Attributes: first_step, last_step (the steps it may have happened "
        "at) and report (the setup keys of the report, with diverged=True).",
        g_error, nullptr);
    m.attr("Error") = nb::handle(g_error);
    m.attr("DivergedError") = nb::handle(g_diverged_error);
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const sp::DivergedError& e) {
            PyErr_SetString(g_diverged_error, e.what());
        } catch (const sp::Error& e) {
            PyErr_SetString(g_error, e.what());
        }
    });

    m.def("version", [] { return std::string(sp::version()); }, "The library's version, e.g. '0.2.0'.");
    m.def(
        "world",
        [] {
            const sp::Communicator w = sp::Communicator::world();
            nb::dict d;
            d["rank"] = w.rank();
            d["size"] = w.size();
            d["mpi"] = sp::mpi_compiled();
            d["description"] = w.describe();
            return d;
        },
        "The processes the launcher started: {'rank', 'size', 'mpi' (built with MPI), 'description'}.");
    m.def("cuda_compiled", &sp::cuda_compiled, "True when the library was built with the CUDA backend.");
    m.def("cuda_device_count", &sp::cuda_device_count,
          "Usable CUDA devices (0 without a GPU, a driver, or a CUDA build).");
    m.def("describe_device", [](const std::string& d) { return sp::describe_device(sp::parse_device(d)); }, "device"_a,
          "A one-line description of a device: 'cpu (2 threads, OpenBLAS; dense layers oneDNN)' or 'cuda:0 (NVIDIA H200, sm_90)'.");
    m.def("preset_names", &sp::ModelSpec::preset_names, "The model presets: cnn8, lenet5, lenet300100.");

    nb::class_<LayerView>(m, "Layer", "A weight layer (dense or conv2d) of a Model; weight and bias are views.")
        .def_prop_ro("index", [](const LayerView& v) { return v.index; }, "Position among the weight layers.")
        .def_prop_ro("name", [](const LayerView& v) { return "layers." + std::to_string(v.index); },
                     "The tensor prefix in saved files: 'layers.<index>'.")
        .def_prop_ro("kind", [](const LayerView& v) { return std::string(sp::to_string(layer_spec(v.get(), v.index).kind)); },
                     "'dense' or 'conv2d'.")
        .def_prop_ro("weight", &weight_view, nb::rv_policy::reference,  // the view's owner is the model
                     "The weights as a writable float32 NumPy view into the model (no copy): (n_out, n_in) for dense, "
                     "(c_out, c_in, kh, kw) for conv2d, as PyTorch's Linear and Conv2d.")
        .def_prop_ro("bias", &bias_view, nb::rv_policy::reference, "The biases as a writable float32 NumPy view into the model: (n_out,) or (c_out,).")
        .def_prop_ro("nnz", [](const LayerView& v) { return v.get().nnz(v.index); }, "Exact nonzero weights.")
        .def_prop_ro("n_weights", [](const LayerView& v) { return v.get().weights(v.index).size(); }, "Weight entries.")
        .def("__repr__", [](const LayerView& v) {
            const sp::Model& m = v.get();
            std::string shape;
            for (std::size_t s : m.weight_shape(v.index)) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
            return "<sparseprox.Layer layers." + std::to_string(v.index) + " " +
                   sp::to_string(layer_spec(m, v.index).kind) + " (" + shape + "), nnz " +
                   std::to_string(m.nnz(v.index)) + " of " + std::to_string(m.weights(v.index).size()) + ">";
        });

    nb::class_<sp::Model>(m, "Model",
                          "A feed-forward network and its parameters.\n\n"
                          "Model(spec_or_path, seed=0): a preset ('cnn8', 'lenet5', 'lenet300100'), a dense spec "
                          "('dense:6-128-1', optionally ':tanh' etc.), a JSON model (text or file) initialized from "
                          "`seed` (PyTorch's default bounds, the same on every platform), or a .safetensors file "
                          "written by save() or the command line.")
        .def("__init__",
             [](sp::Model* self, const std::string& spec_or_path, std::uint64_t seed) {
                 new (self) sp::Model(make_model(spec_or_path, seed));
             },
             "spec_or_path"_a, "seed"_a = 0)
        .def("save",
             [](const sp::Model& self, const std::string& path, const std::map<std::string, std::string>& metadata) {
                 sp::save_model(path, self, metadata);
             },
             "path"_a, "metadata"_a = std::map<std::string, std::string>{},
             "Writes the model as safetensors (tensors layers.<i>.weight and layers.<i>.bias, PyTorch's layout) with "
             "string metadata; the write is atomic.")
        .def_static("load",
                    [](const std::string& path) {
                        std::pair<sp::Model, std::map<std::string, std::string>> out;
                        out.first = sp::load_model(path, &out.second);
                        return out;
                    },
                    "path"_a, "Reads a .safetensors model: returns (model, metadata).")
        .def_prop_ro("layers",
                     [](nb::handle self) {
                         const sp::Model& m = nb::cast<const sp::Model&>(self);
                         nb::typed<nb::list, LayerView> out;
                         for (std::size_t i = 0; i < m.n_weight_layers(); ++i)
                             out.append(nb::cast(LayerView{nb::borrow(self), i}));
                         return out;
                     },
                     "The weight layers, each with weight and bias as NumPy views into this model.")
        .def_prop_ro("nnz", &sp::Model::nnz_total, "Exact nonzero weights over all layers (biases excluded).")
        .def_prop_ro("nnz_per_layer", [](const sp::Model& m) { return m.nnz(); }, "Nonzero weights per weight layer.")
        .def_prop_ro("n_weights", [](const sp::Model& m) { return m.spec().n_weights(); },
                     "All weight entries (biases excluded).")
        .def_prop_ro("density", [](const sp::Model& m) {
            return static_cast<double>(m.nnz_total()) / static_cast<double>(std::max<std::size_t>(1, m.spec().n_weights()));
        }, "nnz / n_weights.")
        .def_prop_ro("alive_units", &sp::Model::alive_units,
                     "Per weight layer: input neurons (dense) or output filters (conv) with a nonzero weight.")
        .def_prop_ro("spec", [](const sp::Model& m) { return m.spec().to_short(); },
                     "The architecture in short form: a preset name, 'dense:6-128-1:relu' or JSON.")
        .def_prop_ro("input_shape", [](const sp::Model& m) { return shape_tuple(m.spec().input_shape); },
                     "One sample's shape (channels, height, width); (n_features, 1, 1) for flat data.")
        .def_prop_ro("n_inputs", [](const sp::Model& m) { return m.spec().n_inputs; }, "Features per sample.")
        .def_prop_ro("n_outputs", [](const sp::Model& m) { return m.spec().n_outputs(); },
                     "Outputs per sample (regression targets or classes).")
        .def_prop_ro("architecture", [](const sp::Model& m) { return architecture(m.spec()); },
                     "Every layer as a dict: type, n_in, n_out, in_shape, out_shape, and activation, kernel, stride, "
                     "padding where they apply.")
        .def("to_json", [](const sp::Model& m) { return m.spec().to_json(); }, "The architecture as model JSON.")
        .def("copy", [](const sp::Model& m) { return sp::Model(m); }, "An independent copy.")
        .def("__copy__", [](const sp::Model& m) { return sp::Model(m); })
        .def("__deepcopy__", [](const sp::Model& m, nb::handle) { return sp::Model(m); }, "memo"_a)
        .def("predict", &predict, "X"_a, "device"_a = "cpu",
             "The network's outputs for X of shape (n, n_features) or (n, c, h, w) (float32 or float64 NumPy array or "
             "DLPack tensor): a float32 array (n, n_outputs) of regression values or class logits.")
        .def("_evaluate",
             [](const sp::Model& model, const AnyArray& x, const AnyArray& y, const std::string& device) {
                 sp::Dataset d = make_dataset(x, y, model.spec(), "X", "y", "array");
                 const sp::Device dev = sp::parse_device(device);
                 sp::Evaluation e;
                 {
                     nb::gil_scoped_release release;
                     e = sp::evaluate(model, d, dev);
                 }
                 nb::dict out;
                 out["loss"] = e.loss;
                 out["accuracy"] = d.task == sp::Task::classification ? nb::object(nb::float_(e.accuracy)) : nb::none();
                 return out;
             },
             "X"_a, "y"_a, "device"_a = "cpu")
        .def("__repr__", [](const sp::Model& m) {
            return "<sparseprox.Model " + sp::excerpt(m.spec().to_short(), 80) + ", " + std::to_string(m.nnz_total()) +
                   " of " + std::to_string(m.spec().n_weights()) + " weights nonzero>";
        });

    m.def("_train", &train_py, "model"_a, "X"_a, "y"_a, "X_test"_a.none(), "y_test"_a.none(), "options"_a,
          "callback"_a.none(), "progress_seconds"_a);
    m.def("_search", &search_py, "model"_a, "X"_a, "y"_a, "X_test"_a.none(), "y_test"_a.none(), "options"_a,
          "callback"_a.none(), "progress_seconds"_a);

    m.def("mackey_glass",
          [](std::size_t n_train, std::size_t n_test, std::size_t window) {
              sp::MackeyGlassOptions o;
              o.n_train = n_train;
              o.n_test = n_test;
              o.window = window;
              return split_arrays(sp::mackey_glass(o));
          },
          "n_train"_a = 1000, "n_test"_a = 385, "window"_a = 6,
          "The embedded Mackey-Glass series (the command line's --data mackey-glass): ((X_train, y_train), "
          "(X_test, y_test)), X float32 (n, window) scaled to [-1, 1], y float32 (n,) the next sample.");
    m.def("load_idx",
          [](const std::string& dir, const std::string& pixel_scale) {
              sp::DataSplit s;
              const sp::PixelScale scale = parse_pixel_scale(pixel_scale);
              {
                  nb::gil_scoped_release release;
                  s = sp::read_idx_dir(dir, scale);
              }
              return split_arrays(std::move(s));
          },
          "dir"_a, "pixel_scale"_a = "symmetric",
          "An MNIST-style folder (train-/t10k- images and labels, optionally gzipped) as the command line reads "
          "--data idx:DIR: ((X_train, y_train), (X_test, y_test)), X float32 (n, 784) scaled as pixel_scale says "
          "('symmetric' [-1, 1], 'unit' [0, 1], 'raw'), y int64 class indices.");
    m.def("load_libsvm",
          [](const std::string& path, std::size_t n_features) {
              sp::Dataset d;
              {
                  nb::gil_scoped_release release;
                  d = sp::read_libsvm(path, n_features);
              }
              return dataset_arrays(std::move(d));
          },
          "path"_a, "n_features"_a = 0,
          "A LIBSVM text file as (X, y): X float32 (n, features), y float32 (n,) (regression).");
}
