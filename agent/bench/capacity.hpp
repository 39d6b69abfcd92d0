// capacity.hpp: the normalised capacity model (docs/capacity.md), after the IETF CATS metric
// levels: L0 the raw figures (the BenchReport, in physical units, with statistics and
// provenance), L1 per-category scores relative to a documented reference node, L2 one score.
// Per task class, the attainable rate is the roofline min(peak for its precision, bandwidth x
// its arithmetic intensity). The parameters (reference, weights, task classes) have defaults,
// come from the config, and can be replaced by the brain, so every node scores alike.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/suite.hpp"
#include "config/config.hpp"
#include "core/status.hpp"

namespace cpn::bench {

struct TaskClass {
    std::string name;          // "dense-linear-algebra"
    std::string precision;     // "fp64", "fp32", "fp16", "bf16", "int8"
    double intensity = 1;      // arithmetic intensity, operations per byte of memory traffic
};

struct Normalization {
    std::string reference_name;
    /* Reference values per L1 category, in the unit of the figure that category reads:
     * compute: fp32 FLOP/s; memory: triad B/s; ai: best int8/fp16/bf16 op/s (vector or matrix);
     * render: task.render in its unit (absent until the render workload registers its job). */
    std::map<std::string, double> reference;
    std::map<std::string, double> weights;   // L2 = sum of weight x L1 score
    std::vector<TaskClass> task_classes;
    std::string source = "built-in defaults";  // "config", "brain (command set_normalization)"
};

/* The documented defaults (docs/capacity.md). */
Normalization default_normalization();

/* The normalisation the configuration's capacity.* keys describe (already validated). */
Normalization normalization_from_config(const Config& cfg);

/* Validates a normalisation given as JSON ({"reference_name", "reference": {...}, "weights":
 * {...}, "task_classes": [...]}); every key optional except what it replaces. Errors name the
 * key and what is wrong. */
Result<Normalization> normalization_from_json(const nlohmann::json& j, const Normalization& base);
nlohmann::json to_json(const Normalization& n);

/* The best figure per name on a device over its backends (highest rate; lowest latency); only
 * figures with status "ok" count. */
std::map<std::string, Figure> best_figures(const DeviceResult& d);

/* The capacity record: L0 (the report), L1, L2, and the roofline per task class, per device and
 * for the node. */
nlohmann::json capacity_record(const BenchReport& report, const Normalization& norm);

}  // namespace cpn::bench
