// discovery_stages.cpp: the in-process stages of discovery, one Google Benchmark each.
#include <benchmark/benchmark.h>

#include "inventory/cpu_scan.hpp"
#include "inventory/merge.hpp"
#include "inventory/pci_scan.hpp"

namespace {

void BM_ScanHost(benchmark::State& st) {
    for (auto _ : st) benchmark::DoNotOptimize(cpn::scan_host());
}
BENCHMARK(BM_ScanHost)->Unit(benchmark::kMillisecond);

void BM_ScanPciThisMachine(benchmark::State& st) {
    for (auto _ : st) benchmark::DoNotOptimize(cpn::scan_pci("/sys", "/usr/share/misc/pci.ids"));
}
BENCHMARK(BM_ScanPciThisMachine)->Unit(benchmark::kMillisecond);

void BM_ScanPciFixtureWithNames(benchmark::State& st) {
    const std::string root = std::string(CPN_FIXTURES_DIR) + "/sysfs/gpu-no-driver";
    for (auto _ : st) benchmark::DoNotOptimize(cpn::scan_pci(root, "/usr/share/misc/pci.ids"));
}
BENCHMARK(BM_ScanPciFixtureWithNames)->Unit(benchmark::kMillisecond);

void BM_ScanPciFixtureNoNames(benchmark::State& st) {
    const std::string root = std::string(CPN_FIXTURES_DIR) + "/sysfs/gpu-no-driver";
    for (auto _ : st) benchmark::DoNotOptimize(cpn::scan_pci(root, ""));
}
BENCHMARK(BM_ScanPciFixtureNoNames)->Unit(benchmark::kMillisecond);

void BM_Merge64Gpus(benchmark::State& st) {
    // A dense node: 8 GPUs seen through 3 runtimes each plus 40 bus-only devices.
    std::vector<cpn::Device> plugin;
    for (int r = 0; r < 3; ++r)
        for (int g = 0; g < 8; ++g) {
            cpn::Device d;
            d.device_class = cpn::DeviceClass::gpu;
            char pci[32];
            std::snprintf(pci, sizeof pci, "0000:%02x:00.0", 0x10 + g);
            d.pci_address = pci;
            cpn::RuntimePath p;
            p.backend = r == 0 ? "cuda" : r == 1 ? "opencl" : "levelzero";
            d.runtimes.push_back(p);
            plugin.push_back(d);
        }
    for (auto _ : st) {
        std::vector<cpn::Device> base(1);
        base[0].device_class = cpn::DeviceClass::cpu;
        base[0].cpu = cpn::CpuDetails{};
        cpn::merge_devices(base, plugin);
        benchmark::DoNotOptimize(base);
    }
}
BENCHMARK(BM_Merge64Gpus)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
