// outbox_append.cpp: cost of a durable (fsync'd) outbox append, the price every telemetry
// message and ack pays before it is published. Usage: cpn-bench-outbox-append [count=1000] [dir]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "store/outbox.hpp"

int main(int argc, char** argv) {
    int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    std::string dir = argc > 2 ? argv[2] : (std::filesystem::temp_directory_path() / "cpn-bench-outbox").string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto ob = cpn::Outbox::open(dir + "/outbox.db", cpn::OutboxLimits{});
    if (!ob.ok()) {
        std::fprintf(stderr, "%s\n", ob.status().message().c_str());
        return 1;
    }
    const std::string payload(1024, 'x');
    std::vector<double> append_ms, remove_ms;
    for (int i = 0; i < n; ++i) {
        auto t = std::chrono::steady_clock::now();
        auto id = ob.value()->append("telemetry", "cpn/v1/nodes/n1/telemetry", payload, 1, i + 1);
        append_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
        if (!id.ok()) {
            std::fprintf(stderr, "%s\n", id.status().message().c_str());
            return 1;
        }
    }
    auto batch = ob.value()->peek(static_cast<size_t>(n));
    for (const auto& m : batch.value()) {
        auto t = std::chrono::steady_clock::now();
        (void)ob.value()->remove(m.id);
        remove_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
    }
    auto report = [](const char* what, std::vector<double>& v) {
        std::sort(v.begin(), v.end());
        std::printf("%-28s n=%zu  median %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", what, v.size(),
                    v[v.size() / 2], v[v.size() * 9 / 10], v[v.size() * 99 / 100], v.back());
    };
    report("append 1 KB (fsync'd)", append_ms);
    report("remove after PUBACK", remove_ms);
    std::filesystem::remove_all(dir);
    return 0;
}
