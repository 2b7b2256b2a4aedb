// The Mackey-Glass delay differential equation, integrated with classical RK4.
//
// The delay tau is a whole number d of steps, so x(t - tau) at the start and end of a step are
// stored values. RK4's two midpoint stages need x half a step between two stored values; they
// use the mean of the two neighbours (linear interpolation, second-order accurate, which is the
// error the delayed term contributes anyway). Only the last d + 1 values are kept, in a ring.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "sparseprox/data.h"
#include "sparseprox/error.h"

namespace sparseprox {

namespace {

std::string num(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

void require_finite(double v, const char* field) {
    if (!std::isfinite(v)) throw Error(std::string("MackeyGlassOptions::") + field + " must be finite, got " + num(v));
}

// How many dt steps make up `span` time units; span must be (numerically) a whole multiple.
std::size_t whole_steps(double span, double dt, const char* field) {
    const double ratio = span / dt;
    const double rounded = std::round(ratio);
    if (!(rounded < 9.0e15))  // far beyond any sensible run, and beyond exact double integers
        throw Error(std::string("MackeyGlassOptions::") + field + " = " + num(span) + " is " + num(ratio) +
                    " steps of dt = " + num(dt) + ", too many to integrate");
    if (std::fabs(ratio - rounded) > 1e-9 * std::max(1.0, std::fabs(ratio)))
        throw Error(std::string("MackeyGlassOptions::") + field + " = " + num(span) +
                    " must be a whole multiple of dt = " + num(dt) + " (ratio " + num(ratio) + ")");
    return static_cast<std::size_t>(rounded);
}

void validate(const MackeyGlassOptions& o) {
    require_finite(o.beta, "beta");
    require_finite(o.gamma, "gamma");
    require_finite(o.n, "n");
    require_finite(o.tau, "tau");
    require_finite(o.x0, "x0");
    require_finite(o.dt, "dt");
    require_finite(o.sample_every, "sample_every");
    require_finite(o.discard, "discard");
    if (!(o.dt > 0)) throw Error("MackeyGlassOptions::dt must be positive, got " + num(o.dt));
    if (!(o.tau > 0)) throw Error("MackeyGlassOptions::tau must be positive, got " + num(o.tau));
    if (!(o.sample_every > 0))
        throw Error("MackeyGlassOptions::sample_every must be positive, got " + num(o.sample_every));
    if (o.discard < 0) throw Error("MackeyGlassOptions::discard must be >= 0, got " + num(o.discard));
    if (o.window < 1) throw Error("MackeyGlassOptions::window must be >= 1, got 0");
    if (o.n_train < 1) throw Error("MackeyGlassOptions::n_train must be >= 1, got 0");
    if (o.n_test < 1) throw Error("MackeyGlassOptions::n_test must be >= 1, got 0");
}

Dataset make_rows(const std::vector<float>& series, std::size_t first_row, std::size_t n_rows, std::size_t window,
                  const char* name) {
    Dataset d;
    d.name = name;
    d.task = Task::regression;
    d.n_samples = n_rows;
    d.n_features = window;
    d.n_outputs = 1;
    d.x.resize(n_rows * window);
    d.y.resize(n_rows);
    for (std::size_t r = 0; r < n_rows; ++r) {
        const std::size_t s = first_row + r;
        std::copy(series.begin() + static_cast<std::ptrdiff_t>(s),
                  series.begin() + static_cast<std::ptrdiff_t>(s + window),
                  d.x.begin() + static_cast<std::ptrdiff_t>(r * window));
        d.y[r] = series[s + window];
    }
    return d;
}

}  // namespace

DataSplit mackey_glass(const MackeyGlassOptions& o) {
    validate(o);
    const std::size_t delay = whole_steps(o.tau, o.dt, "tau");
    if (delay < 1)
        throw Error("MackeyGlassOptions::tau = " + num(o.tau) + " is shorter than one step dt = " + num(o.dt));
    const std::size_t discard_steps = whole_steps(o.discard, o.dt, "discard");
    const std::size_t sample_steps = whole_steps(o.sample_every, o.dt, "sample_every");
    if (sample_steps < 1)
        throw Error("MackeyGlassOptions::sample_every = " + num(o.sample_every) +
                    " is shorter than one step dt = " + num(o.dt));

    // Rows are consecutive windows: row r holds samples r .. r+window-1, its target is r+window.
    const std::size_t max = std::numeric_limits<std::size_t>::max();
    if (o.n_train > max - o.n_test || o.n_train + o.n_test > max - o.window)
        throw Error("MackeyGlassOptions: n_train + n_test + window overflows");
    const std::size_t n_rows = o.n_train + o.n_test;
    const std::size_t n_samples = n_rows + o.window;
    if ((n_samples - 1) > (max - discard_steps) / sample_steps)
        throw Error("MackeyGlassOptions: n_train + n_test + window samples every " + num(o.sample_every) +
                    " time units need too many steps of dt = " + num(o.dt));
    const std::size_t last_step = discard_steps + (n_samples - 1) * sample_steps;

    const double beta = o.beta, gamma = o.gamma, expo = o.n, dt = o.dt;
    auto rhs = [&](double x, double x_delayed) {
        return beta * x_delayed / (1.0 + std::pow(x_delayed, expo)) - gamma * x;
    };

    // ring[k % (delay + 1)] = x_k for the last delay + 1 steps; x_k = x0 for k <= 0.
    std::vector<double> ring(delay + 1, o.x0);
    auto stored = [&](std::size_t k, std::size_t back) {  // x_{k - back}
        return k < back ? o.x0 : ring[(k - back) % (delay + 1)];
    };

    std::vector<double> samples;
    samples.reserve(n_samples);
    double x = o.x0;
    for (std::size_t k = 0;; ++k) {
        if (k >= discard_steps && (k - discard_steps) % sample_steps == 0) {
            if (!std::isfinite(x))
                throw Error("Mackey-Glass series is not finite (" + num(x) + ") at t = " + num(double(k) * dt) +
                            "; check MackeyGlassOptions beta, gamma, n, x0 and dt");
            samples.push_back(x);
        }
        if (k == last_step) break;
        const double a = stored(k, delay);      // x(t - tau)
        const double b = stored(k, delay - 1);  // x(t + dt - tau)
        const double mid = 0.5 * (a + b);       // x(t + dt/2 - tau)
        const double k1 = rhs(x, a);
        const double k2 = rhs(x + 0.5 * dt * k1, mid);
        const double k3 = rhs(x + 0.5 * dt * k2, mid);
        const double k4 = rhs(x + dt * k3, b);
        x += dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
        ring[(k + 1) % (delay + 1)] = x;
    }

    const auto [lo_it, hi_it] = std::minmax_element(samples.begin(), samples.end());
    const double lo = *lo_it, hi = *hi_it;
    if (!(hi > lo))
        throw Error("Mackey-Glass series is constant (" + num(lo) +
                    "), so it cannot be scaled to [-1, 1]; check MackeyGlassOptions beta, gamma, n and x0");
    std::vector<float> scaled(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i)
        scaled[i] = static_cast<float>(2.0 * ((samples[i] - lo) / (hi - lo)) - 1.0);

    DataSplit split;
    split.train = make_rows(scaled, 0, o.n_train, o.window, "mackey-glass/train");
    split.test = make_rows(scaled, o.n_train, o.n_test, o.window, "mackey-glass/test");
    return split;
}

}  // namespace sparseprox
