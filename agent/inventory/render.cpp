#include "inventory/render.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace cpn {
std::string human_bytes(double b) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (b >= 1024 && u < 5) {
        b /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
    return buf;
}

namespace {

/* A size in the table: "-" when unknown (0). */
std::string table_bytes(uint64_t b) { return b == 0 ? "-" : human_bytes(static_cast<double>(b)); }

/* Columns sized to their widest cell; the last column is never padded. */
std::string table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w;
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i) {
            if (w.size() <= i) w.push_back(0);
            w[i] = std::max(w[i], r[i].size());
        }
    std::ostringstream s;
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        s << line << "\n";
    }
    return s.str();
}

void emit(YAML::Emitter& out, const nlohmann::json& j) {
    switch (j.type()) {
        case nlohmann::json::value_t::object:
            out << YAML::BeginMap;
            for (const auto& [k, v] : j.items()) {
                out << YAML::Key << k << YAML::Value;
                emit(out, v);
            }
            out << YAML::EndMap;
            break;
        case nlohmann::json::value_t::array:
            out << YAML::BeginSeq;
            for (const auto& v : j) emit(out, v);
            out << YAML::EndSeq;
            break;
        case nlohmann::json::value_t::string: {
            const std::string& s = j.get_ref<const std::string&>();
            out << YAML::DoubleQuoted << s;
            break;
        }
        case nlohmann::json::value_t::boolean: out << j.get<bool>(); break;
        case nlohmann::json::value_t::number_integer: out << j.get<int64_t>(); break;
        case nlohmann::json::value_t::number_unsigned: out << j.get<uint64_t>(); break;
        case nlohmann::json::value_t::number_float: out << j.get<double>(); break;
        default: out << YAML::Null; break;
    }
}

}  // namespace

std::string dump_json(const nlohmann::json& j, int indent) {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string json_to_yaml(const nlohmann::json& j) {
    // Round-trip through dump/parse so invalid UTF-8 is replaced before the emitter sees it.
    nlohmann::json clean = nlohmann::json::parse(dump_json(j, -1));
    YAML::Emitter out;
    emit(out, clean);
    return std::string(out.c_str()) + "\n";
}

std::string render_table(const Inventory& inv) {
    std::ostringstream s;
    s << "Node " << (inv.node.id.empty() ? inv.node.hostname : inv.node.id);
    if (!inv.node.site.empty()) s << " (site " << inv.node.site << ")";
    s << ": " << inv.node.os << " " << inv.node.arch << ", " << table_bytes(inv.node.memory_bytes)
      << " memory, " << inv.node.numa_nodes << " NUMA node" << (inv.node.numa_nodes == 1 ? "" : "s")
      << "\n\n";

    std::vector<std::vector<std::string>> rows{
        {"DEVICE", "CLASS", "VENDOR", "MODEL", "MEMORY", "UNITS", "CLOCK", "RUNTIMES", "HEALTH"}};
    for (const Device& d : inv.devices) {
        std::string rts;
        for (const RuntimePath& r : d.runtimes) rts += (rts.empty() ? "" : ",") + r.backend;
        std::string health = d.health.healthy ? (d.runtimes.empty() ? "no runtime" : "ok")
                                              : "unhealthy: " + d.health.reason;
        rows.push_back({d.id, to_string(d.device_class), d.vendor.empty() ? "-" : d.vendor,
                        d.model.empty() ? "-" : d.model, table_bytes(d.memory_bytes),
                        d.compute_units ? std::to_string(d.compute_units) : "-",
                        d.max_clock_mhz ? std::to_string(d.max_clock_mhz) + " MHz" : "-",
                        rts.empty() ? "-" : rts, health});
    }
    s << table(rows);

    for (const Device& d : inv.devices) {
        if (d.cpu) {
            const CpuDetails& c = *d.cpu;
            s << "\nCPU: " << c.sockets << " socket" << (c.sockets == 1 ? "" : "s") << ", " << c.cores
              << " cores, " << c.threads << " threads; L2 " << table_bytes(c.l2_bytes) << ", L3 "
              << table_bytes(c.l3_bytes) << "\n  ISA:";
            for (const std::string& f : c.isa) s << " " << f;
            s << "\n  precisions:";
            for (Precision p : d.precisions) s << " " << to_string(p);
            s << "\n";
        }
        for (const RuntimePath& r : d.runtimes) {
            if (r.backend == "cpu" && d.cpu) continue;
            s << "  " << d.id << " via " << r.backend << ": " << r.native_name;
            if (!r.runtime_version.empty()) s << " (" << r.runtime_name << " " << r.runtime_version << ")";
            s << "\n";
        }
        if (d.runtimes.empty() && !d.health.reason.empty())
            s << "  " << d.id << ": " << d.health.reason << "\n";
    }

    std::vector<std::vector<std::string>> prow{{"PLUGIN", "STATUS", "STAGE", "DEVICES", "TIME", "REASON"}};
    for (const PluginReport& p : inv.plugins) {
        char t[32];
        std::snprintf(t, sizeof t, "%.1f ms", p.total_ms);
        prow.push_back({p.name, p.status, p.stage, std::to_string(p.device_count), t,
                        p.reason.empty() ? "-" : p.reason});
    }
    s << "\n" << table(prow);
    char t[96];
    std::snprintf(t, sizeof t, "\nDiscovery: %.1f ms host and bus scan, %.1f ms backend probes (parallel)\n",
                  inv.core_ms, inv.plugins_ms);
    s << t;
    return s.str();
}

}  // namespace cpn
