#include "cli/usage.h"

#include <algorithm>
#include <cctype>

namespace sparseprox {
namespace cli {

std::size_t edit_distance(const std::string& a, const std::string& b) {
    // Optimal string alignment distance, three rows.
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
    for (std::size_t j = 0; j <= m; ++j) prev[j] = j;
    for (std::size_t i = 1; i <= n; ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        prev2.swap(prev);
        prev.swap(cur);
    }
    return prev[m];
}

std::string closest_name(const std::string& word, const std::vector<std::string>& known) {
    std::string best;
    std::size_t best_d = static_cast<std::size_t>(-1);
    for (const std::string& k : known) {
        const std::size_t d = edit_distance(word, k);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    // A typo: a couple of edits, or a quarter of a long name.
    const std::size_t allowed = std::max<std::size_t>(2, word.size() / 4);
    return best_d <= allowed && best_d < word.size() ? best : std::string();
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
    const std::string c = closest_name(word, known);
    return c.empty() ? std::string() : "; did you mean '" + c + "'?";
}

std::vector<std::string> flag_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options()) {
        for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
        for (const std::string& s : o->get_snames()) names.push_back("-" + s);
    }
    return names;
}

namespace {

std::string flag_of(const std::string& message) {
    const std::size_t colon = message.find(':');
    return colon == std::string::npos ? std::string() : message.substr(0, colon);
}

const CLI::Option* find_option(const CLI::App& app, const std::string& flag) {
    for (const CLI::Option* o : app.get_options())
        for (const std::string& l : o->get_lnames())
            if ("--" + l == flag) return o;
    return nullptr;
}

std::string kind_of(const CLI::Option* o) {
    if (!o) return "a valid value";
    std::string t = o->get_type_name();
    if (t.find("FLOAT") != std::string::npos) return "a number";
    if (t.find("INT") != std::string::npos || t.find("UINT") != std::string::npos) return "a whole number";
    return "a valid value";
}

}  // namespace

std::string usage_message(const CLI::ParseError& e, const CLI::App& app) {
    const std::string what = e.what();
    const std::string kind = e.get_name();
    if (kind == "ArgumentMismatch") {
        const std::string flag = flag_of(what);
        if (!flag.empty() && what.find("missing") != std::string::npos) return flag + " needs a value";
        return what;
    }
    if (kind == "ConversionError") {
        // "Could not convert: --lr = abc"
        const std::string prefix = "Could not convert: ";
        if (what.compare(0, prefix.size(), prefix) == 0) {
            const std::string rest = what.substr(prefix.size());
            const std::size_t eq = rest.find(" = ");
            if (eq != std::string::npos) {
                const std::string flag = rest.substr(0, eq), value = rest.substr(eq + 3);
                return flag + ": '" + value + "' is not " + kind_of(find_option(app, flag));
            }
        }
        return what;
    }
    return what;  // ValidationError and the rest: "--flag: why" already
}

std::string extras_message(const std::vector<std::string>& extras, const CLI::App& app, const std::string& command,
                           const std::vector<const CLI::App*>& elsewhere) {
    for (const std::string& arg : extras) {
        if (arg.size() < 2 || arg[0] != '-' ||
            (arg.size() > 1 && (std::isdigit(static_cast<unsigned char>(arg[1])) || arg[1] == '.')))
            continue;  // a value, not a flag
        const std::string flag = arg.substr(0, arg.find('='));
        std::string msg = "unknown flag '" + flag + "' for '" + command + "'";
        for (const CLI::App* other : elsewhere)
            for (const std::string& name : flag_names(*other))
                if (name == flag) return msg + " (it is a flag of 'sparseprox " + other->get_name() + "')";
        return msg + did_you_mean(flag, flag_names(app));
    }
    return "unexpected argument '" + extras.front() + "' for '" + command + "' (flags start with --)";
}

}  // namespace cli
}  // namespace sparseprox
