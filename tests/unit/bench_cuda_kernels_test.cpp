// bench_cuda_kernels_test.cpp: the bench.* workloads (backends/api/cpn_bench.h) of the CUDA
// backend plugin, loaded directly with dlopen.
//
// Without the NVIDIA driver or a GPU every test that needs a device skips, printing why; on a
// GPU machine each kind is prepared, run and verified by the plugin itself (its result must say
// "verified": true with sane figures; speed is never asserted), bad parameters are named, the
// "reps" input overrides the parameter and a raised cancel flag stops a run before it starts.
#include "cpn_backend.h"
#include "cpn_bench.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

std::string bench_cuda_plugin_path() { return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-cuda.so"; }

void bench_cuda_log(int, const char*, const char*) {}

struct BenchCudaPlugin {
    void* lib = nullptr;
    std::string error;
    cpn_backend_entry_fn entry = nullptr;
};

const BenchCudaPlugin& bench_cuda_plugin() {
    static BenchCudaPlugin p = [] {
        BenchCudaPlugin q;
        q.lib = dlopen(bench_cuda_plugin_path().c_str(), RTLD_NOW | RTLD_LOCAL);
        if (q.lib == nullptr) {
            const char* e = dlerror();
            q.error = e != nullptr ? e : "dlopen failed";
            return q;
        }
        q.entry = reinterpret_cast<cpn_backend_entry_fn>(dlsym(q.lib, CPN_BACKEND_ENTRY_SYMBOL));
        return q;
    }();
    return p;
}

/* Every kind the CUDA plugin implements. */
const char* const kBenchKinds[] = {
    "bench.fp64", "bench.fp32", "bench.fp16", "bench.bf16", "bench.int8",
    "bench.mm.fp16", "bench.mm.bf16", "bench.mm.tf32", "bench.mm.int8",
    "bench.mem.copy", "bench.mem.triad",
    "bench.xfer.h2d.pinned", "bench.xfer.h2d.pageable", "bench.xfer.d2h.pinned", "bench.xfer.d2h.pageable",
    "bench.launch"};

/* A number member of a flat JSON object, or NAN. */
double json_number(const std::string& json, const std::string& key) {
    const std::string k = "\"" + key + "\":";
    const size_t at = json.find(k);
    if (at == std::string::npos) return NAN;
    return std::strtod(json.c_str() + at + k.size(), nullptr);
}

class BenchCudaKernels : public ::testing::Test {
protected:
    void SetUp() override {
        if (access(bench_cuda_plugin_path().c_str(), F_OK) != 0) {
            GTEST_SKIP() << "plugin not built: " << bench_cuda_plugin_path();
        }
        const BenchCudaPlugin& p = bench_cuda_plugin();
        ASSERT_NE(p.lib, nullptr) << "dlopen(" << bench_cuda_plugin_path() << "): " << p.error;
        ASSERT_NE(p.entry, nullptr);
        host_.abi_version = CPN_BACKEND_ABI_VERSION;
        host_.struct_size = sizeof(cpn_host);
        host_.log = bench_cuda_log;
        be_ = p.entry(&host_);
        ASSERT_NE(be_, nullptr);
    }

    void TearDown() override {
        if (prep_ != nullptr) be_->release(prep_);
        if (dev_ != nullptr) be_->device_close(dev_);
    }

    /* True when the driver is usable and device 0 opened; else reason_ says why. */
    bool open_gpu() {
        cpn_probe_info info{};
        info.struct_size = sizeof info;
        cpn_msg err{};
        if (be_->probe(&info, &err) != CPN_OK) {
            reason_ = std::string("probe failed: ") + err.text;
            return false;
        }
        if (info.usable == 0) {
            reason_ = info.reason;
            return false;
        }
        if (be_->device_open(0, &dev_, &err) != CPN_OK) {
            reason_ = std::string("device_open(0): ") + err.text;
            return false;
        }
        return true;
    }

    cpn_workload workload(const char* kind, const std::string& params) {
        params_ = params;
        cpn_workload w{};
        w.struct_size = sizeof w;
        w.kind = kind;
        w.params_json = params_.c_str();
        return w;
    }

    cpn_query_result query(const char* kind, const std::string& params) {
        cpn_workload w = workload(kind, params);
        cpn_query_result q{};
        q.struct_size = sizeof q;
        cpn_msg err{};
        EXPECT_EQ(be_->query(dev_, &w, &q, &err), CPN_OK) << err.text;
        return q;
    }

    cpn_status prepare(const char* kind, const std::string& params, cpn_msg* err) {
        if (prep_ != nullptr) {
            be_->release(prep_);
            prep_ = nullptr;
        }
        cpn_workload w = workload(kind, params);
        return be_->prepare(dev_, &w, &prep_, err);
    }

    /* run() with an optional reps input and cancel flag; the result JSON in `json`. */
    cpn_status run(std::string* json, cpn_msg* err, const uint64_t* reps_input = nullptr, int32_t cancel = 0) {
        std::vector<char> result(4096, '\0');
        unsigned char reps_bytes[8];
        cpn_buffer in{};
        cpn_run_io io{};
        io.struct_size = sizeof io;
        if (reps_input != nullptr) {
            for (int i = 0; i < 8; ++i) reps_bytes[i] = static_cast<unsigned char>(*reps_input >> (8 * i));
            in.name = CPN_BENCH_REPS_INPUT;
            in.data = reps_bytes;
            in.size = 8;
            io.inputs = &in;
            io.input_count = 1;
        }
        io.result_json = result.data();
        io.result_json_capacity = result.size();
        volatile int32_t flag = cancel;
        cpn_run_control ctl{};
        ctl.struct_size = sizeof ctl;
        ctl.cancel = &flag;
        const cpn_status st = be_->run(prep_, &io, &ctl, err);
        *json = result.data();
        return st;
    }

    cpn_host host_{};
    const cpn_backend* be_ = nullptr;
    std::string reason_;
    std::string params_;
    cpn_device_handle* dev_ = nullptr;
    cpn_prepared* prep_ = nullptr;
};

#define CPN_REQUIRE_CUDA_GPU()                                                        \
    do {                                                                              \
        if (!open_gpu()) GTEST_SKIP() << "no usable CUDA device: " << reason_;        \
    } while (0)

/* Without a device the execution half must refuse cleanly, never crash. */
TEST_F(BenchCudaKernels, QueryAndPrepareWithoutDeviceAreRejected) {
    cpn_workload w = workload("bench.fp32", "{}");
    cpn_query_result q{};
    q.struct_size = sizeof q;
    cpn_msg err{};
    EXPECT_EQ(be_->query(nullptr, &w, &q, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("device"), std::string::npos) << err.text;
    cpn_prepared* p = nullptr;
    EXPECT_EQ(be_->prepare(nullptr, &w, &p, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(p, nullptr);
}

TEST_F(BenchCudaKernels, EveryKindRunsAndVerifies) {
    CPN_REQUIRE_CUDA_GPU();
    for (const char* kind : kBenchKinds) {
        SCOPED_TRACE(kind);
        const bool sized = std::strncmp(kind, "bench.mem.", 10) == 0 || std::strncmp(kind, "bench.xfer.", 11) == 0;
        const std::string params = sized ? "{\"reps\": 2, \"bytes\": 33554432, \"seed\": 7}" : "{\"reps\": 2}";
        const cpn_query_result q = query(kind, params);
        if (q.supported == 0) {
            std::printf("[   INFO   ] %s unsupported here: %s\n", kind, q.reason);
            EXPECT_GT(std::strlen(q.reason), 0u);
            continue;
        }
        cpn_msg err{};
        ASSERT_EQ(prepare(kind, params, &err), CPN_OK) << err.text;
        std::string json;
        ASSERT_EQ(run(&json, &err), CPN_OK) << err.text;
        std::printf("[   INFO   ] %s: %s\n", kind, json.c_str());
        EXPECT_NE(json.find("\"verified\":true"), std::string::npos) << json;
        EXPECT_NE(json.find("\"check\":\""), std::string::npos) << json;
        const double ops = json_number(json, "ops");
        const double seconds = json_number(json, "seconds");
        EXPECT_TRUE(std::isfinite(ops) && ops > 0) << json;
        EXPECT_TRUE(std::isfinite(seconds) && seconds > 0 && seconds < 600) << json;
        if (json.find("\"clock_mhz\":") != std::string::npos) {
            const double mhz = json_number(json, "clock_mhz");
            EXPECT_TRUE(mhz > 0 && mhz < 10000) << json;
        }
        /* A second sample on the same preparation verifies again. */
        ASSERT_EQ(run(&json, &err), CPN_OK) << err.text;
        EXPECT_NE(json.find("\"verified\":true"), std::string::npos) << json;
    }
}

TEST_F(BenchCudaKernels, BadParamsAreNamed) {
    CPN_REQUIRE_CUDA_GPU();
    struct Case {
        const char* params;
        const char* named;
    } cases[] = {
        {"{\"reps\": 0}", "reps"},
        {"{\"reps\": -1}", "reps"},
        {"{\"reps\": 1.5}", "reps"},
        {"{\"bogus\": 1}", "bogus"},
        {"{\"bytes\": 8}", "bytes"},
        {"{\"seed\": \"x\"}", "seed"},
        {"[1]", "params_json"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.params);
        cpn_msg err{};
        EXPECT_EQ(prepare("bench.fp32", c.params, &err), CPN_E_INVALID_ARGUMENT);
        EXPECT_NE(std::string(err.text).find(c.named), std::string::npos) << err.text;
        const cpn_query_result q = query("bench.fp32", c.params);
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::string(q.reason).find(c.named), std::string::npos) << q.reason;
    }
}

TEST_F(BenchCudaKernels, UnsupportedKindsSayWhy) {
    CPN_REQUIRE_CUDA_GPU();
    cpn_query_result q = query("bench.clock", "{}");
    EXPECT_EQ(q.supported, 0);
    EXPECT_NE(std::string(q.reason).find("CPU"), std::string::npos) << q.reason;
    q = query("bench.nonsense", "{}");
    EXPECT_EQ(q.supported, 0);
    EXPECT_NE(std::string(q.reason).find("bench.nonsense"), std::string::npos) << q.reason;
    cpn_msg err{};
    EXPECT_EQ(prepare("bench.nonsense", "{}", &err), CPN_E_UNSUPPORTED);
}

TEST_F(BenchCudaKernels, RepsInputOverridesParams) {
    CPN_REQUIRE_CUDA_GPU();
    cpn_msg err{};
    ASSERT_EQ(prepare("bench.fp32", "{\"reps\": 1}", &err), CPN_OK) << err.text;
    std::string one, three;
    ASSERT_EQ(run(&one, &err), CPN_OK) << err.text;
    const uint64_t reps = 3;
    ASSERT_EQ(run(&three, &err, &reps), CPN_OK) << err.text;
    EXPECT_DOUBLE_EQ(json_number(three, "ops"), 3 * json_number(one, "ops")) << one << " / " << three;

    const uint64_t zero = 0;
    EXPECT_EQ(run(&three, &err, &zero), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("reps"), std::string::npos) << err.text;
}

TEST_F(BenchCudaKernels, CancelBeforeRunStops) {
    CPN_REQUIRE_CUDA_GPU();
    cpn_msg err{};
    ASSERT_EQ(prepare("bench.mm.fp16", "{\"reps\": 1000}", &err), CPN_OK) << err.text;
    std::string json;
    EXPECT_EQ(run(&json, &err, nullptr, 1), CPN_E_CANCELLED);
    EXPECT_NE(std::string(err.text).find("cancelled"), std::string::npos) << err.text;
    /* The preparation stays usable. */
    const uint64_t one = 1;
    EXPECT_EQ(run(&json, &err, &one), CPN_OK) << err.text;
}

}  // namespace
