// capacity.cpp: L1/L2 scores and rooflines from the L0 figures.
#include "bench/capacity.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

namespace cpn::bench {

Normalization default_normalization() {
    Normalization n;
    n.reference_name = "cpn-ref-1: one 16-core AVX-512 server socket (1 TFLOP/s fp32, 100 GB/s triad, "
                       "4 Tera-op/s int8/fp16/bf16, 10 Mrays/s)";
    n.reference = {{"compute", 1e12}, {"memory", 1e11}, {"ai", 4e12}, {"render", 10.0}};
    n.weights = {{"compute", 0.35}, {"memory", 0.25}, {"ai", 0.30}, {"render", 0.10}};
    n.task_classes = {
        {"dense-linear-algebra", "fp64", 16},
        {"cnn-inference", "int8", 40},
        {"cnn-inference-fp16", "fp16", 40},
        {"transformer-decode", "bf16", 1},
        {"stencil", "fp32", 0.5},
        {"rendering", "fp32", 4},
    };
    return n;
}

Normalization normalization_from_config(const Config& cfg) {
    Normalization n = default_normalization();
    const auto& c = cfg.capacity;
    n.reference = {{"compute", c.ref_compute}, {"memory", c.ref_memory}, {"ai", c.ref_ai}, {"render", c.ref_render}};
    n.weights = {{"compute", c.w_compute}, {"memory", c.w_memory}, {"ai", c.w_ai}, {"render", c.w_render}};
    n.task_classes.clear();
    for (const std::string& t : c.task_classes) {
        const size_t a = t.find(':'), b = t.rfind(':');
        if (a == std::string::npos || b == a) continue;  // validated by the config already
        n.task_classes.push_back({t.substr(0, a), t.substr(a + 1, b - a - 1), std::strtod(t.c_str() + b + 1, nullptr)});
    }
    n.source = cfg.source;
    return n;
}

namespace {

const std::set<std::string> kCategories = {"compute", "memory", "ai", "render"};
const std::set<std::string> kPrecisions = {"fp64", "fp32", "fp16", "bf16", "int8"};

}  // namespace

Result<Normalization> normalization_from_json(const nlohmann::json& j, const Normalization& base) {
    if (!j.is_object()) return Status(Code::invalid_argument, "normalization: must be a JSON object");
    Normalization n = base;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        const nlohmann::json& v = it.value();
        if (key == "reference_name") {
            if (!v.is_string()) return Status(Code::invalid_argument, "normalization.reference_name: must be a string");
            n.reference_name = v.get<std::string>();
        } else if (key == "reference" || key == "weights") {
            if (!v.is_object()) return Status(Code::invalid_argument, "normalization." + key + ": must be an object");
            for (auto c = v.begin(); c != v.end(); ++c) {
                if (!kCategories.count(c.key()))
                    return Status(Code::invalid_argument, "normalization." + key + "." + c.key() +
                                                              ": unknown category (known: ai, compute, memory, render)");
                if (!c.value().is_number())
                    return Status(Code::invalid_argument, "normalization." + key + "." + c.key() + ": must be a number");
                const double x = c.value().get<double>();
                if (!std::isfinite(x) || x < 0 || (key == "reference" && x == 0))
                    return Status(Code::invalid_argument, "normalization." + key + "." + c.key() + ": " +
                                                              std::to_string(x) +
                                                              (key == "reference" ? " must be > 0" : " must be >= 0"));
                (key == "reference" ? n.reference : n.weights)[c.key()] = x;
            }
        } else if (key == "task_classes") {
            if (!v.is_array() || v.empty() || v.size() > 64)
                return Status(Code::invalid_argument, "normalization.task_classes: must be an array of 1 to 64 classes");
            n.task_classes.clear();
            for (size_t i = 0; i < v.size(); ++i) {
                const auto& c = v[i];
                const std::string at = "normalization.task_classes[" + std::to_string(i) + "]";
                if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("precision") ||
                    !c["precision"].is_string() || !c.contains("intensity") || !c["intensity"].is_number())
                    return Status(Code::invalid_argument,
                                  at + ": must be {\"name\": string, \"precision\": string, \"intensity\": number}");
                TaskClass tc{c["name"].get<std::string>(), c["precision"].get<std::string>(),
                             c["intensity"].get<double>()};
                if (!kPrecisions.count(tc.precision))
                    return Status(Code::invalid_argument, at + ".precision: '" + tc.precision +
                                                              "' is not one of fp64, fp32, fp16, bf16, int8");
                if (!std::isfinite(tc.intensity) || tc.intensity <= 0)
                    return Status(Code::invalid_argument, at + ".intensity: must be > 0 (operations per byte)");
                n.task_classes.push_back(tc);
            }
        } else if (key == "source") {
            continue;  // informational, set by whoever applies it
        } else {
            return Status(Code::invalid_argument, "normalization." + key +
                                                      ": unknown key (known: reference_name, reference, weights, task_classes)");
        }
    }
    return n;
}

nlohmann::json to_json(const Normalization& n) {
    nlohmann::json classes = nlohmann::json::array();
    for (const TaskClass& t : n.task_classes)
        classes.push_back({{"name", t.name}, {"precision", t.precision}, {"intensity", t.intensity}});
    return {{"reference_name", n.reference_name}, {"reference", n.reference}, {"weights", n.weights},
            {"task_classes", classes}, {"source", n.source}};
}

std::map<std::string, Figure> best_figures(const DeviceResult& d) {
    std::map<std::string, Figure> best;
    for (const Figure& f : d.figures) {
        if (f.status != "ok") continue;
        auto it = best.find(f.name);
        const bool lower_is_better = f.unit == "s";
        if (it == best.end() || (lower_is_better ? f.value < it->second.value : f.value > it->second.value))
            best[f.name] = f;
    }
    return best;
}

namespace {

double fig(const std::map<std::string, Figure>& b, const std::string& name) {
    auto it = b.find(name);
    return it == b.end() ? 0.0 : it->second.value;
}

/* Best measured rate for a precision: vector or matrix units. */
double precision_peak(const std::map<std::string, Figure>& b, const std::string& prec) {
    double v = fig(b, prec);
    if (prec != "fp64" && prec != "fp32") v = std::max(v, fig(b, "mm." + prec));
    if (prec == "fp32") v = std::max(v, fig(b, "mm.tf32"));  // tf32 units run fp32 inputs
    return v;
}

}  // namespace

nlohmann::json capacity_record(const BenchReport& report, const Normalization& norm) {
    nlohmann::json devices = nlohmann::json::array();
    std::map<std::string, double> node_l1;
    std::map<std::string, double> node_roof;
    for (const DeviceResult& d : report.devices) {
        const auto b = best_figures(d);
        nlohmann::json l1 = nlohmann::json::object();
        std::map<std::string, double> raw = {
            {"compute", fig(b, "fp32")},
            {"memory", fig(b, "mem.triad")},
            {"ai", std::max({precision_peak(b, "int8"), precision_peak(b, "fp16"), precision_peak(b, "bf16")})},
            {"render", fig(b, "task.render")},
        };
        double l2 = 0;
        for (const auto& [cat, value] : raw) {
            auto ref = norm.reference.find(cat);
            if (value <= 0 || ref == norm.reference.end() || ref->second <= 0) continue;
            const double score = value / ref->second;
            l1[cat] = score;
            node_l1[cat] += score;
            auto w = norm.weights.find(cat);
            if (w != norm.weights.end()) l2 += w->second * score;
        }
        nlohmann::json roof = nlohmann::json::object();
        const double bw = fig(b, "mem.triad");
        for (const TaskClass& tc : norm.task_classes) {
            const double peak = precision_peak(b, tc.precision);
            if (peak <= 0 || bw <= 0) continue;
            const double attainable = std::min(peak, bw * tc.intensity);
            roof[tc.name] = {{"attainable", attainable},
                             {"unit", tc.precision == "int8" ? "op/s" : "FLOP/s"},
                             {"bound", attainable < peak ? "memory" : "compute"}};
            node_roof[tc.name] += attainable;
        }
        nlohmann::json best = nlohmann::json::object();
        for (const auto& [name, f] : b) best[name] = {{"value", f.value}, {"unit", f.unit}, {"backend", f.backend}};
        devices.push_back({{"device_id", d.device_id}, {"status", d.status}, {"best", best}, {"l1", l1},
                           {"l2", l2}, {"roofline", roof}});
    }
    nlohmann::json node_l1_json = nlohmann::json::object();
    double node_l2 = 0;
    for (const auto& [cat, s] : node_l1) {
        node_l1_json[cat] = s;
        auto w = norm.weights.find(cat);
        if (w != norm.weights.end()) node_l2 += w->second * s;
    }
    nlohmann::json node_roof_json = nlohmann::json::object();
    for (const auto& [name, v] : node_roof) node_roof_json[name] = v;
    return {{"l0", report},
            {"l1", {{"node", node_l1_json}}},
            {"l2", {{"node", node_l2}}},
            {"devices", devices},
            {"roofline", node_roof_json},
            {"normalization", to_json(norm)}};
}

}  // namespace cpn::bench
