// suite.hpp: `cpn-agent bench` as a library: every device, through its backends' bench.*
// workloads (backends/api/cpn_bench.h), sampled until the figures are stable, each beside its
// theoretical peak. The result is the L0 record of the capacity model (docs/capacity.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/peak.hpp"
#include "bench/stats.hpp"
#include "inventory/device.hpp"

namespace cpn::bench {

/* One benchmark figure kind and how it is presented. */
struct KindInfo {
    const char* kind;       // "bench.fp32"
    const char* name;       // "fp32" (the figure name in records and tables)
    const char* unit;       // unit of `value`: "FLOP/s", "op/s", "B/s", "s", "MHz"
    const char* category;   // "compute", "matrix", "memory", "transfer", "latency", "clock"
};
const std::vector<KindInfo>& kinds();
const KindInfo* find_kind(const std::string& kind);

/* A task-level reference job: a workload the task kinds (render, infer) register so that
 * capacity also reads "Mrays/s on the reference scene". The job runs like any bench kind; its
 * rate is result ops / seconds, scaled by `scale` into `unit`. */
struct TaskReference {
    std::string task_kind;      // "render", "infer"
    std::string workload_kind;  // the cpn_workload kind to prepare
    std::string params_json = "{}";
    std::string unit;           // "Mrays/s", "inferences/s"
    double scale = 1.0;         // unit per (op/s)
    std::string description;    // "Cornell box, 1920x1080, 16 spp"
    /* The workload's blob (a packed scene, a model), made when the job is measured and dropped
     * after, so a registered reference costs no memory in between; null: no blob. */
    std::function<std::shared_ptr<const std::string>()> make_blob;
};
/* The process-wide registry the workloads add their reference jobs to. */
void register_task_reference(TaskReference ref);
std::vector<TaskReference> task_references();
void clear_task_references_for_test();

struct Figure {
    std::string name;           // "fp32", "fp32.1core", or "task.render" for task-level ones
    std::string kind;           // "bench.fp32"
    std::string backend;        // the runtime path it ran through
    std::string category;
    std::string unit;
    std::string status;         // "ok", "unsupported", "failed", "cancelled", "above_peak"
    std::string reason;
    int threads = 0;            // CPU: worker threads (0: not applicable)
    double value = 0;           // median, in `unit`
    SampleStats stats;          // over the rates, in `unit`
    uint64_t reps = 0, bytes = 0;
    double clock_mhz = 0;       // clock during the figure, when known (median over its samples)
    double clock_max_mhz = 0;   // the highest of its samples' clocks (judging "above_peak"); not serialised
    Peak peak;
    double efficiency = 0;      // value / peak.value when the peak is known
    PeakVerdict limit;          // what "above_peak" was judged against (bound, clock, tolerance)
    std::string check;          // what the plugin verified
    double seconds = 0;         // wall time spent on this figure, preparation included
    std::map<std::string, double> detail;  // the backend's extra figures (medians), e.g. queued_to_end_s
};

struct DeviceResult {
    std::string device_id, model, vendor;
    std::string device_class;
    std::string status = "ok";  // "ok", "partial" (some figures failed), "failed", "cancelled", "skipped"
    std::string reason;
    std::vector<std::string> backends;   // paths measured
    std::vector<Figure> figures;
    nlohmann::json provenance;  // per backend: runtime and driver versions
    double seconds = 0;
};

struct Progress {
    std::string device_id;
    std::string backend;
    std::string figure;
    int done = 0, total = 0;    // figures of this device
    std::string status;         // of the figure just finished, "" when it starts
    double value = 0;
    std::string unit;
};

struct SuiteOptions {
    bool full = false;
    std::vector<std::string> device_ids;     // empty: every device
    std::string plugin_dir;                   // where libcpn-backend-<name>.so live
    std::function<void(const Progress&)> on_progress;
    const std::atomic<int32_t>* cancel = nullptr;  // non-zero: stop between samples
    double sample_seconds_override = 0;      // tests: shorter samples
    uint64_t mem_bytes_override = 0;         // tests: smaller arrays
};

struct BenchReport {
    std::string suite_version, agent_version, mode;
    std::string node_id;
    int64_t timestamp_ms = 0;
    double seconds = 0;
    bool cancelled = false;
    std::vector<DeviceResult> devices;
};

/* Benchmarks the devices of `inv`. Never throws; what failed is said per device and figure. */
BenchReport run_suite(const Inventory& inv, const SuiteOptions& opt);

/* The bytes each array of a memory benchmark gets on `d`: 4x its last-level cache, >= 64 MiB,
 * <= 1/8 of its memory. */
uint64_t memory_bench_bytes(const Device& d);

void to_json(nlohmann::json& j, const Figure& f);
void to_json(nlohmann::json& j, const DeviceResult& d);
void to_json(nlohmann::json& j, const BenchReport& r);
void from_json(const nlohmann::json& j, Figure& f);
void from_json(const nlohmann::json& j, DeviceResult& d);
void from_json(const nlohmann::json& j, BenchReport& r);

}  // namespace cpn::bench
