// bench_cpu_kernels_test.cpp: the CPU backend's "bench.*" kinds (cpn_bench.h) driven through
// the plugin's C ABI, as the host drives them: every kind this CPU supports runs and verifies,
// the others say why not, bad params name the key, the "reps" input, cancel and deadline, and
// the thread count. Speed is measured by hand (a driver dlopening the plugin, beside
// bench/stream_triad_ref.c), never asserted here; sizes are small so the file runs in well under
// a second on two cores.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cpn_backend.h"
#include "cpn_bench.h"

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

constexpr const char* kPluginPath = CPN_PLUGIN_DIR "/libcpn-backend-cpu.so";


const cpn::test::LoadedPlugin& plugin() {
    static const cpn::test::LoadedPlugin p = cpn::test::load_plugin(kPluginPath);
    return p;
}

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

unsigned allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return static_cast<unsigned>(CPU_COUNT(&set));
}

/* Kinds that need nothing beyond a baseline CPU: always supported. */
const std::vector<std::string> kAlwaysKinds = {"bench.fp64", "bench.fp32", "bench.mem.copy",
                                               "bench.mem.triad", "bench.clock"};
/* Kinds that depend on the ISA: supported, or unsupported with a reason. */
const std::vector<std::string> kIsaKinds = {"bench.fp16", "bench.bf16", "bench.int8",
                                            "bench.mm.bf16", "bench.mm.int8"};
/* Kinds a CPU never runs. */
const std::vector<std::string> kNeverKinds = {
    "bench.launch",          "bench.xfer.h2d.pinned", "bench.xfer.h2d.pageable",
    "bench.xfer.d2h.pinned", "bench.xfer.d2h.pageable", "bench.mm.fp16",
    "bench.mm.tf32",         "bench.no.such.kind"};

class BenchCpu : public ::testing::Test {
protected:
    void SetUp() override {
        if (!std::filesystem::exists(kPluginPath))
            GTEST_SKIP() << "CPU plugin not built: " << kPluginPath << " does not exist";
        ASSERT_TRUE(plugin().error.empty()) << plugin().error;
        be = plugin().table;
        ASSERT_EQ(be->device_open(0, &dev, &err), CPN_OK) << err.text;
    }
    void TearDown() override {
        if (be == nullptr) return;
        for (cpn_prepared* p : prepared_) be->release(p);
        if (dev != nullptr) be->device_close(dev);
    }

    static std::string params_for(const std::string& kind, const std::string& extra = "") {
        std::string p = "{\"reps\":1";
        if (kind.rfind("bench.mem.", 0) == 0) p += ",\"bytes\":1048576";
        if (!extra.empty()) p += "," + extra;
        return p + "}";
    }

    cpn_status query(const std::string& kind, const std::string& params, cpn_query_result& q) {
        cpn_workload w{sizeof(cpn_workload), kind.c_str(), params.c_str(), nullptr, 0};
        q = cpn_query_result{};
        q.struct_size = sizeof q;
        return be->query(dev, &w, &q, &err);
    }

    cpn_status prepare(const std::string& kind, const std::string& params, cpn_prepared** out) {
        cpn_workload w{sizeof(cpn_workload), kind.c_str(), params.c_str(), nullptr, 0};
        *out = nullptr;
        cpn_status st = be->prepare(dev, &w, out, &err);
        if (st == CPN_OK) prepared_.push_back(*out);
        return st;
    }

    /* One run; `reps` > 0 passes the "reps" input buffer. */
    cpn_status run(cpn_prepared* p, nlohmann::json& result, uint64_t reps = 0,
                   const cpn_run_control* ctl = nullptr) {
        char out[2048] = {0};
        unsigned char le[8];
        for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(reps >> (8 * i));
        cpn_buffer in{CPN_BENCH_REPS_INPUT, le, 8};
        cpn_run_io io{sizeof(cpn_run_io), reps > 0 ? &in : nullptr, reps > 0 ? 1u : 0u,
                      nullptr, 0, out, sizeof out};
        cpn_status st = be->run(p, &io, ctl, &err);
        if (st == CPN_OK) result = nlohmann::json::parse(out);
        return st;
    }

    void expect_sane(const nlohmann::json& r, const std::string& kind, unsigned threads) {
        SCOPED_TRACE(kind + ": " + r.dump());
        ASSERT_TRUE(r.is_object());
        EXPECT_TRUE(r.at("ops").is_number());
        EXPECT_GT(r.at("ops").get<double>(), 0);
        EXPECT_GT(r.at("seconds").get<double>(), 0);
        EXPECT_LT(r.at("seconds").get<double>(), 60);
        EXPECT_EQ(r.at("verified"), true);
        EXPECT_FALSE(r.at("check").get<std::string>().empty());
        EXPECT_EQ(r.at("threads").get<unsigned>(), threads);
        EXPECT_FALSE(r.at("isa").get<std::string>().empty());
        if (r.contains("throttled")) {
            EXPECT_TRUE(r.at("throttled").is_boolean());
        }
    }

    const cpn_backend* be = nullptr;
    cpn_device_handle* dev = nullptr;
    cpn_msg err{};
    std::vector<cpn_prepared*> prepared_;
};

TEST_F(BenchCpu, EverySupportedKindRunsVerifiesAndReportsSaneFigures) {
    std::vector<std::string> kinds = kAlwaysKinds;
    kinds.insert(kinds.end(), kIsaKinds.begin(), kIsaKinds.end());
    for (const std::string& kind : kinds) {
        SCOPED_TRACE(kind);
        cpn_query_result q;
        ASSERT_EQ(query(kind, params_for(kind), q), CPN_OK) << err.text;
        const bool always = std::find(kAlwaysKinds.begin(), kAlwaysKinds.end(), kind) != kAlwaysKinds.end();
        if (always) {
            EXPECT_EQ(q.supported, 1) << q.reason;
        }
        if (q.supported == 0) {
            EXPECT_NE(std::string(q.reason).find(kind), std::string::npos) << q.reason;
            cpn_prepared* p = nullptr;
            EXPECT_EQ(prepare(kind, params_for(kind), &p), CPN_E_UNSUPPORTED);
            EXPECT_NE(std::string(err.text).find(kind), std::string::npos) << err.text;
            continue;
        }
        if (kind.rfind("bench.mem.", 0) == 0) {
            EXPECT_EQ(q.device_memory_bytes, 3u * 1048576u);
        }
        cpn_prepared* p = nullptr;
        ASSERT_EQ(prepare(kind, params_for(kind), &p), CPN_OK) << err.text;
        nlohmann::json r;
        /* Twice: a second sample on the same prepared data verifies on its own. */
        for (int i = 0; i < 2; ++i) {
            ASSERT_EQ(run(p, r), CPN_OK) << err.text;
            expect_sane(r, kind, allowed_cpus());
        }
        if (kind == "bench.clock") {
            ASSERT_TRUE(r.contains("clock_mhz"));
            const double mhz = r.at("clock_mhz").get<double>();
            EXPECT_GT(mhz, 10);
            EXPECT_LT(mhz, 20000);
            EXPECT_NEAR(mhz, r.at("ops").get<double>() / r.at("threads").get<double>() /
                                 r.at("seconds").get<double>() / 1e6,
                        mhz * 1e-3);
        }
        if (kind == "bench.mem.copy") {
            EXPECT_DOUBLE_EQ(r.at("ops").get<double>(), 2.0 * 1048576);
        }
        if (kind == "bench.mem.triad") {
            EXPECT_DOUBLE_EQ(r.at("ops").get<double>(), 3.0 * 1048576);
        }
    }
}

TEST_F(BenchCpu, KindsTheCpuCannotRunAreUnsupportedWithAReason) {
    for (const std::string& kind : kNeverKinds) {
        SCOPED_TRACE(kind);
        cpn_query_result q;
        ASSERT_EQ(query(kind, "{}", q), CPN_OK) << err.text;
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::string(q.reason).find(kind), std::string::npos) << q.reason;
        EXPECT_GT(std::strlen(q.reason), kind.size() + 10) << q.reason;
        cpn_prepared* p = nullptr;
        EXPECT_EQ(prepare(kind, "{}", &p), CPN_E_UNSUPPORTED);
        EXPECT_NE(std::string(err.text).find(kind), std::string::npos) << err.text;
    }
}

TEST_F(BenchCpu, Fp16WithoutNativeArithmeticSaysSo) {
    cpn_query_result q;
    ASSERT_EQ(query("bench.fp16", "{}", q), CPN_OK) << err.text;
    if (q.supported == 1) GTEST_SKIP() << "this CPU has native fp16 arithmetic";
    // An arm64 core with fp16 arithmetic (fphp) for which the backend has no fp16 kernel yet.
    if (std::string(q.reason).find("present") != std::string::npos) GTEST_SKIP() << q.reason;
    EXPECT_NE(std::string(q.reason).find("fp16"), std::string::npos) << q.reason;
    EXPECT_NE(std::string(q.reason).find("absent"), std::string::npos) << q.reason;
}

TEST_F(BenchCpu, BadParamsAreInvalidArgumentNamingTheKey) {
    const struct {
        const char* kind;
        std::string params;
        const char* names;
    } cases[] = {
        {"bench.fp32", "{\"reps\":1,\"colour\":\"red\"}", "colour"},
        {"bench.fp32", "{\"reps\":0}", "reps"},
        {"bench.fp32", "{\"reps\":-3}", "reps"},
        {"bench.fp32", "{\"reps\":\"many\"}", "reps"},
        {"bench.mem.triad", "{\"bytes\":-4096}", "bytes"},
        {"bench.mem.triad", "{\"bytes\":1e30}", "bytes"},
        {"bench.mem.triad", "{\"bytes\":1152921504606846976}", "bytes"},  // 2^60
        {"bench.mem.copy", "{\"bytes\":16}", "bytes"},
        {"bench.fp64", "{\"threads\":" + std::to_string(allowed_cpus() + 1) + "}", "threads"},
        {"bench.clock", "{\"threads\":-1}", "threads"},
        {"bench.fp32", "{\"seed\":1.5}", "seed"},
        {"bench.fp32", "{\"reps\":", "JSON"},
        {"bench.fp32", "[1,2]", "object"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.kind) + " " + c.params);
        cpn_query_result q;
        EXPECT_EQ(query(c.kind, c.params, q), CPN_E_INVALID_ARGUMENT);
        EXPECT_NE(std::string(err.text).find(c.names), std::string::npos) << err.text;
        cpn_prepared* p = nullptr;
        std::memset(err.text, 0, sizeof err.text);
        EXPECT_EQ(prepare(c.kind, c.params, &p), CPN_E_INVALID_ARGUMENT);
        EXPECT_NE(std::string(err.text).find(c.names), std::string::npos) << err.text;
        EXPECT_NE(std::string(err.text).find(c.kind), std::string::npos) << err.text;
    }
}

TEST_F(BenchCpu, RepsInputOverridesParams) {
    for (const char* kind : {"bench.fp32", "bench.mem.triad", "bench.clock"}) {
        SCOPED_TRACE(kind);
        cpn_prepared* p = nullptr;
        ASSERT_EQ(prepare(kind, params_for(kind, "\"threads\":1"), &p), CPN_OK) << err.text;
        nlohmann::json one, three;
        ASSERT_EQ(run(p, one), CPN_OK) << err.text;
        ASSERT_EQ(run(p, three, 3), CPN_OK) << err.text;
        EXPECT_DOUBLE_EQ(three.at("ops").get<double>(), 3 * one.at("ops").get<double>());
        EXPECT_EQ(three.at("verified"), true);
    }
    cpn_prepared* p = nullptr;
    ASSERT_EQ(prepare("bench.fp32", "{\"threads\":1}", &p), CPN_OK) << err.text;
    /* A "reps" input that is not one uint64, or is zero, is the caller's mistake. */
    uint32_t short_reps = 2;
    char out[512];
    cpn_buffer in{CPN_BENCH_REPS_INPUT, &short_reps, sizeof short_reps};
    cpn_run_io io{sizeof(cpn_run_io), &in, 1, nullptr, 0, out, sizeof out};
    EXPECT_EQ(be->run(p, &io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("reps"), std::string::npos) << err.text;
    nlohmann::json r;
    EXPECT_EQ(run(p, r, 0), CPN_OK);  // no input: params reps
    uint64_t zero = 0;
    cpn_buffer in0{CPN_BENCH_REPS_INPUT, &zero, 8};
    io.inputs = &in0;
    EXPECT_EQ(be->run(p, &io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("reps"), std::string::npos) << err.text;
}

TEST_F(BenchCpu, CancelAndDeadlineAreHonoured) {
    cpn_prepared* p = nullptr;
    ASSERT_EQ(prepare("bench.fp32", "{\"reps\":1}", &p), CPN_OK) << err.text;
    nlohmann::json r;

    volatile int32_t cancel = 1;
    cpn_run_control ctl{sizeof(cpn_run_control), &cancel, nullptr, nullptr, 0};
    EXPECT_EQ(run(p, r, 0, &ctl), CPN_E_CANCELLED);

    cancel = 0;
    ctl.deadline_ns = monotonic_ns() - 1;
    EXPECT_EQ(run(p, r, 0, &ctl), CPN_E_DEADLINE_EXCEEDED);

    /* While running: a sample of ~10^6 reps (minutes) stops at the next rep boundary. */
    ctl.deadline_ns = 0;
    std::thread setter([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        cancel = 1;
    });
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(run(p, r, 1000000, &ctl), CPN_E_CANCELLED);
    setter.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
    EXPECT_NE(std::string(err.text).find("cancel"), std::string::npos) << err.text;

    cancel = 0;
    ctl.deadline_ns = monotonic_ns() + 30'000'000;  // 30 ms
    EXPECT_EQ(run(p, r, 1000000, &ctl), CPN_E_DEADLINE_EXCEEDED);

    /* And the prepared benchmark is still good afterwards. */
    ASSERT_EQ(run(p, r), CPN_OK) << err.text;
    EXPECT_EQ(r.at("verified"), true);
}

TEST_F(BenchCpu, ThreadsParamSetsTheWorkerCount) {
    for (const char* kind : {"bench.fp64", "bench.mem.copy", "bench.clock"}) {
        SCOPED_TRACE(kind);
        cpn_prepared* p1 = nullptr;
        cpn_prepared* p0 = nullptr;
        ASSERT_EQ(prepare(kind, params_for(kind, "\"threads\":1"), &p1), CPN_OK) << err.text;
        ASSERT_EQ(prepare(kind, params_for(kind, "\"threads\":0"), &p0), CPN_OK) << err.text;
        nlohmann::json r1, r0;
        ASSERT_EQ(run(p1, r1), CPN_OK) << err.text;
        ASSERT_EQ(run(p0, r0), CPN_OK) << err.text;
        EXPECT_EQ(r1.at("threads").get<unsigned>(), 1u);
        EXPECT_EQ(r0.at("threads").get<unsigned>(), allowed_cpus());
        if (std::string(kind) != "bench.mem.copy") {  // compute: ops scale with the threads
            EXPECT_DOUBLE_EQ(r0.at("ops").get<double>(),
                             r1.at("ops").get<double>() * allowed_cpus());
        }
    }
}

TEST_F(BenchCpu, DeviceInfoReportsBenchIsaAndPrecisions) {
    cpn_device_desc d{};
    d.struct_size = sizeof d;
    ASSERT_EQ(be->device_info(0, &d, &err), CPN_OK) << err.text;
    EXPECT_EQ(d.precisions & (CPN_PREC_FP64 | CPN_PREC_FP32), CPN_PREC_FP64 | CPN_PREC_FP32);
    std::string isa;
    for (uint32_t i = 0; i < d.attr_count; ++i)
        if (std::string(d.attrs[i].key) == "cpu.bench_isa") isa = d.attrs[i].s;
    EXPECT_FALSE(isa.empty());
    /* What device_info claims and what the bench kinds run agree. */
    cpn_query_result q;
    ASSERT_EQ(query("bench.bf16", "{}", q), CPN_OK);
    if (q.supported == 1) {
        EXPECT_NE(d.precisions & CPN_PREC_BF16, 0u);
    }
    ASSERT_EQ(query("bench.int8", "{}", q), CPN_OK);
    if (q.supported == 1) {
        EXPECT_NE(d.precisions & CPN_PREC_INT8, 0u);
    }
    ASSERT_EQ(query("bench.fp16", "{}", q), CPN_OK);
    if (q.supported == 1) {
        EXPECT_NE(d.precisions & CPN_PREC_FP16, 0u);
    }
}

TEST_F(BenchCpu, SelftestSaxpyStillWorks) {
    cpn_prepared* p = nullptr;
    ASSERT_EQ(prepare("selftest.saxpy", "{\"a\": 2}", &p), CPN_OK) << err.text;
    std::vector<float> x(1000, 1.5f), y(1000, 0.25f), out(1000, 0.f);
    cpn_buffer in[2] = {{"x", x.data(), x.size() * 4}, {"y", y.data(), y.size() * 4}};
    cpn_buffer o{"y", out.data(), out.size() * 4};
    char json[256];
    cpn_run_io io{sizeof(cpn_run_io), in, 2, &o, 1, json, sizeof json};
    ASSERT_EQ(be->run(p, &io, nullptr, &err), CPN_OK) << err.text;
    EXPECT_FLOAT_EQ(out[0], 3.25f);
    EXPECT_FLOAT_EQ(out[999], 3.25f);
}

}  // namespace
