// peak.cpp: theoretical peaks from discovered specs. The per-cycle rates are tables (CPU
// micro-architectures, NVIDIA compute capabilities), each entry naming its source; everything
// else (cores, SMs, clocks, bus widths) comes from discovery or from the run itself.
#include "bench/peak.hpp"

#include <algorithm>
#include <cstdio>

namespace cpn::bench {

namespace {

bool has_isa(const Device& d, const char* flag) {
    if (!d.cpu) return false;
    return std::find(d.cpu->isa.begin(), d.cpu->isa.end(), flag) != d.cpu->isa.end();
}

/* An integer attribute from the device or any of its runtime paths; -1 when absent. */
int64_t int_attr(const Device& d, const std::string& key) {
    auto get = [&](const Attributes& a) -> int64_t {
        auto it = a.find(key);
        if (it == a.end()) return -1;
        if (const auto* i = std::get_if<int64_t>(&it->second.value)) return *i;
        if (const auto* f = std::get_if<double>(&it->second.value)) return static_cast<int64_t>(*f);
        return -1;
    };
    int64_t v = get(d.attributes);
    for (const RuntimePath& p : d.runtimes) {
        if (v >= 0) break;
        v = get(p.attributes);
    }
    return v;
}

bool bool_attr(const Device& d, const std::string& key) {
    auto it = d.attributes.find(key);
    if (it == d.attributes.end()) return false;
    const auto* b = std::get_if<bool>(&it->second.value);
    return b != nullptr && *b;
}

std::string str_attr(const Device& d, const std::string& key) {
    auto get = [&](const Attributes& a) -> std::string {
        auto it = a.find(key);
        if (it == a.end()) return "";
        if (const auto* s = std::get_if<std::string>(&it->second.value)) return *s;
        return "";
    };
    std::string v = get(d.attributes);
    for (const RuntimePath& p : d.runtimes) {
        if (!v.empty()) break;
        v = get(p.attributes);
    }
    return v;
}

/* Intel server cores with two 512-bit FMA units per core (ports 0+1 fused and port 5). Parts
 * with one unit (some Xeon Bronze/Silver) exist; CPUID cannot tell them apart. */
CpuUarch intel_avx512_server(const char* name, bool bf16_fp16_amx) {
    CpuUarch u{name, 32, 64, 0, 0, 256, 0, 0,
               "Intel 64 and IA-32 Optimization Reference Manual: two 512-bit FMA units per core "
               "(Gold/Platinum); VNNI on both",
               false};
    if (bf16_fp16_amx) {
        u.fp16_flops = 128;      // AVX512-FP16: 32 lanes x FMA x 2 units
        u.bf16_flops = 128;      // VDPBF16PS: 16 lanes x 2 pairs x 2 x 2 units
        u.mm_bf16_flops = 2048;  // AMX-BF16: 1024 multiply-adds per cycle per core
        u.mm_int8_ops = 4096;    // AMX-INT8: 2048 multiply-adds per cycle per core
        u.source += "; AMX: 1024 BF16 / 2048 INT8 multiply-adds per cycle per core";
    }
    return u;
}

}  // namespace

CpuUarch cpu_uarch(const Device& d) {
    const std::string vendor = str_attr(d, "cpu-model.vendor_id");
    const int64_t family = int_attr(d, "cpu-model.family");
    const int64_t model = int_attr(d, "cpu-model.id");
    const std::string arch = d.cpu ? d.cpu->arch : "";
    CpuUarch u;
    if (vendor == "AMD" && family == 0x17) {
        if (model < 0x30) {
            u = {"Zen / Zen+", 8, 16, 0, 0, 0, 0, 0,
                 "AMD Software Optimization Guide for family 17h: two 128-bit FMA pipes", false};
        } else {
            u = {"Zen 2", 16, 32, 0, 0, 0, 0, 0,
                 "AMD Software Optimization Guide for family 17h models 30h+: two 256-bit FMA pipes",
                 false};
        }
    } else if (vendor == "AMD" && family == 0x19) {
        const bool zen4 = (model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) ||
                          (model >= 0xa0 && model <= 0xaf);
        if (zen4) {
            u = {"Zen 4", 16, 32, 0, 64, 128, 0, 0,
                 "AMD Software Optimization Guide for family 19h: two 256-bit FMA pipes, 512-bit "
                 "operations issue as two halves (VDPBF16PS 16 pairs, VPDPBUSD 32 MACs per pipe-cycle)",
                 false};
        } else {
            u = {"Zen 3", 16, 32, 0, 0, 0, 0, 0,
                 "AMD Software Optimization Guide for family 19h: two 256-bit FMA pipes", false};
        }
    } else if (vendor == "AMD" && family == 0x1a) {
        u = {"Zen 5", 32, 64, 0, 128, 256, 0, 0,
             "AMD Software Optimization Guide for family 1Ah: two 512-bit FMA pipes (full-width "
             "data path on server and desktop parts)",
             false};
    } else if (vendor == "Intel" && family == 6) {
        switch (model) {
            case 0x55: u = intel_avx512_server("Skylake-SP / Cascade Lake", false); break;
            case 0x6a:
            case 0x6c: u = intel_avx512_server("Ice Lake-SP", false); break;
            case 0x8f: u = intel_avx512_server("Sapphire Rapids", true); break;
            case 0xcf: u = intel_avx512_server("Emerald Rapids", true); break;
            case 0xad:
            case 0xae: u = intel_avx512_server("Granite Rapids", true); break;
            default: break;
        }
        const bool amx = has_isa(d, "amx_tile") || has_isa(d, "amx_bf16") || has_isa(d, "amx_int8");
        if (u.name.empty() && amx && has_isa(d, "avx512f")) {
            // A model number not in the table (hypervisors often report a generic one) with
            // AMX: only Xeon server cores (Sapphire Rapids and later) have AMX, and those have
            // two 512-bit FMA units.
            u = intel_avx512_server("Intel Xeon with AMX (model not in the table)",
                                    has_isa(d, "amx_bf16") && has_isa(d, "avx512_fp16"));
            u.source = "not in the table, identified by AMX: " + u.source;
            u.assumed = true;
        } else if (u.name.empty() && has_isa(d, "avx512f")) {
            u = {"unknown Intel AVX-512 core", 32, 64, 0, 0, 0, 0, 0,
                 "not in the table: assumed two 512-bit FMA units (server cores; client cores "
                 "with AVX-512 have one, which makes this peak twice theirs)",
                 true};
        }
        if (u.name.empty() && has_isa(d, "avx2") && has_isa(d, "fma")) {
            u = {"Intel AVX2 core", 16, 32, 0, 0, has_isa(d, "avx_vnni") ? 128.0 : 0.0, 0, 0,
                 "Intel Optimization Reference Manual: two 256-bit FMA units (Haswell and later "
                 "client cores)",
                 false};
        }
    }
    if (vendor == "Arm" && (arch == "aarch64" || arch == "arm64")) {
        // Arm Ltd cores by CPU part. Rates for NEON (the CPU backend's arm64 kernels): FMLA on
        // every FP/ASIMD pipe, SDOT 16 MACs per 128-bit pipe, FP16 arithmetic twice fp32's lanes.
        auto neon = [](const char* name, double pipes, const char* guide) {
            return CpuUarch{name, 4 * pipes, 8 * pipes, 16 * pipes, 0, 32 * pipes, 0, 0,
                            std::string(guide) + ": " + std::to_string(static_cast<int>(pipes)) +
                                " 128-bit FP/ASIMD pipes, each with FMLA (and SDOT where the ISA "
                                "has dot products)",
                            false};
        };
        switch (model) {
            case 0xd08: u = neon("Cortex-A72", 2, "Cortex-A72 Software Optimization Guide"); break;
            case 0xd0b: u = neon("Cortex-A76", 2, "Cortex-A76 Software Optimization Guide"); break;
            case 0xd0c: u = neon("Neoverse N1", 2, "Neoverse N1 Software Optimization Guide"); break;
            case 0xd49: u = neon("Neoverse N2", 2, "Neoverse N2 Software Optimization Guide"); break;
            case 0xd40: u = neon("Neoverse V1", 4, "Neoverse V1 Software Optimization Guide"); break;
            case 0xd4f: u = neon("Neoverse V2", 4, "Neoverse V2 Software Optimization Guide"); break;
            default: break;
        }
    }
    if (u.name.empty()) {
        // Not in the table: a labelled guess from the ISA, so a figure can still be judged.
        if (arch == "x86_64" && has_isa(d, "avx512f")) {
            u = {"unknown AVX-512 core", 32, 64, 0, 0, 0, 0, 0,
                 "not in the table: assumed two 512-bit FMA units", true};
        } else if (arch == "x86_64" && has_isa(d, "avx2") && has_isa(d, "fma")) {
            u = {"unknown AVX2 core", 16, 32, 0, 0, 0, 0, 0,
                 "not in the table: assumed two 256-bit FMA units", true};
        } else if (arch == "x86_64") {
            u = {"unknown SSE core", 4, 8, 0, 0, 0, 0, 0,
                 "not in the table: assumed one 128-bit multiply and one add per cycle", true};
        } else if (arch == "aarch64" || arch == "arm64") {
            // The widest NEON cores have four pipes: an upper bound, so "above the peak" still
            // means impossible (two-pipe cores read half their efficiency; the label says why).
            u = {"unknown Arm core", 16, 32, 64, 0, 128, 0, 0,
                 "not in the table: assumed at most four 128-bit NEON FMA pipes (Neoverse V1/V2 "
                 "class; a two-pipe core reaches half of this)",
                 true};
        } else {
            u = {"unknown core", 2, 4, 0, 0, 0, 0, 0,
                 "not in the table: assumed one 128-bit FMA pipe (RVV VLEN unknown)", true};
        }
    }
    // A rate needs the instructions too: a table entry for a unit the ISA list lacks is dropped.
    if (!has_isa(d, "avx512_bf16") && !has_isa(d, "amx_bf16")) u.bf16_flops = 0;
    if (!has_isa(d, "avx512_fp16") && !has_isa(d, "fp16")) u.fp16_flops = 0;
    if (!has_isa(d, "avx512_vnni") && !has_isa(d, "avx_vnni") && !has_isa(d, "dotprod")) u.int8_ops = 0;
    if (!has_isa(d, "amx_bf16")) u.mm_bf16_flops = 0;
    if (!has_isa(d, "amx_int8")) u.mm_int8_ops = 0;
    if (arch == "x86_64" && !has_isa(d, "avx512f") && u.fp32_flops > 32) {
        u.fp32_flops = 32;  // no AVX-512 (disabled by the hypervisor or fused off): 256-bit
        u.fp64_flops = 16;
    }
    return u;
}

namespace {

Peak unknown(std::string reason) {
    Peak p;
    p.reason = std::move(reason);
    return p;
}

Peak cpu_peak(const Device& d, const std::string& kind, int threads, double clock_mhz) {
    if (kind.rfind("bench.mem.", 0) == 0)
        return unknown("memory channel count and speed are not discoverable without SMBIOS access");
    if (kind.rfind("bench.xfer.", 0) == 0 || kind == "bench.launch" || kind == "bench.clock")
        return unknown("no physical limit defined for " + kind + " on a CPU");
    const CpuUarch u = cpu_uarch(d);
    double per_cycle = 0;
    std::string unit = "FLOP/cycle/core";
    if (kind == "bench.fp64") per_cycle = u.fp64_flops;
    else if (kind == "bench.fp32") per_cycle = u.fp32_flops;
    else if (kind == "bench.fp16") per_cycle = u.fp16_flops;
    else if (kind == "bench.bf16") per_cycle = u.bf16_flops;
    else if (kind == "bench.int8") { per_cycle = u.int8_ops; unit = "op/cycle/core"; }
    else if (kind == "bench.mm.bf16") per_cycle = u.mm_bf16_flops;
    else if (kind == "bench.mm.int8") { per_cycle = u.mm_int8_ops; unit = "op/cycle/core"; }
    if (per_cycle <= 0) return unknown(u.name + " has no unit for " + kind);

    const int cores_all = d.cpu && d.cpu->cores > 0 ? d.cpu->cores : static_cast<int>(d.compute_units);
    const int cores = threads <= 0 ? cores_all : std::min(threads, std::max(cores_all, 1));
    Peak p;
    p.inputs.push_back({"cores", static_cast<double>(cores), "",
                        threads == 1 ? "one worker thread" : "cpu.cores (hwloc), physical cores: SMT siblings share the FMA units"});
    if (clock_mhz > 0) {
        p.inputs.push_back({"clock", clock_mhz, "MHz", "measured during the run (bench.clock: dependent adds)"});
    } else if (d.max_clock_mhz > 0) {
        clock_mhz = d.max_clock_mhz;
        p.inputs.push_back({"clock", clock_mhz, "MHz", "discovered clock (not measured: boost clocks may exceed it)"});
        p.clock_measured = false;
    } else {
        return unknown("the CPU clock is neither discovered nor measured");
    }
    p.inputs.push_back({"rate", per_cycle, unit, "uarch table: " + u.name + (u.assumed ? " (assumed)" : "") + ": " + u.source});
    p.known = true;
    p.clock_mhz = clock_mhz;
    p.value = cores * clock_mhz * 1e6 * per_cycle;
    p.formula = "cores x clock x " + unit;
    return p;
}

struct CcRates {
    double fp32_fma_lanes, fp64_fma_lanes, fp16_fma_lanes, bf16_fma_lanes, dp4a_lanes;
    double tc_fp16_flops, tc_bf16_flops, tc_tf32_flops, tc_int8_ops;  // dense, per SM per cycle
};

/* Per-SM, per-cycle rates by compute capability: NVIDIA CUDA C++ Programming Guide, table
 * "Throughput of Native Arithmetic Instructions", and the architecture whitepapers (V100, T4,
 * A100, GA102, AD102, H100) for dense tensor-core rates. */
bool cc_rates(int major, int minor, CcRates& r) {
    const int cc = major * 10 + minor;
    switch (cc) {
        case 70: case 72: r = {64, 32, 128, 0, 64, 1024, 0, 0, 0}; return true;
        case 75: r = {64, 2, 128, 0, 64, 512, 0, 0, 1024}; return true;
        case 80: r = {64, 32, 128, 128, 64, 2048, 2048, 1024, 4096}; return true;
        case 86: case 87: r = {128, 2, 128, 128, 64, 1024, 1024, 512, 2048}; return true;
        case 89: r = {128, 2, 128, 128, 64, 1024, 1024, 512, 2048}; return true;
        case 90: r = {128, 64, 256, 256, 64, 4096, 4096, 2048, 8192}; return true;
        case 100: case 103: r = {128, 64, 256, 256, 64, 8192, 8192, 4096, 16384}; return true;
        case 120: case 121: r = {128, 2, 128, 128, 64, 2048, 2048, 1024, 4096}; return true;
        default: return false;
    }
}

Peak cuda_peak(const Device& d, const std::string& kind, double clock_mhz) {
    const int64_t major = int_attr(d, "nvidia.com/gpu.compute.major");
    const int64_t minor = int_attr(d, "nvidia.com/gpu.compute.minor");
    if (major < 0 || minor < 0) return unknown("compute capability not reported");
    const double sms = d.compute_units;
    if (kind.rfind("bench.mem.", 0) == 0) {
        const int64_t bus = int_attr(d, "cuda.memory_bus_width_bits");
        const int64_t mclk = int_attr(d, "cuda.memory_clock_mhz");
        if (bus <= 0 || mclk <= 0) return unknown("memory bus width or clock not reported by the driver");
        Peak p;
        p.known = true;
        p.inputs = {{"bus width", static_cast<double>(bus), "bit", "CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH"},
                    {"memory clock", static_cast<double>(mclk), "MHz", "CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE"},
                    {"transfers per clock", 2, "", "double data rate"}};
        p.value = bus / 8.0 * mclk * 1e6 * 2;
        p.formula = "bus width / 8 x memory clock x 2";
        return p;
    }
    CcRates r{};
    if (!cc_rates(static_cast<int>(major), static_cast<int>(minor), r))
        return unknown("compute capability " + std::to_string(major) + "." + std::to_string(minor) +
                       " is not in the rate table");
    double per_sm = 0;
    std::string what;
    if (kind == "bench.fp32") { per_sm = 2 * r.fp32_fma_lanes; what = "FP32 FMA lanes x 2"; }
    else if (kind == "bench.fp64") { per_sm = 2 * r.fp64_fma_lanes; what = "FP64 FMA lanes x 2"; }
    else if (kind == "bench.fp16") { per_sm = 2 * r.fp16_fma_lanes; what = "FP16 FMA lanes (half2) x 2"; }
    else if (kind == "bench.bf16") { per_sm = 2 * r.bf16_fma_lanes; what = "BF16 FMA lanes (bfloat162) x 2"; }
    else if (kind == "bench.int8") { per_sm = 8 * r.dp4a_lanes; what = "DP4A lanes x 4 MACs x 2"; }
    else if (kind == "bench.mm.fp16") { per_sm = r.tc_fp16_flops; what = "dense tensor FP16 FLOP"; }
    else if (kind == "bench.mm.bf16") { per_sm = r.tc_bf16_flops; what = "dense tensor BF16 FLOP"; }
    else if (kind == "bench.mm.tf32") { per_sm = r.tc_tf32_flops; what = "dense tensor TF32 FLOP"; }
    else if (kind == "bench.mm.int8") { per_sm = r.tc_int8_ops; what = "dense tensor INT8 op"; }
    else return unknown("no physical limit defined for " + kind + " on a GPU");
    if (per_sm <= 0) return unknown("compute capability " + std::to_string(major) + "." +
                                    std::to_string(minor) + " has no unit for " + kind);
    Peak p;
    p.inputs.push_back({"SMs", sms, "", "CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT"});
    if (clock_mhz > 0) {
        p.inputs.push_back({"clock", clock_mhz, "MHz", "SM clock during the run (NVML)"});
    } else {
        clock_mhz = d.max_clock_mhz;
        p.inputs.push_back({"clock", clock_mhz, "MHz", "CU_DEVICE_ATTRIBUTE_CLOCK_RATE (maximum boost)"});
    }
    char src[160];
    std::snprintf(src, sizeof src, "compute capability %lld.%lld rate table: %s per SM per cycle",
                  static_cast<long long>(major), static_cast<long long>(minor), what.c_str());
    p.inputs.push_back({"rate", per_sm, "per SM per cycle", src});
    p.known = sms > 0 && clock_mhz > 0;
    if (!p.known) return unknown("SM count or clock not reported");
    p.clock_mhz = clock_mhz;
    p.value = sms * clock_mhz * 1e6 * per_sm;
    p.formula = "SMs x clock x rate";
    return p;
}

}  // namespace

Peak theoretical_peak(const Device& d, const std::string& kind, int threads, double clock_mhz) {
    if (d.device_class == DeviceClass::cpu) return cpu_peak(d, kind, threads, clock_mhz);
    const bool nvidia = int_attr(d, "nvidia.com/gpu.compute.major") >= 0;
    if (nvidia) return cuda_peak(d, kind, clock_mhz);
    return unknown("no per-unit rate table for " + (d.vendor.empty() ? std::string("this vendor") : d.vendor) +
                   " " + to_string(d.device_class) + " devices");
}

PeakVerdict judge_against_peak(const Device& d, const std::string& kind, int threads, double value,
                               const std::string& unit, const Peak& peak, double clock_max_mhz) {
    PeakVerdict v;
    if (!peak.known || peak.value <= 0) return v;
    v.bound = peak.value;
    v.bound_clock_mhz = peak.clock_mhz;
    if (peak.clock_measured && clock_max_mhz > v.bound_clock_mhz) {
        const Peak at_max = theoretical_peak(d, kind, threads, clock_max_mhz);
        if (at_max.known && at_max.value > v.bound) {
            v.bound = at_max.value;
            v.bound_clock_mhz = clock_max_mhz;
        }
    }
    const bool guest = d.device_class == DeviceClass::cpu && bool_attr(d, "cpu.hypervisor");
    v.tolerance = !peak.clock_measured ? 1.6 : guest ? 1.10 : 1.03;
    if (value <= v.bound * v.tolerance) return v;
    v.above = true;
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "measured %.4g %s is above the theoretical peak %.4g %s at the highest clock seen "
                  "(%.0f MHz) by more than the %.0f %% a %s allows: not published as capacity",
                  value, unit.c_str(), v.bound, unit.c_str(), v.bound_clock_mhz, (v.tolerance - 1) * 100,
                  !peak.clock_measured ? "nominal clock (boost may exceed it)"
                  : guest              ? "measurement under a hypervisor"
                                       : "measured clock");
    v.reason = buf;
    return v;
}

}  // namespace cpn::bench
