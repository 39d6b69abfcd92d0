// suite.cpp: runs the bench.* workloads of every device through its backend plugins.
//
// The plugin runs one verified sample per run() call; everything statistical happens here:
// calibration of "reps" (through the "reps" input buffer, so one prepare serves every sample),
// warm-up, sampling until the spread is small or the budget ends, throttled-sample rejection,
// and the comparison with the theoretical peak. A figure above its physical limit is flagged
// and never becomes capacity.
#include "bench/suite.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>

#include <spdlog/spdlog.h>

#include "core/status.hpp"
#include "cpn_bench.h"
#include "plugin/plugin_library.hpp"

namespace cpn::bench {

namespace {

std::mutex g_refs_mutex;
std::vector<TaskReference>& refs_storage() {
    static std::vector<TaskReference> refs;
    return refs;
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

const std::vector<KindInfo>& kinds() {
    static const std::vector<KindInfo> k = {
        {"bench.clock", "clock", "MHz", "clock"},
        {"bench.fp64", "fp64", "FLOP/s", "compute"},
        {"bench.fp32", "fp32", "FLOP/s", "compute"},
        {"bench.fp16", "fp16", "FLOP/s", "compute"},
        {"bench.bf16", "bf16", "FLOP/s", "compute"},
        {"bench.int8", "int8", "op/s", "compute"},
        {"bench.mm.fp16", "mm.fp16", "FLOP/s", "matrix"},
        {"bench.mm.bf16", "mm.bf16", "FLOP/s", "matrix"},
        {"bench.mm.tf32", "mm.tf32", "FLOP/s", "matrix"},
        {"bench.mm.int8", "mm.int8", "op/s", "matrix"},
        {"bench.mem.copy", "mem.copy", "B/s", "memory"},
        {"bench.mem.triad", "mem.triad", "B/s", "memory"},
        {"bench.xfer.h2d.pinned", "xfer.h2d.pinned", "B/s", "transfer"},
        {"bench.xfer.h2d.pageable", "xfer.h2d.pageable", "B/s", "transfer"},
        {"bench.xfer.d2h.pinned", "xfer.d2h.pinned", "B/s", "transfer"},
        {"bench.xfer.d2h.pageable", "xfer.d2h.pageable", "B/s", "transfer"},
        {"bench.launch", "launch", "s", "latency"},
    };
    return k;
}

const KindInfo* find_kind(const std::string& kind) {
    for (const KindInfo& k : kinds())
        if (kind == k.kind) return &k;
    return nullptr;
}

void register_task_reference(TaskReference ref) {
    std::lock_guard<std::mutex> lock(g_refs_mutex);
    refs_storage().push_back(std::move(ref));
}
std::vector<TaskReference> task_references() {
    std::lock_guard<std::mutex> lock(g_refs_mutex);
    return refs_storage();
}
void clear_task_references_for_test() {
    std::lock_guard<std::mutex> lock(g_refs_mutex);
    refs_storage().clear();
}

uint64_t memory_bench_bytes(const Device& d) {
    uint64_t llc = 0;
    if (d.cpu) llc = std::max({d.cpu->l3_bytes, d.cpu->l2_bytes, d.cpu->l1d_bytes});
    for (const RuntimePath& p : d.runtimes) {
        for (const char* key : {"cuda.l2_cache_bytes", "opencl.global_mem_cache_bytes"}) {
            auto it = p.attributes.find(key);
            if (it == p.attributes.end()) continue;
            if (const auto* v = std::get_if<int64_t>(&it->second.value)) llc = std::max<uint64_t>(llc, *v);
        }
    }
    uint64_t bytes = std::max<uint64_t>(4 * llc, 64ull << 20);
    if (d.memory_bytes > 0) bytes = std::min<uint64_t>(bytes, d.memory_bytes / 8);
    return bytes & ~uint64_t{4095};
}

namespace {

/* The paths to measure on a device: in quick mode the one native path (cuda, levelzero, then
 * opencl for accelerators; the cpu backend for the CPU), in full mode every path. */
std::vector<const RuntimePath*> paths_to_measure(const Device& d, bool full) {
    static const std::vector<std::string> kPreference = {"cpu", "cuda", "levelzero", "opencl", "xrt"};
    auto rank = [](const RuntimePath* p) {
        auto it = std::find(kPreference.begin(), kPreference.end(), p->backend);
        return it - kPreference.begin();
    };
    std::vector<const RuntimePath*> all;
    for (const RuntimePath& p : d.runtimes) all.push_back(&p);
    // The native path first: on the CPU it measures the clock the other paths' peaks use.
    std::stable_sort(all.begin(), all.end(), [&](const RuntimePath* a, const RuntimePath* b) { return rank(a) < rank(b); });
    if (full || all.size() <= 1) return all;
    return {all.front()};
}

/* One opened device through one plugin. */
struct OpenDevice {
    std::shared_ptr<PluginLibrary> lib;
    cpn_device_handle* handle = nullptr;
    ~OpenDevice() {
        if (handle != nullptr && lib && lib->backend().device_close != nullptr) lib->backend().device_close(handle);
    }
};

struct RunOutcome {
    cpn_status status = CPN_OK;
    std::string error;
    nlohmann::json result;
};

class Measurer {
public:
    Measurer(const Device& dev, OpenDevice& od, const SuiteOptions& opt, const SamplingPlan& plan)
        : dev_(dev), od_(od), opt_(opt), plan_(plan) {}

    bool cancelled() const { return opt_.cancel != nullptr && opt_.cancel->load() != 0; }

    /* Measures one figure: query, prepare, calibrate, warm up, sample, release. */
    Figure measure(const std::string& kind, const std::string& name, const std::string& unit,
                   const std::string& category, const std::string& params, int threads, double scale,
                   double clock_mhz, const std::string* blob = nullptr) {
        Figure f;
        f.name = name;
        f.kind = kind;
        f.category = category;
        f.unit = unit;
        f.threads = threads;
        const double t0 = now_s();
        f.status = measure_into(f, params, threads, scale, blob);
        f.seconds = now_s() - t0;
        if (f.status != "ok") return f;
        if (f.clock_mhz <= 0) f.clock_mhz = clock_mhz;
        if (category != "task") {
            // Efficiency at the figure's median clock; "impossible" judged at the highest clock
            // seen (its samples' probes and the run's clock figure).
            f.peak = theoretical_peak(dev_, kind, threads, f.clock_mhz);
            if (f.peak.known && f.peak.value > 0) {
                f.efficiency = f.value / f.peak.value;
                f.limit = judge_against_peak(dev_, kind, threads, f.value, unit, f.peak,
                                             std::max(f.clock_max_mhz, clock_mhz));
                if (f.limit.above) {
                    f.status = "above_peak";
                    f.reason = f.limit.reason;
                }
            }
        }
        return f;
    }

private:
    const cpn_backend& be() const { return od_.lib->backend(); }

    RunOutcome run_once(cpn_prepared* prep, uint64_t reps) {
        RunOutcome o;
        uint64_t reps_le = reps;  // little-endian hosts only (x86-64, arm64, riscv64)
        cpn_buffer in{CPN_BENCH_REPS_INPUT, &reps_le, sizeof reps_le};
        std::string result(4096, '\0');
        cpn_run_io io{};
        io.struct_size = sizeof io;
        io.inputs = &in;
        io.input_count = 1;
        io.result_json = result.data();
        io.result_json_capacity = result.size();
        cpn_run_control ctl{};
        ctl.struct_size = sizeof ctl;
        ctl.cancel = opt_.cancel != nullptr ? reinterpret_cast<const volatile int32_t*>(opt_.cancel) : nullptr;
        cpn_msg err{};
        o.status = be().run(prep, &io, &ctl, &err);
        if (o.status != CPN_OK) {
            o.error = err.text;
            return o;
        }
        result.resize(std::strlen(result.c_str()));
        o.result = nlohmann::json::parse(result, nullptr, false);
        if (o.result.is_discarded() || !o.result.is_object()) {
            o.status = CPN_E_INTERNAL;
            o.error = "the plugin's result_json is not a JSON object: " + result.substr(0, 200);
            return o;
        }
        if (!o.result.value("verified", false)) {
            o.status = CPN_E_INTERNAL;
            o.error = "the plugin did not verify its result (\"verified\" is not true)";
            return o;
        }
        const double ops = o.result.value("ops", 0.0), secs = o.result.value("seconds", 0.0);
        if (!(ops > 0) || !(secs > 0)) {
            o.status = CPN_E_INTERNAL;
            o.error = "the plugin reported ops " + std::to_string(ops) + " in " + std::to_string(secs) +
                      " s: both must be positive";
        }
        return o;
    }

    /* Rate of one sample in the figure's unit. */
    static double rate_of(const nlohmann::json& r, const std::string& unit, int threads, double scale) {
        const double ops = r.value("ops", 0.0), secs = r.value("seconds", 1.0);
        if (unit == "s") return secs / ops;  // latency per launch
        if (unit == "MHz") return ops / secs / std::max(1, r.value("threads", threads > 0 ? threads : 1)) / 1e6;
        return ops / secs * scale;
    }

    std::string fail(Figure& f, cpn_status st, const std::string& what) {
        f.reason = what;
        if (st == CPN_E_CANCELLED) return "cancelled";
        if (st == CPN_E_DEVICE_LOST) device_lost_ = true;
        return "failed";
    }

public:
    bool device_lost() const { return device_lost_; }

private:
    std::string measure_into(Figure& f, const std::string& params, int threads, double scale, const std::string* blob) {
        cpn_workload w{};
        w.struct_size = sizeof w;
        w.kind = f.kind.c_str();
        w.params_json = params.c_str();
        if (blob != nullptr) {
            w.blob = blob->data();
            w.blob_size = blob->size();
        }
        cpn_query_result q{};
        q.struct_size = sizeof q;
        cpn_msg err{};
        if (be().query == nullptr || be().prepare == nullptr || be().run == nullptr)
            return (f.reason = "the backend has no execution functions", "unsupported");
        cpn_status st = be().query(od_.handle, &w, &q, &err);
        if (st != CPN_OK) return fail(f, st, std::string("query: ") + err.text);
        if (!q.supported) return (f.reason = q.reason, "unsupported");
        cpn_prepared* prep = nullptr;
        st = be().prepare(od_.handle, &w, &prep, &err);
        if (st == CPN_E_UNSUPPORTED) return (f.reason = err.text, "unsupported");
        if (st != CPN_OK) return fail(f, st, std::string("prepare: ") + err.text);
        struct Release {
            const cpn_backend& b;
            cpn_prepared* p;
            ~Release() { if (b.release != nullptr) b.release(p); }
        } release{be(), prep};

        // Calibrate: grow reps until one sample lasts the planned time. The first run also pays
        // one-time costs (thread pools, allocations, cold caches), so it never ends the
        // calibration by itself: a first run that looks long enough is timed again.
        uint64_t reps = 1;
        bool settled = false;  // the last run was at the final reps
        RunOutcome o;
        for (int i = 0; i < 30; ++i) {
            if (cancelled()) return (f.reason = "cancelled", "cancelled");
            o = run_once(prep, reps);
            if (o.status != CPN_OK) return fail(f, o.status, "run: " + o.error);
            const double secs = o.result.value("seconds", 0.0);
            if (secs >= plan_.sample_seconds * 0.7) {
                if (i > 0) {
                    settled = true;
                    break;
                }
                continue;
            }
            reps = next_reps(reps, secs, plan_.sample_seconds);
        }
        f.reps = reps;
        f.check = o.result.value("check", "");
        if (o.result.contains("bytes") && o.result["bytes"].is_number_unsigned()) f.bytes = o.result["bytes"];
        // The calibration's last run, at the final reps and never the first run of all, was
        // already a warm-up sample.
        for (int i = settled ? 1 : 0; i < plan_.warmup; ++i) {
            o = run_once(prep, reps);
            if (o.status != CPN_OK) return fail(f, o.status, "run: " + o.error);
        }
        std::vector<double> rates;
        std::vector<double> clocks;
        std::map<std::string, std::vector<double>> details;  // the plugin's extra figures, per key
        int throttled = 0, preempted = 0;
        bool busy = false;
        const double t0 = now_s();
        for (;;) {
            if (cancelled()) return (f.reason = "cancelled", "cancelled");
            o = run_once(prep, reps);
            if (o.status != CPN_OK) return fail(f, o.status, "run: " + o.error);
            if (o.result.value("throttled", false)) {
                if (++throttled > plan_.max_throttled)
                    return fail(f, CPN_E_UNAVAILABLE, "the device stayed throttled for " +
                                                          std::to_string(throttled) + " samples");
                continue;
            }
            if (o.result.value("preempted", false)) {
                // Discarded while there is hope of a quiet moment; on a node that stays busy the
                // figure is taken as it is, and says so, rather than not at all.
                if (preempted < 2 * plan_.max_throttled) {
                    ++preempted;
                    continue;
                }
                busy = true;
            }
            rates.push_back(rate_of(o.result, f.unit, threads, scale));
            if (o.result.contains("detail") && o.result["detail"].is_object())
                for (const auto& [key, v] : o.result["detail"].items())
                    if (v.is_number()) details[key].push_back(v.get<double>());
            if (o.result.contains("clock_mhz") && o.result["clock_mhz"].is_number())
                clocks.push_back(o.result["clock_mhz"].get<double>());
            if (should_stop(rates, plan_, now_s() - t0)) break;
        }
        if (o.result.contains("threads") && o.result["threads"].is_number_unsigned())
            f.threads = o.result["threads"].get<int>();
        for (const auto& [key, values] : details) f.detail[key] = summarise(values).median;
        f.stats = summarise(rates);
        f.stats.discarded_throttled = throttled;
        f.stats.discarded_preempted = preempted;
        if (busy)
            f.reason = "measured on a busy node: after " + std::to_string(preempted) +
                       " preempted samples were discarded, the rest were taken as they came (the figure may be low)";
        f.value = f.stats.median;
        if (!clocks.empty()) {
            f.clock_mhz = summarise(clocks).median;
            f.clock_max_mhz = *std::max_element(clocks.begin(), clocks.end());
        }
        return "ok";
    }

    const Device& dev_;
    OpenDevice& od_;
    const SuiteOptions& opt_;
    SamplingPlan plan_;
    bool device_lost_ = false;
};

std::string plugin_path(const Inventory& inv, const SuiteOptions& opt, const std::string& backend) {
    for (const PluginReport& p : inv.plugins)
        if (p.name == backend && !p.path.empty()) return p.path;
    return opt.plugin_dir + "/libcpn-backend-" + backend + ".so";
}

Result<int> open_path(const Inventory& inv, const SuiteOptions& opt, const RuntimePath& rp, OpenDevice& od) {
    PluginLoadError le;
    od.lib = PluginLibrary::open(plugin_path(inv, opt, rp.backend), le);
    if (!od.lib) return Status(Code::unavailable, rp.backend + ": " + le.stage + ": " + le.reason);
    const cpn_backend& b = od.lib->backend();
    cpn_msg err{};
    cpn_probe_info pi{};
    pi.struct_size = sizeof pi;
    if (b.probe != nullptr && b.probe(&pi, &err) != CPN_OK)
        return Status(Code::unavailable, rp.backend + ": probe: " + err.text);
    if (b.probe != nullptr && !pi.usable) return Status(Code::unavailable, rp.backend + ": " + pi.reason);
    uint32_t count = 0;
    if (b.device_count != nullptr && b.device_count(&count, &err) != CPN_OK)
        return Status(Code::unavailable, rp.backend + ": device_count: " + err.text);
    if (b.device_open == nullptr) return Status(Code::unsupported, rp.backend + ": no execution half");
    if (b.device_open(rp.index, &od.handle, &err) != CPN_OK)
        return Status(Code::unavailable, rp.backend + ": device_open(" + std::to_string(rp.index) + "): " + err.text);
    return 0;
}

/* Which kinds a path measures: the clock only on the native CPU path; with one worker thread
 * (CPU), only the clock, compute and memory figures. */
bool planned(const KindInfo& k, bool cpu, int threads) {
    const bool is_clock = std::strcmp(k.kind, "bench.clock") == 0;
    if (is_clock) return cpu;
    if (cpu && threads == 1)
        return std::strcmp(k.category, "compute") == 0 || std::strcmp(k.category, "memory") == 0;
    return true;
}

int planned_count(bool cpu) {
    int n = 0;
    for (int t : cpu ? std::vector<int>{0, 1} : std::vector<int>{-1})
        for (const KindInfo& k : kinds()) n += planned(k, cpu, t) ? 1 : 0;
    return n;
}

std::string params_for(const KindInfo& k, int threads, uint64_t bytes) {
    nlohmann::json p = nlohmann::json::object();
    if (threads >= 0) p["threads"] = threads;
    if (std::strcmp(k.category, "memory") == 0 || std::strcmp(k.category, "transfer") == 0) p["bytes"] = bytes;
    if (std::strcmp(k.category, "memory") == 0) p["seed"] = 12345;
    return p.dump();
}

void measure_path(const Inventory& inv, const Device& dev, const RuntimePath& rp, const SuiteOptions& opt,
                  DeviceResult& out, int& done, int total, double& device_clock_mhz) {
    OpenDevice od;
    Result<int> opened = open_path(inv, opt, rp, od);
    auto report = [&](const Figure& f) {
        ++done;
        if (opt.on_progress) opt.on_progress({dev.id, rp.backend, f.name, done, total, f.status, f.value, f.unit});
    };
    SamplingPlan plan = opt.full ? full_plan() : quick_plan();
    if (opt.sample_seconds_override > 0) plan.sample_seconds = opt.sample_seconds_override;
    const bool cpu = dev.device_class == DeviceClass::cpu && rp.backend == "cpu";
    const uint64_t mem_bytes = opt.mem_bytes_override ? opt.mem_bytes_override : memory_bench_bytes(dev);
    const uint64_t xfer_bytes = opt.mem_bytes_override ? opt.mem_bytes_override : (opt.full ? 256ull : 64ull) << 20;
    std::vector<int> thread_counts = cpu ? std::vector<int>{0, 1} : std::vector<int>{-1};
    const std::vector<TaskReference> refs = task_references();
    if (!opened.ok()) {
        for (int t : thread_counts)
            for (const KindInfo& k : kinds()) {
                if (!planned(k, cpu, t)) continue;
                Figure f;
                f.name = std::string(k.name) + (t == 1 ? ".1core" : "");
                f.kind = k.kind;
                f.backend = rp.backend;
                f.status = "failed";
                f.reason = opened.status().message();
                report(f);
                out.figures.push_back(f);
            }
        return;
    }
    Measurer m(dev, od, opt, plan);
    for (int threads : thread_counts) {
        // Other paths to the CPU (OpenCL on PoCL) run on the same cores: their peaks use the
        // clock the native path measured in this run.
        double clock = cpu ? 0 : device_clock_mhz;
        for (const KindInfo& k : kinds()) {
            const bool is_clock = std::strcmp(k.kind, "bench.clock") == 0;
            if (!planned(k, cpu, threads)) continue;
            std::string name = k.name;
            if (threads == 1) name += ".1core";
            if (opt.on_progress) opt.on_progress({dev.id, rp.backend, name, done, total, "", 0, k.unit});
            Figure f;
            if (m.device_lost()) {
                f.name = name;
                f.kind = k.kind;
                f.status = "failed";
                f.reason = "the device was lost earlier in this run";
            } else if (m.cancelled()) {
                f.name = name;
                f.kind = k.kind;
                f.status = "cancelled";
                f.reason = "cancelled";
            } else {
                const uint64_t bytes = std::strcmp(k.category, "transfer") == 0 ? xfer_bytes : mem_bytes;
                f = m.measure(k.kind, name, k.unit, k.category, params_for(k, cpu ? threads : -1, bytes),
                              cpu ? threads : 0, 1.0, clock);
            }
            f.backend = rp.backend;
            if (is_clock && f.status == "ok") {
                clock = f.value;
                if (threads == 0) device_clock_mhz = f.value;
            }
            report(f);
            out.figures.push_back(std::move(f));
        }
    }
    for (const TaskReference& ref : refs) {
        const std::string name = "task." + ref.task_kind;
        if (opt.on_progress) opt.on_progress({dev.id, rp.backend, name, done, total, "", 0, ref.unit});
        std::shared_ptr<const std::string> blob;
        if (ref.make_blob) blob = ref.make_blob();
        Figure f = m.measure(ref.workload_kind, name, ref.unit, "task", ref.params_json, 0, ref.scale, 0, blob.get());
        f.backend = rp.backend;
        if (f.status == "ok") f.check = ref.description + (f.check.empty() ? "" : "; " + f.check);
        report(f);
        out.figures.push_back(std::move(f));
    }
}

}  // namespace

BenchReport run_suite(const Inventory& inv, const SuiteOptions& opt) {
    BenchReport r;
    r.suite_version = CPN_BENCH_SUITE_VERSION;
    r.agent_version = inv.agent_version;
    r.mode = opt.full ? "full" : "quick";
    r.node_id = inv.node.id;
    r.timestamp_ms = static_cast<int64_t>(std::time(nullptr)) * 1000;
    const double t0 = now_s();
    for (const Device& dev : inv.devices) {
        if (!opt.device_ids.empty() &&
            std::find(opt.device_ids.begin(), opt.device_ids.end(), lower(dev.id)) == opt.device_ids.end())
            continue;
        DeviceResult d;
        d.device_id = dev.id;
        d.model = dev.model;
        d.vendor = dev.vendor;
        d.device_class = to_string(dev.device_class);
        d.provenance = nlohmann::json::object();
        const double d0 = now_s();
        if (dev.runtimes.empty()) {
            d.status = "skipped";
            d.reason = "no runtime claimed this device: " + (dev.health.reason.empty() ? std::string("driver missing") : dev.health.reason);
            r.devices.push_back(std::move(d));
            continue;
        }
        const std::vector<const RuntimePath*> paths = paths_to_measure(dev, opt.full);
        const bool cpu = dev.device_class == DeviceClass::cpu;
        int total = 0;
        for (const RuntimePath* p : paths) {
            const bool native_cpu = cpu && p->backend == "cpu";
            total += planned_count(native_cpu);
            total += static_cast<int>(task_references().size());
            d.backends.push_back(p->backend);
            d.provenance[p->backend] = {{"runtime_name", p->runtime_name},
                                        {"runtime_version", p->runtime_version},
                                        {"driver_version", p->driver_version},
                                        {"native_name", p->native_name}};
        }
        int done = 0;
        double device_clock_mhz = 0;
        for (const RuntimePath* p : paths) measure_path(inv, dev, *p, opt, d, done, total, device_clock_mhz);
        int ok = 0, failed = 0, cancelled = 0;
        std::string first_failure;
        for (const Figure& f : d.figures) {
            if (f.status == "ok") ++ok;
            if (f.status == "failed") {
                ++failed;
                if (first_failure.empty()) first_failure = f.name + ": " + f.reason;
            }
            if (f.status == "cancelled") ++cancelled;
        }
        if (cancelled > 0) {
            d.status = "cancelled";
            d.reason = "cancelled";
        } else if (failed > 0) {
            d.status = ok > 0 ? "partial" : "failed";
            d.reason = std::to_string(failed) + " figure(s) failed; first: " + first_failure;
        }
        d.seconds = now_s() - d0;
        r.devices.push_back(std::move(d));
        if (opt.cancel != nullptr && opt.cancel->load() != 0) {
            r.cancelled = true;
            break;
        }
    }
    r.seconds = now_s() - t0;
    return r;
}

/* ---- JSON -------------------------------------------------------------------------------- */

namespace {
nlohmann::json peak_json(const Peak& p) {
    nlohmann::json j = {{"known", p.known}};
    if (p.known) {
        j["value"] = p.value;
        j["formula"] = p.formula;
        nlohmann::json in = nlohmann::json::array();
        for (const PeakInput& i : p.inputs)
            in.push_back({{"name", i.name}, {"value", i.value}, {"unit", i.unit}, {"source", i.source}});
        j["inputs"] = std::move(in);
    } else {
        j["reason"] = p.reason;
    }
    return j;
}
Peak peak_from_json(const nlohmann::json& j) {
    Peak p;
    p.known = j.value("known", false);
    p.value = j.value("value", 0.0);
    p.formula = j.value("formula", "");
    p.reason = j.value("reason", "");
    if (j.contains("inputs"))
        for (const auto& i : j["inputs"])
            p.inputs.push_back({i.value("name", ""), i.value("value", 0.0), i.value("unit", ""), i.value("source", "")});
    return p;
}
}  // namespace

void to_json(nlohmann::json& j, const Figure& f) {
    j = {{"name", f.name}, {"kind", f.kind}, {"backend", f.backend}, {"category", f.category},
         {"unit", f.unit}, {"status", f.status}};
    if (!f.reason.empty()) j["reason"] = f.reason;
    if (f.status == "ok" || f.status == "above_peak") {
        j["value"] = f.value;
        j["stats"] = {{"samples", f.stats.samples}, {"discarded_throttled", f.stats.discarded_throttled},
                      {"discarded_preempted", f.stats.discarded_preempted},
                      {"median", f.stats.median}, {"mean", f.stats.mean}, {"min", f.stats.min},
                      {"max", f.stats.max}, {"cv", f.stats.cv}};
        j["reps"] = f.reps;
        if (f.bytes) j["bytes"] = f.bytes;
        if (f.threads > 0) j["threads"] = f.threads;
        if (f.clock_mhz > 0) j["clock_mhz"] = f.clock_mhz;
        j["peak"] = peak_json(f.peak);
        if (f.peak.known) j["efficiency"] = f.efficiency;
        if (f.peak.known && f.limit.bound > 0)
            j["limit"] = {{"value", f.limit.bound}, {"clock_mhz", f.limit.bound_clock_mhz},
                          {"tolerance", f.limit.tolerance}};
        j["check"] = f.check;
        j["seconds"] = f.seconds;
        if (!f.detail.empty()) j["detail"] = f.detail;
    }
}

void from_json(const nlohmann::json& j, Figure& f) {
    f.name = j.value("name", "");
    f.kind = j.value("kind", "");
    f.backend = j.value("backend", "");
    f.category = j.value("category", "");
    f.unit = j.value("unit", "");
    f.status = j.value("status", "");
    f.reason = j.value("reason", "");
    f.value = j.value("value", 0.0);
    if (j.contains("stats")) {
        const auto& s = j["stats"];
        f.stats.samples = s.value("samples", 0);
        f.stats.discarded_throttled = s.value("discarded_throttled", 0);
        f.stats.discarded_preempted = s.value("discarded_preempted", 0);
        f.stats.median = s.value("median", 0.0);
        f.stats.mean = s.value("mean", 0.0);
        f.stats.min = s.value("min", 0.0);
        f.stats.max = s.value("max", 0.0);
        f.stats.cv = s.value("cv", 0.0);
    }
    f.reps = j.value("reps", uint64_t{0});
    f.bytes = j.value("bytes", uint64_t{0});
    f.threads = j.value("threads", 0);
    f.clock_mhz = j.value("clock_mhz", 0.0);
    if (j.contains("peak")) f.peak = peak_from_json(j["peak"]);
    f.efficiency = j.value("efficiency", 0.0);
    if (j.contains("limit") && j["limit"].is_object()) {
        f.limit.bound = j["limit"].value("value", 0.0);
        f.limit.bound_clock_mhz = j["limit"].value("clock_mhz", 0.0);
        f.limit.tolerance = j["limit"].value("tolerance", 1.0);
        f.limit.above = f.status == "above_peak";
    }
    f.check = j.value("check", "");
    f.seconds = j.value("seconds", 0.0);
    f.detail = j.value("detail", std::map<std::string, double>{});
}

void to_json(nlohmann::json& j, const DeviceResult& d) {
    j = {{"device_id", d.device_id}, {"model", d.model}, {"vendor", d.vendor}, {"class", d.device_class},
         {"status", d.status}, {"backends", d.backends}, {"figures", d.figures},
         {"provenance", d.provenance.is_null() ? nlohmann::json::object() : d.provenance}, {"seconds", d.seconds}};
    if (!d.reason.empty()) j["reason"] = d.reason;
}

void from_json(const nlohmann::json& j, DeviceResult& d) {
    d.device_id = j.value("device_id", "");
    d.model = j.value("model", "");
    d.vendor = j.value("vendor", "");
    d.device_class = j.value("class", "");
    d.status = j.value("status", "");
    d.reason = j.value("reason", "");
    d.backends = j.value("backends", std::vector<std::string>{});
    d.figures = j.value("figures", std::vector<Figure>{});
    d.provenance = j.value("provenance", nlohmann::json::object());
    d.seconds = j.value("seconds", 0.0);
}

void to_json(nlohmann::json& j, const BenchReport& r) {
    j = {{"suite_version", r.suite_version}, {"agent_version", r.agent_version}, {"mode", r.mode},
         {"node_id", r.node_id}, {"timestamp_ms", r.timestamp_ms}, {"seconds", r.seconds},
         {"cancelled", r.cancelled}, {"devices", r.devices}};
}

void from_json(const nlohmann::json& j, BenchReport& r) {
    r.suite_version = j.value("suite_version", "");
    r.agent_version = j.value("agent_version", "");
    r.mode = j.value("mode", "");
    r.node_id = j.value("node_id", "");
    r.timestamp_ms = j.value("timestamp_ms", int64_t{0});
    r.seconds = j.value("seconds", 0.0);
    r.cancelled = j.value("cancelled", false);
    r.devices = j.value("devices", std::vector<DeviceResult>{});
}

}  // namespace cpn::bench
