// The rules of Algorithms 1 and 2 (docs/method.md §4-5) as pure functions over one group of
// weights: the bracket from a history, the candidate set and the next lambda. Internal: the
// public entry points are LambdaSearch and search() (sparseprox/search.h); the tests check these
// rules on recorded histories.
#pragma once

#include <cstddef>
#include <limits>
#include <vector>

#include "sparseprox/search.h"

namespace sparseprox {

// One finished run of a group: the lambda it used and the NNZ it returned.
struct LambdaRecord {
    float lambda = 0.0f;
    std::size_t nnz = 0;
};

// The bracket of docs/method.md §4 from a history, for target l*:
//   n_lo = the largest NNZ <= l*, lambda_up  = the smallest lambda that gave n_lo;
//   n_hi = the smallest NNZ >= l*, lambda_low = the largest lambda that gave n_hi.
// When no run gave NNZ >= l*, lambda_low = 0 (has_low false); when none gave NNZ <= l*,
// lambda_up = +infinity (has_up false).
struct Bracket {
    float lambda_low = 0.0f;
    float lambda_up = std::numeric_limits<float>::infinity();
    std::size_t n_hi = 0;  // valid when has_low
    std::size_t n_lo = 0;  // valid when has_up
    bool has_low = false;
    bool has_up = false;
};
Bracket bracket_from_history(const std::vector<LambdaRecord>& history, std::size_t target);

// Whether the last run of a history left the bracket's counts as they were: no end appeared and
// n_lo and n_hi are the counts they were before it (its NNZ equal to an end's count, or outside
// the bracket). After a run chosen by the median rule this is a stall: the candidates' median
// can creep towards the target's interval a little per run (docs/method.md §4), and the next
// lambda is the bracket's midpoint instead (rule bisect). False for fewer than two runs.
bool bracket_stalled(const std::vector<LambdaRecord>& history, std::size_t target);

// The candidates C = { |g_i| : low < |g_i| < up } (strict on both sides) of n gradient entries:
// their number and their lower median (for an even count the smaller middle value; 0 when C is
// empty). NaN entries are never candidates.
struct CandidateSet {
    std::size_t count = 0;
    float lower_median = 0.0f;
};
CandidateSet candidate_set(const float* grad, std::size_t n, float low, float up);

struct LambdaChoice {
    float lambda = 0.0f;
    LambdaRule rule = LambdaRule::median;
};
// The next lambda from a bracket and the candidates inside it: the lower median, else the
// midpoint; with no upper end (every run so far too dense) 10 x `largest_tried`.
LambdaChoice next_lambda(const Bracket& bracket, const CandidateSet& candidates, float largest_tried);

// The parallel search's next P lambdas of one group (P >= 1), in increasing order:
//   no upper end:  largest_tried x 10^1 .. 10^P (expand);
//   candidates (l1, sorted ascending, all inside the bracket): the P-quantiles, entry
//                  floor(i (m - 1) / (P + 1)) for i = 1..P of the m candidates (for P = 1 the
//                  lower median, as next_lambda), duplicates replaced by points of the bracket
//                  (so the P runs try P different values);
//   no candidates: P equally spaced points of (lambda_low, lambda_up) (midpoint), or for the
//                  other methods P points equally spaced in log scale (geometric; from
//                  lambda_up / 10^P when lambda_low is 0).
std::vector<LambdaChoice> next_lambdas_parallel(const Bracket& bracket, const std::vector<float>& sorted_candidates,
                                                float largest_tried, std::size_t P, bool l1);

}  // namespace sparseprox
