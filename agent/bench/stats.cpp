// stats.cpp: median / CV of benchmark samples and the stopping rule.
#include "bench/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace cpn::bench {

SampleStats summarise(std::vector<double> v) {
    SampleStats s;
    s.samples = static_cast<int>(v.size());
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min = v.front();
    s.max = v.back();
    s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n);
    if (n > 1 && s.mean != 0) {
        double ss = 0;
        for (double x : v) ss += (x - s.mean) * (x - s.mean);
        s.cv = std::sqrt(ss / static_cast<double>(n - 1)) / std::fabs(s.mean);
    }
    return s;
}

SamplingPlan quick_plan() { return SamplingPlan{}; }

SamplingPlan full_plan() {
    SamplingPlan p;
    p.sample_seconds = 0.08;
    p.warmup = 2;
    p.min_samples = 7;
    p.max_samples = 25;
    p.target_cv = 0.01;
    p.budget_seconds = 2.0;
    return p;
}

bool should_stop(const std::vector<double>& values, const SamplingPlan& plan, double elapsed) {
    const int n = static_cast<int>(values.size());
    if (n >= plan.max_samples) return true;
    if (elapsed >= plan.budget_seconds && n >= std::min(plan.min_samples, 3)) return true;
    if (n < plan.min_samples) return false;
    return summarise(values).cv <= plan.target_cv;
}

uint64_t next_reps(uint64_t reps, double seconds, double target) {
    if (reps == 0) reps = 1;
    double factor = seconds > 0 ? target / seconds : 1000.0;
    factor = std::clamp(factor * 1.1, 2.0, 1000.0);
    const double next = static_cast<double>(reps) * factor;
    return next >= 1e15 ? static_cast<uint64_t>(1e15) : static_cast<uint64_t>(std::ceil(next));
}

}  // namespace cpn::bench
