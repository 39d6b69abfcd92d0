// bench_core_test.cpp: the benchmark suite's core: theoretical peaks against a table of known
// devices, the sampling statistics, the capacity model (L1/L2, rooflines, normalisation input),
// the fingerprinted cache, and the suite driven end to end through the fake accelerator plugin
// (a device that fails mid-benchmark, above-peak flagging, cancellation, task references).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "bench/capacity.hpp"
#include "bench/capacity_cache.hpp"
#include "bench/peak.hpp"
#include "bench/stats.hpp"
#include "bench/suite.hpp"
#include "test_support.hpp"

namespace cpn::bench {
namespace {

Device cpu_device(const std::string& vendor, int family, int model, int cores, uint32_t mhz,
                  std::vector<std::string> isa, const std::string& arch = "x86_64") {
    Device d;
    d.id = "cpu";
    d.device_class = DeviceClass::cpu;
    d.vendor = vendor;
    d.max_clock_mhz = mhz;
    d.compute_units = cores;
    CpuDetails c;
    c.arch = arch;
    c.cores = cores;
    c.threads = cores;
    c.isa = std::move(isa);
    c.l3_bytes = 32u << 20;
    d.cpu = c;
    if (family >= 0) {
        d.attributes["cpu-model.vendor_id"] = Attribute{vendor, ""};
        d.attributes["cpu-model.family"] = Attribute{int64_t{family}, ""};
        d.attributes["cpu-model.id"] = Attribute{int64_t{model}, ""};
    }
    return d;
}

Device h100_sxm() {
    Device d;
    d.id = "pci-0000:19:00.0";
    d.device_class = DeviceClass::gpu;
    d.vendor = "NVIDIA";
    d.model = "NVIDIA H100 80GB HBM3";
    d.compute_units = 132;
    d.max_clock_mhz = 1980;
    RuntimePath p;
    p.backend = "cuda";
    p.attributes["nvidia.com/gpu.compute.major"] = Attribute{int64_t{9}, ""};
    p.attributes["nvidia.com/gpu.compute.minor"] = Attribute{int64_t{0}, ""};
    p.attributes["cuda.memory_bus_width_bits"] = Attribute{int64_t{5120}, "bits"};
    p.attributes["cuda.memory_clock_mhz"] = Attribute{int64_t{2619}, "MHz"};
    d.runtimes.push_back(p);
    return d;
}

void expect_near_rel(double got, double want, double rel) {
    EXPECT_NEAR(got, want, want * rel) << "got " << got << ", want " << want;
}

/* ---- theoretical peaks ------------------------------------------------------------------- */

TEST(BenchPeak, H100SxmFromItsSpecs) {
    const Device d = h100_sxm();
    Peak fp32 = theoretical_peak(d, "bench.fp32", 0, 0);
    ASSERT_TRUE(fp32.known) << fp32.reason;
    expect_near_rel(fp32.value, 66.9e12, 0.001);  // 132 SMs x 128 lanes x 2 x 1.98 GHz
    EXPECT_EQ(fp32.inputs.size(), 3u);
    Peak fp64 = theoretical_peak(d, "bench.fp64", 0, 0);
    expect_near_rel(fp64.value, 33.45e12, 0.001);
    // The datasheet's 989.4 TFLOP/s dense fp16 tensor figure is at 1830 MHz.
    Peak tc = theoretical_peak(d, "bench.mm.fp16", 0, 1830);
    ASSERT_TRUE(tc.known);
    expect_near_rel(tc.value, 989.4e12, 0.001);
    EXPECT_EQ(tc.inputs[1].source, "SM clock during the run (NVML)");
    Peak mem = theoretical_peak(d, "bench.mem.triad", 0, 0);
    ASSERT_TRUE(mem.known);
    expect_near_rel(mem.value, 3.35e12, 0.002);
    Peak launch = theoretical_peak(d, "bench.launch", 0, 0);
    EXPECT_FALSE(launch.known);
    EXPECT_NE(launch.reason.find("bench.launch"), std::string::npos);
}

TEST(BenchPeak, KnownCpus) {
    // AMD EPYC 9654 (Zen 4, 96 cores): 2 x 256-bit FMA pipes = 32 fp32 FLOP/cycle.
    Device genoa = cpu_device("AMD", 0x19, 0x11, 96, 2400, {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"});
    EXPECT_EQ(cpu_uarch(genoa).name, "Zen 4");
    expect_near_rel(theoretical_peak(genoa, "bench.fp32", 0, 0).value, 96 * 2.4e9 * 32, 1e-9);
    expect_near_rel(theoretical_peak(genoa, "bench.fp64", 0, 0).value, 96 * 2.4e9 * 16, 1e-9);
    expect_near_rel(theoretical_peak(genoa, "bench.bf16", 0, 0).value, 96 * 2.4e9 * 64, 1e-9);
    // One core at a measured 3.7 GHz.
    Peak one = theoretical_peak(genoa, "bench.fp32", 1, 3700);
    expect_near_rel(one.value, 3.7e9 * 32, 1e-9);
    EXPECT_NE(one.inputs[1].source.find("measured"), std::string::npos);
    EXPECT_FALSE(theoretical_peak(genoa, "bench.mm.bf16", 0, 0).known);  // no AMX

    // Intel Xeon Platinum 8480+ (Sapphire Rapids, 56 cores, 2.0 GHz): 2 x 512-bit FMA, AMX.
    Device spr = cpu_device("Intel", 6, 0x8f, 56, 2000,
                            {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8"});
    expect_near_rel(theoretical_peak(spr, "bench.fp32", 0, 0).value, 56 * 2e9 * 64, 1e-9);
    expect_near_rel(theoretical_peak(spr, "bench.mm.bf16", 0, 0).value, 56 * 2e9 * 2048, 1e-9);
    expect_near_rel(theoretical_peak(spr, "bench.mm.int8", 0, 0).value, 56 * 2e9 * 4096, 1e-9);
    expect_near_rel(theoretical_peak(spr, "bench.fp16", 0, 0).value, 56 * 2e9 * 128, 1e-9);

    // A VM whose hypervisor reports a client model number (0xa7) for a Xeon with AMX (this
    // project's build machine): identified by AMX as a server core with two 512-bit FMA units,
    // labelled as an assumption.
    Device vm = cpu_device("Intel", 6, 0xa7, 2, 2600,
                           {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"});
    EXPECT_TRUE(cpu_uarch(vm).assumed);
    EXPECT_NE(cpu_uarch(vm).name.find("AMX"), std::string::npos);
    expect_near_rel(theoretical_peak(vm, "bench.fp32", 0, 0).value, 2 * 2.6e9 * 64, 1e-9);
    expect_near_rel(theoretical_peak(vm, "bench.mm.bf16", 0, 0).value, 2 * 2.6e9 * 2048, 1e-9);

    // Intel client core with AVX2 only (e.g. Core i7-8700, family 6 model 0x9e, 6 cores, 4.6 GHz).
    Device client = cpu_device("Intel", 6, 0x9e, 6, 4600, {"avx2", "fma"});
    expect_near_rel(theoretical_peak(client, "bench.fp32", 0, 0).value, 6 * 4.6e9 * 32, 1e-9);
    EXPECT_FALSE(theoretical_peak(client, "bench.bf16", 0, 0).known);

    // Arm cores by CPU part (implementer 0x41 reads "Arm"): Ampere Altra is Neoverse N1, two
    // 128-bit pipes; Graviton3 is Neoverse V1, four.
    auto arm = [](int part, int cores, uint32_t mhz, std::vector<std::string> isa) {
        Device d = cpu_device("Arm", -1, -1, cores, mhz, std::move(isa), "aarch64");
        d.attributes["cpu-model.vendor_id"] = Attribute{std::string("Arm"), ""};
        d.attributes["cpu-model.id"] = Attribute{int64_t{part}, ""};
        return d;
    };
    Device altra = arm(0xd0c, 80, 3000, {"neon", "fp16", "dotprod"});
    EXPECT_EQ(cpu_uarch(altra).name, "Neoverse N1");
    EXPECT_FALSE(cpu_uarch(altra).assumed);
    expect_near_rel(theoretical_peak(altra, "bench.fp32", 0, 0).value, 80 * 3e9 * 16, 1e-9);
    expect_near_rel(theoretical_peak(altra, "bench.int8", 0, 0).value, 80 * 3e9 * 64, 1e-9);
    EXPECT_FALSE(theoretical_peak(altra, "bench.mem.triad", 0, 0).known);
    Device graviton3 = arm(0xd40, 64, 2600, {"neon", "fp16", "dotprod", "sve", "bf16"});
    EXPECT_EQ(cpu_uarch(graviton3).name, "Neoverse V1");
    expect_near_rel(theoretical_peak(graviton3, "bench.fp32", 0, 0).value, 64 * 2.6e9 * 32, 1e-9);
    expect_near_rel(theoretical_peak(graviton3, "bench.fp16", 0, 0).value, 64 * 2.6e9 * 64, 1e-9);
    // A Cortex-A72 (Raspberry Pi 4 class) has neither FP16 arithmetic nor dot products.
    Device a72 = arm(0xd08, 4, 1800, {"neon"});
    expect_near_rel(theoretical_peak(a72, "bench.fp32", 0, 0).value, 4 * 1.8e9 * 16, 1e-9);
    EXPECT_FALSE(theoretical_peak(a72, "bench.int8", 0, 0).known);
    // An Arm core not in the table (here a HiSilicon part): the widest NEON core's rate, an upper
    // bound, so a four-pipe core is never called impossible; labelled as an assumption.
    Device other = cpu_device("HiSilicon", -1, -1, 64, 2600, {"neon", "dotprod"}, "aarch64");
    CpuUarch u = cpu_uarch(other);
    EXPECT_TRUE(u.assumed);
    Peak a = theoretical_peak(other, "bench.fp32", 0, 0);
    expect_near_rel(a.value, 64 * 2.6e9 * 32, 1e-9);
    EXPECT_NE(a.inputs.back().source.find("assumed"), std::string::npos);
    const Peak measured_clock = theoretical_peak(other, "bench.fp32", 1, 2600);
    EXPECT_FALSE(judge_against_peak(other, "bench.fp32", 1, 2.6e9 * 32, "FLOP/s", measured_clock, 2600).above)
        << "a Neoverse V-class core at its full rate";
}

TEST(BenchPeak, ImpossibleIsJudgedAtTheHighestClockSeenWithTheMeasurementsMargin) {
    // A 2-core Zen 4 whose fp32 samples probed a median of 3523 MHz and at most 3680 MHz.
    Device genoa = cpu_device("AMD", 0x19, 0x11, 2, 2596, {"avx2", "fma", "avx512f"});
    const Peak at_median = theoretical_peak(genoa, "bench.fp32", 0, 3523);
    expect_near_rel(at_median.value, 2 * 3523e6 * 32, 1e-12);
    const double real = 2 * 3680e6 * 32 * 0.995;  // what the cores did at 3680 MHz

    // At the median clock alone the figure would look 4 % too fast; at the highest clock seen it
    // is 99.5 % of the peak.
    ASSERT_GT(real, at_median.value * 1.03);
    PeakVerdict v = judge_against_peak(genoa, "bench.fp32", 0, real, "FLOP/s", at_median, 3680);
    EXPECT_FALSE(v.above) << v.reason;
    EXPECT_DOUBLE_EQ(v.bound_clock_mhz, 3680);
    expect_near_rel(v.bound, 2 * 3680e6 * 32, 1e-12);
    EXPECT_DOUBLE_EQ(v.tolerance, 1.03);
    // Without a higher reading, the same figure is impossible on bare metal...
    v = judge_against_peak(genoa, "bench.fp32", 0, real, "FLOP/s", at_median, 0);
    EXPECT_TRUE(v.above);
    EXPECT_NE(v.reason.find("above the theoretical peak"), std::string::npos) << v.reason;
    EXPECT_NE(v.reason.find("3523 MHz"), std::string::npos) << v.reason;
    EXPECT_NE(v.reason.find("3 %"), std::string::npos) << v.reason;
    // ... and within the margin in a guest, where CPU time and the probe carry the host's noise.
    Device guest = genoa;
    guest.attributes["cpu.hypervisor"] = Attribute{true, ""};
    v = judge_against_peak(guest, "bench.fp32", 0, real, "FLOP/s", at_median, 0);
    EXPECT_FALSE(v.above) << v.reason;
    EXPECT_DOUBLE_EQ(v.tolerance, 1.10);
    // A gross error (an op count twice too high) is caught everywhere.
    for (const Device* d : {&genoa, &guest}) {
        v = judge_against_peak(*d, "bench.fp32", 0, 2 * real, "FLOP/s", at_median, 3680);
        EXPECT_TRUE(v.above);
    }
    v = judge_against_peak(guest, "bench.fp32", 0, 2 * real, "FLOP/s", at_median, 3680);
    EXPECT_NE(v.reason.find("under a hypervisor"), std::string::npos) << v.reason;
    // A lower "highest" reading never tightens the bound below the median's peak.
    v = judge_against_peak(genoa, "bench.fp32", 0, at_median.value * 1.02, "FLOP/s", at_median, 3000);
    EXPECT_FALSE(v.above);
    expect_near_rel(v.bound, at_median.value, 1e-12);
    // With a nominal clock (nothing measured), boost may run 60 % above it; the highest-clock
    // reading is not consulted because there is none.
    const Peak nominal = theoretical_peak(genoa, "bench.fp32", 0, 0);
    EXPECT_FALSE(nominal.clock_measured);
    EXPECT_FALSE(judge_against_peak(genoa, "bench.fp32", 0, nominal.value * 1.5, "FLOP/s", nominal, 0).above);
    v = judge_against_peak(genoa, "bench.fp32", 0, nominal.value * 1.7, "FLOP/s", nominal, 0);
    EXPECT_TRUE(v.above);
    EXPECT_NE(v.reason.find("nominal clock"), std::string::npos) << v.reason;
    // The hypervisor margin is for CPUs: a passed-through GPU keeps its own clocks.
    Device gpu = h100_sxm();
    gpu.attributes["cpu.hypervisor"] = Attribute{true, ""};
    const Peak gp = theoretical_peak(gpu, "bench.fp32", 0, 1980);
    EXPECT_TRUE(judge_against_peak(gpu, "bench.fp32", 0, gp.value * 1.05, "FLOP/s", gp, 1980).above);
    // No peak, no verdict.
    EXPECT_FALSE(judge_against_peak(genoa, "bench.mem.triad", 0, 1e15, "B/s",
                                    theoretical_peak(genoa, "bench.mem.triad", 0, 3523), 3680).above);
}

TEST(BenchPeak, UnknownVendorGpuSaysWhy) {
    Device d;
    d.device_class = DeviceClass::gpu;
    d.vendor = "Intel";
    Peak p = theoretical_peak(d, "bench.fp32", 0, 0);
    EXPECT_FALSE(p.known);
    EXPECT_NE(p.reason.find("Intel"), std::string::npos);
}

/* ---- statistics ---------------------------------------------------------------------------- */

TEST(BenchStats, MedianAndCoefficientOfVariation) {
    SampleStats s = summarise({10, 12, 11, 13, 9});
    EXPECT_EQ(s.samples, 5);
    EXPECT_DOUBLE_EQ(s.median, 11);
    EXPECT_DOUBLE_EQ(s.mean, 11);
    EXPECT_NEAR(s.cv, std::sqrt(2.5) / 11, 1e-12);
    EXPECT_DOUBLE_EQ(summarise({4, 2}).median, 3);
    EXPECT_EQ(summarise({}).samples, 0);
}

TEST(BenchStats, StopsOnSmallSpreadOrBudget) {
    SamplingPlan p = quick_plan();
    EXPECT_FALSE(should_stop({100, 100}, p, 0.01));           // under min_samples
    EXPECT_TRUE(should_stop({100, 100.5, 99.8}, p, 0.01));    // spread below 3 %
    EXPECT_FALSE(should_stop({100, 150, 60}, p, 0.01));       // noisy, time left
    EXPECT_TRUE(should_stop({100, 150, 60}, p, p.budget_seconds + 1));  // budget spent
    std::vector<double> many(p.max_samples, 1.0);
    many[0] = 100;
    EXPECT_TRUE(should_stop(many, p, 0));
    EXPECT_EQ(next_reps(1, 0.001, 0.02), 22u);   // 20x and 10 % margin
    EXPECT_EQ(next_reps(10, 0.0, 0.02), 10000u); // capped at 1000x per step
    EXPECT_EQ(next_reps(10, 0.019, 0.02), 20u);  // at least 2x while short
}

/* ---- capacity model ------------------------------------------------------------------------ */

Figure ok_figure(const std::string& name, const std::string& unit, double value, const std::string& backend = "cpu") {
    Figure f;
    f.name = name;
    f.kind = "bench." + name;
    f.unit = unit;
    f.value = value;
    f.status = "ok";
    f.backend = backend;
    return f;
}

BenchReport sample_report() {
    BenchReport r;
    r.mode = "quick";
    DeviceResult cpu;
    cpu.device_id = "cpu";
    cpu.figures = {ok_figure("fp32", "FLOP/s", 2e11), ok_figure("fp64", "FLOP/s", 1e11),
                   ok_figure("int8", "op/s", 8e11), ok_figure("mem.triad", "B/s", 2e10),
                   ok_figure("fp32", "FLOP/s", 1.5e11, "opencl")};
    Figure failed = ok_figure("bf16", "FLOP/s", 0);
    failed.status = "failed";
    cpu.figures.push_back(failed);
    DeviceResult gpu;
    gpu.device_id = "pci-0000:19:00.0";
    gpu.figures = {ok_figure("fp32", "FLOP/s", 6e13, "cuda"), ok_figure("mm.fp16", "FLOP/s", 8e14, "cuda"),
                   ok_figure("mem.triad", "B/s", 3e12, "cuda"), ok_figure("launch", "s", 4e-6, "cuda"),
                   ok_figure("launch", "s", 9e-6, "opencl")};
    r.devices = {cpu, gpu};
    return r;
}

TEST(BenchCapacity, BestFigurePerNameAcrossBackends) {
    auto b = best_figures(sample_report().devices[1]);
    EXPECT_DOUBLE_EQ(b["launch"].value, 4e-6);  // latency: lower is better
    EXPECT_EQ(b["launch"].backend, "cuda");
    auto c = best_figures(sample_report().devices[0]);
    EXPECT_DOUBLE_EQ(c["fp32"].value, 2e11);
    EXPECT_EQ(c.count("bf16"), 0u);  // failed figures never count
}

TEST(BenchCapacity, L1L2AndRooflines) {
    const Normalization n = default_normalization();
    nlohmann::json rec = capacity_record(sample_report(), n);
    const auto& cpu = rec["devices"][0];
    EXPECT_NEAR(cpu["l1"]["compute"].get<double>(), 0.2, 1e-12);
    EXPECT_NEAR(cpu["l1"]["memory"].get<double>(), 0.2, 1e-12);
    EXPECT_NEAR(cpu["l1"]["ai"].get<double>(), 0.2, 1e-12);
    EXPECT_FALSE(cpu["l1"].contains("render"));  // no render reference job measured: absent, not 0
    EXPECT_NEAR(cpu["l2"].get<double>(), 0.35 * 0.2 + 0.25 * 0.2 + 0.30 * 0.2, 1e-12);
    // Roofline: stencil (fp32, 0.5 FLOP/byte) on the CPU is memory bound: 2e10 x 0.5.
    EXPECT_NEAR(cpu["roofline"]["stencil"]["attainable"].get<double>(), 1e10, 1);
    EXPECT_EQ(cpu["roofline"]["stencil"]["bound"], "memory");
    // dense-linear-algebra (fp64, 16): min(1e11, 2e10 x 16 = 3.2e11) = 1e11, compute bound.
    EXPECT_NEAR(cpu["roofline"]["dense-linear-algebra"]["attainable"].get<double>(), 1e11, 1);
    EXPECT_EQ(cpu["roofline"]["dense-linear-algebra"]["bound"], "compute");
    // The GPU's fp16 class reads its tensor-core figure: min(8e14, 3e12 x 40 = 1.2e14).
    const auto& gpu = rec["devices"][1];
    EXPECT_NEAR(gpu["roofline"]["cnn-inference-fp16"]["attainable"].get<double>(), 1.2e14, 1e3);
    EXPECT_FALSE(gpu["roofline"].contains("dense-linear-algebra"));  // no fp64 figure
    // Node level: sums over devices.
    EXPECT_NEAR(rec["l1"]["node"]["compute"].get<double>(), 0.2 + 60, 1e-9);
    EXPECT_TRUE(rec["l0"].contains("devices"));
}

TEST(BenchCapacity, NormalizationFromTheBrainIsValidated) {
    const Normalization base = default_normalization();
    auto ok = normalization_from_json(
        {{"weights", {{"compute", 1.0}}}, {"task_classes", {{{"name", "x"}, {"precision", "int8"}, {"intensity", 2}}}}},
        base);
    ASSERT_TRUE(ok.ok()) << ok.status().message();
    EXPECT_DOUBLE_EQ(ok->weights["compute"], 1.0);
    EXPECT_DOUBLE_EQ(ok->weights["memory"], 0.25);  // untouched keys keep their values
    ASSERT_EQ(ok->task_classes.size(), 1u);

    struct Bad {
        nlohmann::json j;
        const char* message;
    };
    const std::vector<Bad> bad = {
        {nlohmann::json::array(), "normalization: must be a JSON object"},
        {{{"colour", 1}}, "normalization.colour: unknown key"},
        {{{"weights", {{"gpu", 1}}}}, "normalization.weights.gpu: unknown category"},
        {{{"weights", {{"compute", -1}}}}, "normalization.weights.compute: -1.000000 must be >= 0"},
        {{{"reference", {{"memory", 0}}}}, "normalization.reference.memory: 0.000000 must be > 0"},
        {{{"reference", {{"memory", "fast"}}}}, "normalization.reference.memory: must be a number"},
        {{{"task_classes", nlohmann::json::array()}}, "normalization.task_classes: must be an array of 1 to 64"},
        {{{"task_classes", {{{"name", "x"}, {"precision", "fp8"}, {"intensity", 1}}}}},
         "normalization.task_classes[0].precision: 'fp8' is not one of"},
        {{{"task_classes", {{{"name", "x"}, {"precision", "fp32"}, {"intensity", 0}}}}},
         "normalization.task_classes[0].intensity: must be > 0"},
    };
    for (const Bad& b : bad) {
        auto r = normalization_from_json(b.j, base);
        ASSERT_FALSE(r.ok()) << b.j.dump();
        EXPECT_NE(r.status().message().find(b.message), std::string::npos)
            << "got: " << r.status().message() << "\nwant: " << b.message;
    }
}

TEST(BenchCapacity, ConfigKeysBecomeTheNormalization) {
    auto c = parse_config("capacity:\n  weights: {ai: 2.5}\n  task_classes: [\"llm:bf16:2\"]\n", "t.yaml");
    ASSERT_TRUE(c.ok()) << c.status().message();
    Normalization n = normalization_from_config(c.value());
    EXPECT_DOUBLE_EQ(n.weights["ai"], 2.5);
    ASSERT_EQ(n.task_classes.size(), 1u);
    EXPECT_EQ(n.task_classes[0].precision, "bf16");
    EXPECT_DOUBLE_EQ(n.task_classes[0].intensity, 2);
    auto bad = parse_config("capacity:\n  task_classes: [\"llm:fp8:2\"]\n  mode: sometimes\n", "t.yaml");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("t.yaml:2:18: capacity.task_classes[0]: 'llm:fp8:2' is not a task class"),
              std::string::npos)
        << bad.status().message();
    EXPECT_NE(bad.status().message().find("t.yaml:3:9: capacity.mode: 'sometimes' is not a benchmark mode"),
              std::string::npos)
        << bad.status().message();
}

/* ---- cache --------------------------------------------------------------------------------- */

Inventory small_inventory(const std::string& driver) {
    Inventory inv;
    inv.devices.push_back(cpu_device("AMD", 0x19, 0x11, 2, 2600, {"avx2"}));
    Device g = h100_sxm();
    g.runtimes[0].driver_version = driver;
    inv.devices.push_back(g);
    return inv;
}

TEST(BenchCache, RoundTripAndFingerprintInvalidation) {
    test::TempDir dir;
    const std::string path = capacity_cache_path(dir.path());
    auto missing = load_capacity(path);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), Code::not_found);

    const Inventory inv = small_inventory("550.54.15");
    ASSERT_TRUE(save_capacity(path, inv, sample_report()).ok());
    auto loaded = load_capacity(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    EXPECT_EQ(cache_invalid_reason(loaded.value(), inv), "");
    EXPECT_EQ(loaded->report.devices.size(), 2u);
    EXPECT_DOUBLE_EQ(loaded->report.devices[1].figures[1].value, 8e14);

    // A changed driver invalidates it and says which.
    const Inventory upgraded = small_inventory("560.28.03");
    EXPECT_NE(fingerprint(upgraded), fingerprint(inv));
    const std::string why = cache_invalid_reason(loaded.value(), upgraded);
    EXPECT_NE(why.find("driver_version changed from \"550.54.15\" to \"560.28.03\""), std::string::npos) << why;
    // A clock that moves (DVFS) does not.
    Inventory warmer = inv;
    warmer.devices[0].max_clock_mhz = 3100;
    EXPECT_EQ(fingerprint(warmer), fingerprint(inv));
    // A new device does.
    Inventory more = inv;
    Device npu;
    npu.id = "pci-0000:00:0b.0";
    npu.device_class = DeviceClass::npu;
    more.devices.push_back(npu);
    EXPECT_NE(cache_invalid_reason(loaded.value(), more).find("pci-0000:00:0b.0 is new"), std::string::npos);
}

TEST(BenchCache, TornOrForeignFileIsReportedNotTrusted) {
    test::TempDir dir;
    dir.write("capacity.json", "{\"fingerprint\": \"abc\", \"repo");
    auto r = load_capacity(dir.file("capacity.json"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::invalid_argument);
    EXPECT_NE(r.status().message().find("not valid JSON"), std::string::npos);
    dir.write("capacity.json", "{\"hello\": 1}");
    r = load_capacity(dir.file("capacity.json"));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("missing \"fingerprint\" or \"report\""), std::string::npos);
}

/* ---- the suite, end to end through the fake accelerator plugin ----------------------------- */

class BenchSuiteFake : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "fakeaccel", dir_.path()));
        ::setenv("CPN_FAKE_ACCEL_DEVICES",
                 "npu,0000:01:00.0,Fake NPU A;npu,0000:02:00.0,Fake NPU B,,lost-after-5", 1);
        plugin_ = dir_.path() + "/libcpn-backend-fakeaccel.so";
        PluginReport pr;
        pr.name = "fakeaccel";
        pr.path = plugin_;
        pr.status = "ok";
        inv_.plugins.push_back(pr);
        for (uint32_t i = 0; i < 2; ++i) {
            Device d;
            d.id = i == 0 ? "pci-0000:01:00.0" : "pci-0000:02:00.0";
            d.device_class = DeviceClass::npu;
            d.model = i == 0 ? "Fake NPU A" : "Fake NPU B";
            RuntimePath p;
            p.backend = "fakeaccel";
            p.index = i;
            d.runtimes.push_back(p);
            inv_.devices.push_back(d);
        }
        opt_.sample_seconds_override = 0.002;
        opt_.mem_bytes_override = 1 << 20;
    }
    void TearDown() override { ::unsetenv("CPN_FAKE_ACCEL_DEVICES"); }

    test::TempDir dir_;
    std::string plugin_;
    Inventory inv_;
    SuiteOptions opt_;
};

const Figure* find_figure(const DeviceResult& d, const std::string& name) {
    for (const Figure& f : d.figures)
        if (f.name == name) return &f;
    return nullptr;
}

TEST_F(BenchSuiteFake, DeviceFailingMidBenchmarkIsReportedWhileOthersComplete) {
    std::vector<Progress> events;
    opt_.on_progress = [&](const Progress& p) { events.push_back(p); };
    BenchReport r = run_suite(inv_, opt_);
    ASSERT_EQ(r.devices.size(), 2u);
    const DeviceResult& a = r.devices[0];
    const DeviceResult& b = r.devices[1];
    EXPECT_EQ(a.status, "ok") << a.reason;
    const Figure* int8 = find_figure(a, "int8");
    ASSERT_NE(int8, nullptr);
    EXPECT_EQ(int8->status, "ok");
    EXPECT_GT(int8->value, 0);
    EXPECT_GE(int8->stats.samples, 3);
    EXPECT_EQ(int8->unit, "op/s");
    EXPECT_EQ(int8->check, "host reference");
    EXPECT_EQ(find_figure(a, "fp32")->status, "unsupported");
    EXPECT_NE(find_figure(a, "fp32")->reason.find("fakeaccel: no unit for bench.fp32"), std::string::npos);

    // B is lost after 5 runs: its first measured figure fails with the plugin's reason, and the
    // rest are failed as lost without touching the device again.
    EXPECT_TRUE(b.status == "failed" || b.status == "partial") << b.status;
    EXPECT_NE(b.reason.find("fell off the bus"), std::string::npos) << b.reason;
    const Figure* lost_next = find_figure(b, "int8");
    ASSERT_NE(lost_next, nullptr);
    EXPECT_EQ(lost_next->status, "failed");
    EXPECT_NE(lost_next->reason.find("lost"), std::string::npos) << lost_next->reason;

    // Progress: one "started" and one "finished" event per figure, in order, per device.
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().device_id, "pci-0000:02:00.0");
    EXPECT_EQ(events.back().done, events.back().total);

    // Serialises and reads back.
    nlohmann::json j = r;
    BenchReport back = j.get<BenchReport>();
    ASSERT_EQ(back.devices.size(), 2u);
    EXPECT_DOUBLE_EQ(find_figure(back.devices[0], "int8")->value, int8->value);
}

TEST_F(BenchSuiteFake, OnlyTheRequestedDevice) {
    opt_.device_ids = {"pci-0000:01:00.0"};
    BenchReport r = run_suite(inv_, opt_);
    ASSERT_EQ(r.devices.size(), 1u);
    EXPECT_EQ(r.devices[0].device_id, "pci-0000:01:00.0");
}

TEST_F(BenchSuiteFake, FigureAboveThePhysicalLimitIsFlaggedNotPublished) {
    // Pretend device A is a 1-core CPU at 1 MHz with VNNI: its int8 peak is 128 Mop/s, far below
    // what the host computes for the fake.
    Device& d = inv_.devices[0];
    d.device_class = DeviceClass::cpu;
    d.max_clock_mhz = 1;
    CpuDetails c;
    c.arch = "x86_64";
    c.cores = 1;
    c.isa = {"avx2", "fma", "avx512f", "avx512_vnni"};
    d.cpu = c;
    d.attributes["cpu-model.vendor_id"] = Attribute{std::string("AMD"), ""};
    d.attributes["cpu-model.family"] = Attribute{int64_t{0x19}, ""};
    d.attributes["cpu-model.id"] = Attribute{int64_t{0x11}, ""};
    opt_.device_ids = {d.id};
    BenchReport r = run_suite(inv_, opt_);
    const Figure* f = find_figure(r.devices[0], "int8");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->status, "above_peak");
    EXPECT_NE(f->reason.find("above the theoretical peak"), std::string::npos);
    EXPECT_GT(f->efficiency, 1.0);
    EXPECT_EQ(best_figures(r.devices[0]).count("int8"), 0u);
    // The limit it was judged against travels with it, and reads back.
    nlohmann::json j = *f;
    ASSERT_TRUE(j.contains("limit")) << j.dump();
    EXPECT_GT(j["value"].get<double>(), j["limit"]["value"].get<double>() * j["limit"]["tolerance"].get<double>());
    EXPECT_DOUBLE_EQ(j["limit"]["tolerance"].get<double>(), 1.6) << "the fake CPU's clock is nominal, not measured";
    const Figure back = j.get<Figure>();
    EXPECT_DOUBLE_EQ(back.limit.bound, f->limit.bound);
    EXPECT_DOUBLE_EQ(back.limit.tolerance, f->limit.tolerance);
}

TEST_F(BenchSuiteFake, CalibrationIsNotFooledByASlowFirstRun) {
    // Device A's first run of each workload pays 30 ms of one-time costs, fifteen 2 ms samples'
    // worth: calibrating on that run alone would settle on one repetition per sample (a few
    // microseconds here), and the samples would time the clock's jitter.
    ::setenv("CPN_FAKE_ACCEL_DEVICES", "npu,0000:01:00.0,Fake NPU A,,slow-first-30", 1);
    opt_.device_ids = {"pci-0000:01:00.0"};
    BenchReport r = run_suite(inv_, opt_);
    ASSERT_EQ(r.devices.size(), 1u);
    const Figure* f = find_figure(r.devices[0], "int8");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(f->status, "ok") << f->reason;
    EXPECT_GT(f->reps, 10u) << "calibrated on the slow first run";
}

TEST_F(BenchSuiteFake, CancelStopsCleanly) {
    std::atomic<int32_t> cancel{1};
    opt_.cancel = &cancel;
    BenchReport r = run_suite(inv_, opt_);
    EXPECT_TRUE(r.cancelled);
    ASSERT_EQ(r.devices.size(), 1u);
    EXPECT_EQ(r.devices[0].status, "cancelled");
}

TEST_F(BenchSuiteFake, TaskReferenceJobsBecomeTaskLevelCapacity) {
    clear_task_references_for_test();
    register_task_reference({"infer", "bench.int8", "{}", "inferences/s", 1.0 / 8192, "fake: one 4096-MAC layer", nullptr});
    opt_.device_ids = {"pci-0000:01:00.0"};
    BenchReport r = run_suite(inv_, opt_);
    clear_task_references_for_test();
    const Figure* t = find_figure(r.devices[0], "task.infer");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->status, "ok") << t->reason;
    EXPECT_EQ(t->unit, "inferences/s");
    EXPECT_EQ(t->category, "task");
    const Figure* int8 = find_figure(r.devices[0], "int8");
    ASSERT_NE(int8, nullptr);
    // Same job, scaled into its unit (1/8192): far below the raw op/s whatever the timing noise.
    EXPECT_GT(t->value, 0);
    EXPECT_LT(t->value, int8->value / 100);
    EXPECT_GT(t->value, int8->value / 8192 / 100);
    EXPECT_NE(t->check.find("fake: one 4096-MAC layer"), std::string::npos);
}

}  // namespace
}  // namespace cpn::bench
