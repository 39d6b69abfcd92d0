// capacity_cache.cpp: fingerprinted, atomically written benchmark cache.
#include "bench/capacity_cache.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cpn_bench.h"

namespace cpn::bench {

nlohmann::json fingerprint_inputs(const Inventory& inv) {
    nlohmann::json devices = nlohmann::json::object();
    for (const Device& d : inv.devices) {
        nlohmann::json paths = nlohmann::json::object();
        for (const RuntimePath& p : d.runtimes)
            paths[p.backend + "#" + std::to_string(p.index)] = {{"runtime_version", p.runtime_version},
                                                                {"driver_version", p.driver_version},
                                                                {"native_name", p.native_name}};
        nlohmann::json dj = {{"class", to_string(d.device_class)}, {"vendor", d.vendor}, {"model", d.model},
                             {"compute_units", d.compute_units}, {"runtimes", paths}};
        if (d.device_class != DeviceClass::cpu) dj["memory_bytes"] = d.memory_bytes;
        if (d.cpu) dj["cpu"] = {{"isa", d.cpu->isa}, {"cores", d.cpu->cores}, {"threads", d.cpu->threads}};
        devices[d.id] = std::move(dj);
    }
    return {{"suite_version", CPN_BENCH_SUITE_VERSION}, {"devices", devices}};
}

std::string fingerprint(const Inventory& inv) {
    const std::string text = fingerprint_inputs(inv).dump();  // keys sorted: canonical
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string capacity_cache_path(const std::string& state_dir) { return state_dir + "/capacity.json"; }

Status save_capacity(const std::string& path, const Inventory& inv, const BenchReport& report) {
    const nlohmann::json j = {{"fingerprint", fingerprint(inv)},
                              {"fingerprint_inputs", fingerprint_inputs(inv)},
                              {"report", report}};
    const std::string text = j.dump(1) + "\n";
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return Status(Code::unavailable, "cannot write " + tmp + ": " + std::strerror(errno));
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            return Status(Code::unavailable, "cannot write " + tmp + ": " + std::strerror(e));
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        ::unlink(tmp.c_str());
        return Status(Code::unavailable, "cannot sync " + tmp + ": " + std::strerror(errno));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return Status(Code::unavailable, "cannot rename " + tmp + " to " + path + ": " + std::strerror(e));
    }
    const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    int dfd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
    return Status::Ok();
}

Result<CachedCapacity> load_capacity(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Code::not_found, path + ": no stored capacity");
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return Status(Code::invalid_argument, path + ": not valid JSON (a torn or foreign file); it will be re-measured");
    if (!j.contains("fingerprint") || !j["fingerprint"].is_string() || !j.contains("report") || !j["report"].is_object())
        return Status(Code::invalid_argument, path + ": missing \"fingerprint\" or \"report\"; it will be re-measured");
    CachedCapacity c;
    c.fingerprint = j["fingerprint"].get<std::string>();
    c.fingerprint_inputs = j.value("fingerprint_inputs", nlohmann::json::object());
    try {
        c.report = j["report"].get<BenchReport>();
    } catch (const std::exception& e) {
        return Status(Code::invalid_argument, path + ": report: " + e.what());
    }
    return c;
}

namespace {
std::string first_difference(const nlohmann::json& was, const nlohmann::json& now, const std::string& at) {
    if (was == now) return "";
    if (was.is_object() && now.is_object()) {
        for (auto it = now.begin(); it != now.end(); ++it) {
            const std::string where = at.empty() ? it.key() : at + "." + it.key();
            if (!was.contains(it.key())) return where + " is new";
            std::string d = first_difference(was[it.key()], it.value(), where);
            if (!d.empty()) return d;
        }
        for (auto it = was.begin(); it != was.end(); ++it)
            if (!now.contains(it.key())) return (at.empty() ? it.key() : at + "." + it.key()) + " is gone";
    }
    std::string a = was.dump(), b = now.dump();
    if (a.size() > 80) a = a.substr(0, 77) + "...";
    if (b.size() > 80) b = b.substr(0, 77) + "...";
    return at + " changed from " + a + " to " + b;
}
}  // namespace

std::string cache_invalid_reason(const CachedCapacity& cached, const Inventory& inv) {
    if (cached.fingerprint == fingerprint(inv)) return "";
    std::string why = first_difference(cached.fingerprint_inputs, fingerprint_inputs(inv), "");
    return why.empty() ? "the hardware/driver fingerprint changed" : why;
}

}  // namespace cpn::bench
