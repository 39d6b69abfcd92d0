// bench_command.cpp: `cpn-agent bench`, the standalone hardware benchmarking mode: a progress
// bar per device (plain lines when not a terminal), a summary table, machine output (the
// capacity record, docs/schemas/capacity-record.schema.json), --compare against an earlier
// run, and a clean stop on Ctrl-C.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <spdlog/spdlog.h>

#include "bench/capacity.hpp"
#include "bench/capacity_cache.hpp"
#include "bench/suite.hpp"
#include "cli/commands.hpp"
#include "config/config.hpp"
#include "core/log.hpp"
#include "inventory/discovery.hpp"
#include "inventory/render.hpp"
#include "infer/infer_task.hpp"
#include "render/render_task.hpp"

namespace cpn::cli {

namespace {

std::atomic<int32_t> g_cancel{0};

extern "C" void on_interrupt(int) { g_cancel.store(1); }

struct BenchArgs {
    bool quick = false, full = false, json = false, yaml = false, no_store = false;
    std::vector<std::string> devices;
    std::string output, compare, plugin_dir;
};

/* "1.23 TFLOP/s", "45.6 GB/s", "3.2 us", "2596 MHz". */
std::string human(double v, const std::string& unit) {
    char buf[64];
    if (unit == "s") {
        if (v < 1e-3) std::snprintf(buf, sizeof buf, "%.2f us", v * 1e6);
        else std::snprintf(buf, sizeof buf, "%.3f ms", v * 1e3);
        return buf;
    }
    if (unit == "MHz") {
        std::snprintf(buf, sizeof buf, "%.0f MHz", v);
        return buf;
    }
    std::string base = unit.substr(0, unit.find('/'));
    std::string per = unit.find('/') == std::string::npos ? "" : unit.substr(unit.find('/'));
    if (base == "B") base = "B";
    static const char* kPrefix[] = {"", "K", "M", "G", "T", "P", "E"};
    int i = 0;
    while (std::fabs(v) >= 1000 && i < 6) {
        v /= 1000;
        ++i;
    }
    if (unit == "Mrays/s" || unit == "inferences/s") {
        std::snprintf(buf, sizeof buf, "%.3g %s", v * std::pow(1000, i), unit.c_str());
        return buf;
    }
    std::snprintf(buf, sizeof buf, "%.3g %s%s%s", v, kPrefix[i], base.c_str(), per.c_str());
    return buf;
}

class ProgressView {
public:
    explicit ProgressView(bool tty) : tty_(tty) {}
    void operator()(const bench::Progress& p) {
        if (tty_) {
            const int width = 30;
            const int filled = p.total > 0 ? p.done * width / p.total : 0;
            std::string bar(filled, '#');
            bar.resize(width, '.');
            std::fprintf(stderr, "\r\033[K%-10s %-8s [%s] %3d/%-3d %s", p.device_id.c_str(), p.backend.c_str(),
                         bar.c_str(), p.done, p.total, p.figure.c_str());
            if (p.done == p.total && !p.status.empty()) std::fputc('\n', stderr);
            std::fflush(stderr);
        } else if (!p.status.empty()) {
            if (p.status == "ok")
                std::fprintf(stderr, "bench: %s %s %s: %s (%d/%d)\n", p.device_id.c_str(), p.backend.c_str(),
                             p.figure.c_str(), human(p.value, p.unit).c_str(), p.done, p.total);
            else
                std::fprintf(stderr, "bench: %s %s %s: %s (%d/%d)\n", p.device_id.c_str(), p.backend.c_str(),
                             p.figure.c_str(), p.status.c_str(), p.done, p.total);
        }
    }

private:
    bool tty_;
};

/* Values of an earlier run (a capacity record or a bare report), by device/backend/figure. */
Result<std::map<std::string, double>> load_compare(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Code::not_found, path + ": cannot be read");
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return Status(Code::invalid_argument, path + ": not JSON");
    if (j.contains("l0")) j = j["l0"];
    else if (j.contains("report")) j = j["report"];
    if (!j.is_object() || !j.contains("devices") || !j["devices"].is_array())
        return Status(Code::invalid_argument, path + ": not a cpn-agent bench result (no \"devices\" list)");
    std::map<std::string, double> out;
    try {
        bench::BenchReport r = j.get<bench::BenchReport>();
        for (const auto& d : r.devices)
            for (const auto& f : d.figures)
                if (f.status == "ok") out[d.device_id + "/" + f.backend + "/" + f.name] = f.value;
    } catch (const std::exception& e) {
        return Status(Code::invalid_argument, path + ": " + e.what());
    }
    return out;
}

std::string summary_table(const bench::BenchReport& r, const std::map<std::string, double>* before,
                          const nlohmann::json& record) {
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"DEVICE", "BACKEND", "FIGURE", "VALUE", "PEAK", "EFF", "CV", "N", "STATUS"});
    if (before) rows[0].push_back("CHANGE");
    int unsupported = 0;
    for (const auto& d : r.devices) {
        if (d.status == "skipped" || (d.figures.empty() && !d.reason.empty())) {
            rows.push_back({d.device_id, "-", "-", "-", "-", "-", "-", "-", d.status + ": " + d.reason});
            if (before) rows.back().push_back("");
            continue;
        }
        for (const auto& f : d.figures) {
            if (f.status == "unsupported") {
                ++unsupported;
                continue;
            }
            char eff[32] = "-", cv[32] = "-", n[16] = "-";
            std::string value = "-", peak = "-";
            if (f.status == "ok" || f.status == "above_peak") {
                value = human(f.value, f.unit);
                if (f.peak.known) {
                    peak = human(f.peak.value, f.unit);
                    std::snprintf(eff, sizeof eff, "%.1f%%", 100 * f.efficiency);
                }
                std::snprintf(cv, sizeof cv, "%.2f%%", 100 * f.stats.cv);
                std::snprintf(n, sizeof n, "%d", f.stats.samples);
            }
            std::string status = f.status;
            if (f.stats.discarded_throttled) status += " (" + std::to_string(f.stats.discarded_throttled) + " throttled)";
            if (f.stats.discarded_preempted) status += " (" + std::to_string(f.stats.discarded_preempted) + " preempted)";
            if (f.status != "ok" && !f.reason.empty()) status += ": " + f.reason;
            if (f.status == "ok" && !f.reason.empty()) status += " (busy node: may be low)";
            rows.push_back({d.device_id, f.backend, f.name, value, peak, eff, cv, n, status});
            if (before) {
                auto it = before->find(d.device_id + "/" + f.backend + "/" + f.name);
                char ch[32] = "new";
                if (it != before->end() && it->second != 0 && f.status == "ok")
                    std::snprintf(ch, sizeof ch, "%+.1f%%", 100 * (f.value / it->second - 1));
                rows.back().push_back(ch);
            }
        }
    }
    std::vector<size_t> w(rows[0].size(), 0);
    for (const auto& row : rows)
        for (size_t i = 0; i + 1 < row.size(); ++i) w[i] = std::max(w[i], row[i].size());
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(w[i] - row[i].size() + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    char tail[512];
    std::snprintf(tail, sizeof tail, "\n%s mode, %.1f s; %d figure(s) not supported by their device (see --json for why)\n",
                  r.mode.c_str(), r.seconds, unsupported);
    out += tail;
    if (record.contains("l2")) {
        std::snprintf(tail, sizeof tail, "capacity: L2 %.3f", record["l2"].value("node", 0.0));
        out += tail;
        for (auto it = record["l1"]["node"].begin(); it != record["l1"]["node"].end(); ++it) {
            std::snprintf(tail, sizeof tail, ", %s %.3f", it.key().c_str(), it.value().get<double>());
            out += tail;
        }
        out += " (L1 relative to the reference node, docs/capacity.md)\n";
    }
    return out;
}

}  // namespace

std::function<int()> add_bench_command(CLI::App& app, const GlobalOptions& g) {
    auto args = std::make_shared<BenchArgs>();
    CLI::App* cmd = app.add_subcommand(
        "bench", "Benchmark every device into measured figures beside their theoretical peaks, and the "
                 "normalised capacity the daemon publishes");
    cmd->add_option("--device", args->devices, "Only this device id (repeatable; see `cpn-agent discover`)");
    auto* q = cmd->add_flag("--quick", args->quick, "Quick mode (default): the native backend per device, short samples");
    auto* f = cmd->add_flag("--full", args->full, "Full mode: every backend path, longer samples, tighter spread");
    q->excludes(f);
    auto* j = cmd->add_flag("--json", args->json, "Print the capacity record as JSON (docs/schemas/capacity-record.schema.json)");
    auto* y = cmd->add_flag("--yaml", args->yaml, "Print the capacity record as YAML");
    j->excludes(y);
    cmd->add_option("-o,--output", args->output, "Write the machine output (JSON unless --yaml) to this file");
    cmd->add_option("--compare", args->compare, "An earlier --json output: show the change of every figure");
    cmd->add_option("--plugin-dir", args->plugin_dir, "Override plugins.dir")->check(CLI::ExistingDirectory);
    cmd->add_flag("--no-store", args->no_store, "Do not update the capacity cache in state_dir");
    cmd->footer("Exit codes: 0 ok, 1 every device failed or the output could not be written, 2 usage error "
                "(also an unknown --device), 3 configuration error, 130 interrupted (Ctrl-C; nothing stored).");

    return [args, &g]() -> int {
        Config c;
        if (int rc = load_command_config(g, c); rc != kExitOk) return rc;
        std::map<std::string, double> before;
        if (!args->compare.empty()) {
            auto b = load_compare(args->compare);
            if (!b.ok()) {
                std::fprintf(stderr, "cpn-agent bench: --compare: %s\n", b.status().message().c_str());
                return kExitUsage;
            }
            before = b.value();
        }
        DiscoveryOptions opt = discovery_options(c);
        if (!args->plugin_dir.empty()) opt.plugin_dir = args->plugin_dir;
        std::vector<std::string> warnings;
        Inventory inv = discover(opt, &warnings);
        for (const std::string& w : warnings) spdlog::warn("discovery: {}", w);

        bench::SuiteOptions so;
        so.full = args->full;
        so.plugin_dir = opt.plugin_dir;
        for (const std::string& id : args->devices) {
            bool found = false;
            for (const Device& d : inv.devices) found = found || lower(d.id) == lower(id);
            if (!found) {
                std::string known;
                for (const Device& d : inv.devices) known += (known.empty() ? "" : ", ") + d.id;
                std::fprintf(stderr, "cpn-agent bench: --device %s: no such device (known: %s)\n", id.c_str(),
                             known.c_str());
                return kExitUsage;
            }
            so.device_ids.push_back(lower(id));
        }
        ProgressView view(::isatty(STDERR_FILENO) != 0);
        so.on_progress = [&view](const bench::Progress& p) { view(p); };
        g_cancel.store(0);
        so.cancel = &g_cancel;
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        struct sigaction old_int {}, old_term {};
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        render::register_render_reference();  // the task-level figures task.render
        infer::register_infer_reference();    // and task.infer
        bench::BenchReport report = bench::run_suite(inv, so);
        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGTERM, &old_term, nullptr);
        if (g_cancel.load() != 0) report.cancelled = true;

        const nlohmann::json record = bench::capacity_record(report, bench::normalization_from_config(c));
        if (!args->json && !args->yaml)
            std::fputs(summary_table(report, args->compare.empty() ? nullptr : &before, record).c_str(), stdout);
        std::string machine;
        if (args->json || args->yaml || !args->output.empty())
            machine = args->yaml ? json_to_yaml(record) : dump_json(record) + "\n";
        if (!args->output.empty()) {
            std::ofstream out(args->output, std::ios::binary | std::ios::trunc);
            out << machine;
            if (!out) {
                std::fprintf(stderr, "cpn-agent bench: cannot write %s\n", args->output.c_str());
                return kExitFailure;
            }
        } else if (args->json || args->yaml) {
            std::fwrite(machine.data(), 1, machine.size(), stdout);
        }
        if (report.cancelled) {
            std::fprintf(stderr, "cpn-agent bench: interrupted; partial figures shown, nothing stored\n");
            return 130;
        }
        // The whole node measured: this is the node's capacity from now on.
        if (!args->no_store && args->devices.empty()) {
            const std::string path = bench::capacity_cache_path(c.state_dir);
            std::error_code ec;
            std::filesystem::create_directories(c.state_dir, ec);  // a first run on a fresh node
            Status st = bench::save_capacity(path, inv, report);
            if (!st.ok()) spdlog::warn("capacity cache not updated: {}", st.message());
        }
        int ok_devices = 0;
        for (const auto& d : report.devices) ok_devices += d.status == "ok" || d.status == "partial";
        return ok_devices > 0 || report.devices.empty() ? kExitOk : kExitFailure;
    };
}

}  // namespace cpn::cli
