// stats.hpp: the statistics of repeated benchmark samples (median, coefficient of variation)
// and the stopping rule: sample until the relative spread is small or the time budget ends.
#pragma once

#include <cstdint>
#include <vector>

namespace cpn::bench {

struct SampleStats {
    int samples = 0;             // accepted samples the statistics are over
    int discarded_throttled = 0; // samples the device flagged as throttled
    int discarded_preempted = 0; // samples whose workers lost their CPUs to other work
    double median = 0, mean = 0, min = 0, max = 0;
    double cv = 0;               // sample standard deviation / mean
};

/* Statistics over `values` (rates). Empty input gives samples = 0. */
SampleStats summarise(std::vector<double> values);

/* How long and how often to sample one figure. */
struct SamplingPlan {
    double sample_seconds = 0.02;  // calibrated duration of one sample
    int warmup = 1;                // samples run and thrown away first
    int min_samples = 3;
    int max_samples = 7;
    double target_cv = 0.03;       // stop once the spread is below this (after min_samples)
    double budget_seconds = 0.3;   // stop at this much sampling time, whatever the spread
    int max_throttled = 10;        // give up after this many throttled samples
};

SamplingPlan quick_plan();
SamplingPlan full_plan();

/* The stopping rule: true when enough samples are in, given the time spent so far. */
bool should_stop(const std::vector<double>& values, const SamplingPlan& plan, double elapsed_seconds);

/* The next "reps" for calibration: scales `reps` so that a sample that took `seconds` lasts about
 * `target_seconds`, at most 1000x per step and at least 2x while it is too short. */
uint64_t next_reps(uint64_t reps, double seconds, double target_seconds);

}  // namespace cpn::bench
