// bench_opencl_kernels_test.cpp: the bench.* kinds of cpn_bench.h on the OpenCL backend,
// driven through the plugin's C ABI on the machine's real OpenCL platform (PoCL's CPU device
// in CI).
//
// It checks the contract, never the speed: every kind the device supports prepares, runs,
// verifies its own result and reports sane ops and seconds; unsupported kinds say why; bad
// params and buffers are named errors; the "reps" input overrides params; cancel and deadline
// stop a run before it starts. One device is opened for the whole suite so PoCL compiles each
// kernel once (the plugin caches programs per device), and sizes are kept small.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include <time.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cpn_backend.h"
#include "cpn_bench.h"

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

constexpr const char* kPluginPath = CPN_PLUGIN_DIR "/libcpn-backend-opencl.so";


uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/* The plugin and one opened CPU device, shared by the whole suite and never unloaded (the
 * OpenCL runtime keeps threads of its own). */
struct Shared {
    void* handle = nullptr;
    const cpn_backend* be = nullptr;
    cpn_device_handle* dev = nullptr;
    std::string error;  // why the suite cannot run
    bool skip = false;
};

Shared& shared() {
    static Shared s = [] {
        Shared out;
        if (!std::filesystem::exists(kPluginPath)) {
            out.skip = true;
            out.error = std::string("OpenCL plugin not built: ") + kPluginPath;
            return out;
        }
        const cpn::test::LoadedPlugin lp = cpn::test::load_plugin(kPluginPath);
        out.handle = lp.handle;
        out.be = lp.table;
        if (out.be == nullptr) {
            out.error = lp.error;
            return out;
        }
        uint32_t n = 0;
        cpn_msg err{};
        if (out.be->device_count(&n, &err) != CPN_OK) {
            out.error = std::string("device_count: ") + err.text;
            return out;
        }
        for (uint32_t i = 0; i < n; ++i) {
            cpn_device_desc d{};
            d.struct_size = sizeof d;
            if (out.be->device_info(i, &d, &err) == CPN_OK && d.device_class == CPN_CLASS_CPU) {
                if (out.be->device_open(i, &out.dev, &err) != CPN_OK)
                    out.error = std::string("device_open: ") + err.text;
                return out;
            }
        }
        out.error = "no CPU-class OpenCL device (is pocl-opencl-icd installed?)";
        return out;
    }();
    return s;
}

/* One run's outcome. */
struct Outcome {
    cpn_status status = CPN_E_INTERNAL;
    std::string message;
    nlohmann::json result;
};

class OpenclBench : public ::testing::Test {
protected:
    void SetUp() override {
        Shared& s = shared();
        if (s.skip) GTEST_SKIP() << s.error;
        ASSERT_TRUE(s.error.empty()) << s.error;
        be = s.be;
        dev = s.dev;
    }
    void TearDown() override {
        for (cpn_prepared* p : prepared_) be->release(p);
    }

    cpn_query_result query(const char* kind, const char* params, cpn_status expect = CPN_OK) {
        cpn_workload w{sizeof(cpn_workload), kind, params, nullptr, 0};
        cpn_query_result q{};
        q.struct_size = sizeof q;
        cpn_msg err{};
        EXPECT_EQ(be->query(dev, &w, &q, &err), expect) << kind << ": " << err.text;
        return q;
    }

    cpn_prepared* prepare(const char* kind, const char* params, cpn_status expect = CPN_OK,
                          std::string* message = nullptr) {
        cpn_workload w{sizeof(cpn_workload), kind, params, nullptr, 0};
        cpn_prepared* p = nullptr;
        cpn_msg err{};
        const cpn_status st = be->prepare(dev, &w, &p, &err);
        EXPECT_EQ(st, expect) << kind << " " << params << ": " << err.text;
        if (message != nullptr) *message = err.text;
        if (p != nullptr) prepared_.push_back(p);
        return p;
    }

    /* Runs p; reps_override > 0 passes the "reps" input buffer. */
    Outcome run(cpn_prepared* p, uint64_t reps_override = 0,
                const cpn_run_control* control = nullptr, std::vector<cpn_buffer> inputs = {}) {
        uint64_t reps = reps_override;
        if (reps_override > 0) inputs.push_back({CPN_BENCH_REPS_INPUT, &reps, sizeof reps});
        char result[2048] = {};
        cpn_run_io io{};
        io.struct_size = sizeof io;
        io.inputs = inputs.empty() ? nullptr : inputs.data();
        io.input_count = static_cast<uint32_t>(inputs.size());
        io.result_json = result;
        io.result_json_capacity = sizeof result;
        cpn_msg err{};
        Outcome o;
        o.status = be->run(p, &io, control, &err);
        o.message = err.text;
        if (o.status == CPN_OK) {
            o.result = nlohmann::json::parse(result, nullptr, false);
            EXPECT_FALSE(o.result.is_discarded()) << result;
        }
        return o;
    }

    /* Runs p and checks the result's shape; returns the ops. */
    double run_ok(const char* kind, cpn_prepared* p, uint64_t reps_override = 0) {
        const Outcome o = run(p, reps_override);
        EXPECT_EQ(o.status, CPN_OK) << kind << ": " << o.message;
        if (o.status != CPN_OK || !o.result.is_object()) return 0;
        const nlohmann::json& r = o.result;
        EXPECT_TRUE(r.contains("ops") && r["ops"].is_number()) << r.dump();
        EXPECT_TRUE(r.contains("seconds") && r["seconds"].is_number()) << r.dump();
        EXPECT_EQ(r.value("verified", false), true) << r.dump();
        EXPECT_FALSE(r.value("check", std::string()).empty()) << r.dump();
        const double ops = r.value("ops", 0.0), seconds = r.value("seconds", 0.0);
        EXPECT_GT(ops, 0.0) << kind;
        EXPECT_GT(seconds, 0.0) << kind;
        EXPECT_LT(seconds, 60.0) << kind;
        return ops;
    }

    const cpn_backend* be = nullptr;
    cpn_device_handle* dev = nullptr;

private:
    std::vector<cpn_prepared*> prepared_;
};

TEST_F(OpenclBench, ComputeKindsRunVerifiedAndScaleWithReps) {
    for (const char* kind : {"bench.fp32", "bench.fp64", "bench.int8", "bench.fp16"}) {
        SCOPED_TRACE(kind);
        const cpn_query_result q = query(kind, "{}");
        if (q.supported == 0) {
            // Only the optional precisions may be missing, and then with a reason naming them.
            EXPECT_TRUE(std::strcmp(kind, "bench.fp64") == 0 ||
                        std::strcmp(kind, "bench.fp16") == 0)
                << q.reason;
            EXPECT_NE(
                std::string(q.reason).find(std::strcmp(kind, "bench.fp64") == 0 ? "fp64" : "fp16"),
                std::string::npos)
                << q.reason;
            std::string message;
            EXPECT_EQ(prepare(kind, "{}", CPN_E_UNSUPPORTED, &message), nullptr);
            continue;
        }
        EXPECT_GT(q.device_memory_bytes, 0u);
        cpn_prepared* p = prepare(kind, "{\"reps\": 1, \"seed\": 7}");
        ASSERT_NE(p, nullptr);
        const double one = run_ok(kind, p);
        const double three = run_ok(kind, p, 3);  // the input overrides params' reps
        EXPECT_DOUBLE_EQ(three, 3 * one);
        const Outcome o = run(p, 1);
        if (std::strcmp(kind, "bench.int8") == 0) {
            EXPECT_NE(o.result.value("check", std::string()).find("dot"), std::string::npos)
                << o.result.dump();
        }
        EXPECT_NE(o.result.value("check", std::string()).find("timing"), std::string::npos)
            << o.result.dump();
    }
}

TEST_F(OpenclBench, MemoryKindsCountStreamBytes) {
    constexpr uint64_t bytes = 1 << 20;
    const std::string params =
        "{\"bytes\": " + std::to_string(bytes) + ", \"seed\": 3, \"reps\": 2}";
    for (const char* kind : {"bench.mem.copy", "bench.mem.triad"}) {
        SCOPED_TRACE(kind);
        const cpn_query_result q = query(kind, params.c_str());
        ASSERT_EQ(q.supported, 1) << q.reason;
        EXPECT_EQ(q.device_memory_bytes, 3 * bytes);
        cpn_prepared* p = prepare(kind, params.c_str());
        ASSERT_NE(p, nullptr);
        const double arrays = std::strcmp(kind, "bench.mem.copy") == 0 ? 2 : 3;
        EXPECT_DOUBLE_EQ(run_ok(kind, p), arrays * bytes * 2);
        EXPECT_DOUBLE_EQ(run_ok(kind, p, 5), arrays * bytes * 5);  // new sampled chunks
    }
}

TEST_F(OpenclBench, MemoryDefaultSizeFollowsTheCache) {
    const cpn_query_result q = query("bench.mem.triad", "{}");
    ASSERT_EQ(q.supported, 1) << q.reason;
    // 3 arrays of max(4x cache, 64 MiB), clamped to a quarter of the largest allocation.
    EXPECT_GT(q.device_memory_bytes, 0u);
    EXPECT_EQ(q.device_memory_bytes % 3, 0u);
    EXPECT_EQ(q.device_memory_bytes / 3 % 64, 0u);
}

TEST_F(OpenclBench, TransferKindsMoveBytes) {
    constexpr uint64_t bytes = (1 << 20) + 64 * 3;  // not a power of two
    const std::string params = "{\"bytes\": " + std::to_string(bytes) + "}";
    for (const char* kind : {"bench.xfer.h2d.pinned", "bench.xfer.h2d.pageable",
                             "bench.xfer.d2h.pinned", "bench.xfer.d2h.pageable"}) {
        SCOPED_TRACE(kind);
        EXPECT_EQ(query(kind, params.c_str()).supported, 1);
        cpn_prepared* p = prepare(kind, params.c_str());
        ASSERT_NE(p, nullptr);
        EXPECT_DOUBLE_EQ(run_ok(kind, p), static_cast<double>(bytes));
        EXPECT_DOUBLE_EQ(run_ok(kind, p, 4), 4.0 * bytes);
        const Outcome o = run(p, 1);
        EXPECT_NE(o.result.value("check", std::string()).find("checksum"), std::string::npos)
            << o.result.dump();
    }
}

TEST_F(OpenclBench, LaunchCountsLaunches) {
    cpn_prepared* p = prepare("bench.launch", "{\"reps\": 20}");
    ASSERT_NE(p, nullptr);
    EXPECT_DOUBLE_EQ(run_ok("bench.launch", p), 20.0);
    EXPECT_DOUBLE_EQ(run_ok("bench.launch", p, 7), 7.0);
}

TEST_F(OpenclBench, UnsupportedKindsGiveReasons) {
    for (const char* kind : {"bench.mm.fp16", "bench.mm.bf16", "bench.mm.tf32", "bench.mm.int8",
                             "bench.bf16", "bench.clock", "bench.nonsense"}) {
        SCOPED_TRACE(kind);
        const cpn_query_result q = query(kind, "{}");
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::string(q.reason).find(kind), std::string::npos) << q.reason;
        std::string message;
        EXPECT_EQ(prepare(kind, "{}", CPN_E_UNSUPPORTED, &message), nullptr);
        EXPECT_NE(message.find(kind), std::string::npos) << message;
    }
    EXPECT_NE(std::string(query("bench.mm.int8", "{}").reason).find("matrix"), std::string::npos);
}

TEST_F(OpenclBench, BadParamsAreNamedErrors) {
    struct Case {
        const char* kind;
        const char* params;
        const char* names;
    };
    const Case cases[] = {
        {"bench.fp32", "{\"bogus\": 1}", "bogus"},
        {"bench.fp32", "{\"reps\": 0}", "reps"},
        {"bench.fp32", "{\"reps\": \"many\"}", "reps"},
        {"bench.fp32", "{\"reps\": -2}", "reps"},
        {"bench.mem.copy", "{\"bytes\": 1.5}", "bytes"},
        {"bench.mem.copy", "{\"bytes\": 16}", "bytes"},
        {"bench.xfer.h2d.pinned", "{\"seed\": true}", "seed"},
        {"bench.launch", "{\"threads\": -1}", "threads"},
        {"bench.launch", "[1, 2]", "params_json"},
        {"bench.launch", "not json", "params_json"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.kind) + " " + c.params);
        const cpn_query_result q = query(c.kind, c.params, CPN_E_INVALID_ARGUMENT);
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::string(q.reason).find(c.names), std::string::npos) << q.reason;
        std::string message;
        EXPECT_EQ(prepare(c.kind, c.params, CPN_E_INVALID_ARGUMENT, &message), nullptr);
        EXPECT_NE(message.find(c.names), std::string::npos) << message;
        EXPECT_NE(message.find(c.kind), std::string::npos) << message;
    }
}

TEST_F(OpenclBench, OversizedBytesAreRefused) {
    const char* params = "{\"bytes\": 1125899906842624}";  // 1 PiB
    const cpn_query_result q = query("bench.mem.copy", params);
    EXPECT_EQ(q.supported, 0);
    EXPECT_NE(std::string(q.reason).find("1125899906842624"), std::string::npos) << q.reason;
    std::string message;
    EXPECT_EQ(prepare("bench.xfer.d2h.pageable", params, CPN_E_OUT_OF_MEMORY, &message), nullptr);
    EXPECT_NE(message.find("1125899906842624"), std::string::npos) << message;
}

TEST_F(OpenclBench, BadRunBuffersAreNamedErrors) {
    cpn_prepared* p = prepare("bench.launch", "{}");
    ASSERT_NE(p, nullptr);
    uint32_t small = 5;
    Outcome o = run(p, 0, nullptr, {{"reps", &small, sizeof small}});
    EXPECT_EQ(o.status, CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(o.message.find("reps"), std::string::npos) << o.message;

    uint64_t zero = 0;
    o = run(p, 0, nullptr, {{"reps", &zero, sizeof zero}});
    EXPECT_EQ(o.status, CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(o.message.find("reps"), std::string::npos) << o.message;

    uint64_t one = 1;
    o = run(p, 0, nullptr, {{"repetitions", &one, sizeof one}});
    EXPECT_EQ(o.status, CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(o.message.find("repetitions"), std::string::npos) << o.message;

    // Too small a result buffer is refused rather than truncated.
    char tiny[8];
    cpn_run_io io{};
    io.struct_size = sizeof io;
    io.result_json = tiny;
    io.result_json_capacity = sizeof tiny;
    cpn_msg err{};
    EXPECT_EQ(be->run(p, &io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("result_json"), std::string::npos) << err.text;

    // The prepared workload is still good afterwards.
    EXPECT_DOUBLE_EQ(run_ok("bench.launch", p), 1.0);
}

TEST_F(OpenclBench, CancelAndDeadlineStopTheRun) {
    cpn_prepared* p = prepare("bench.fp32", "{\"reps\": 1000000}");
    ASSERT_NE(p, nullptr);
    volatile int32_t cancel = 1;
    cpn_run_control control{};
    control.struct_size = sizeof control;
    control.cancel = &cancel;
    Outcome o = run(p, 0, &control);
    EXPECT_EQ(o.status, CPN_E_CANCELLED) << o.message;

    cancel = 0;
    control.deadline_ns = monotonic_ns() - 1;
    o = run(p, 0, &control);
    EXPECT_EQ(o.status, CPN_E_DEADLINE_EXCEEDED) << o.message;

    // A deadline shortly ahead stops a run that would take hours, between repetitions.
    control.deadline_ns = monotonic_ns() + 50'000'000ull;
    const uint64_t t0 = monotonic_ns();
    o = run(p, 0, &control);
    EXPECT_EQ(o.status, CPN_E_DEADLINE_EXCEEDED) << o.message;
    EXPECT_LT(monotonic_ns() - t0, 5'000'000'000ull);

    // After a cancelled run the same prepared workload still runs and verifies.
    control.deadline_ns = 0;
    EXPECT_DOUBLE_EQ(run_ok("bench.fp32", p, 1), run_ok("bench.fp32", p, 1));
}

TEST_F(OpenclBench, RepeatedPrepareAndRelease) {
    for (int i = 0; i < 10; ++i) {
        cpn_workload w{sizeof(cpn_workload), "bench.xfer.h2d.pinned", "{\"bytes\": 65536}", nullptr,
                       0};
        cpn_prepared* p = nullptr;
        cpn_msg err{};
        ASSERT_EQ(be->prepare(dev, &w, &p, &err), CPN_OK) << err.text;
        EXPECT_GT(run_ok("bench.xfer.h2d.pinned", p), 0.0);
        be->release(p);
        cpn_workload w2{sizeof(cpn_workload), "bench.mem.copy", "{\"bytes\": 65536}", nullptr, 0};
        ASSERT_EQ(be->prepare(dev, &w2, &p, &err), CPN_OK) << err.text;
        EXPECT_GT(run_ok("bench.mem.copy", p), 0.0);
        be->release(p);
    }
}

}  // namespace
