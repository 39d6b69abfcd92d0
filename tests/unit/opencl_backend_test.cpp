// opencl_backend_test.cpp: the OpenCL backend plugin driven through its C ABI, as the host
// drives it, on the machine's real OpenCL platform (PoCL's CPU device in CI).
//
// Self-contained on purpose: it dlopens the built plugin and uses only cpn_backend.h, so it
// tests the plugin's contract and nothing of the core's loader.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <time.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cpn_backend.h"

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

constexpr const char* kPluginPath = CPN_PLUGIN_DIR "/libcpn-backend-opencl.so";

void noop_log(int, const char*, const char*) {}

/* The plugin, loaded once for the whole suite and never unloaded (the OpenCL runtime keeps
 * threads of its own; unloading under them proves nothing about the plugin). */
struct Plugin {
    void* handle = nullptr;
    const cpn_backend* table = nullptr;
    uint32_t abi = 0;
    std::string error;
};

const Plugin& plugin() {
    static const Plugin p = [] {
        Plugin out;
        out.handle = dlopen(kPluginPath, RTLD_NOW | RTLD_LOCAL);
        if (out.handle == nullptr) {
            out.error = std::string("dlopen failed: ") + dlerror();
            return out;
        }
        auto abi = reinterpret_cast<cpn_backend_abi_version_fn>(
            dlsym(out.handle, CPN_BACKEND_ABI_VERSION_SYMBOL));
        auto entry =
            reinterpret_cast<cpn_backend_entry_fn>(dlsym(out.handle, CPN_BACKEND_ENTRY_SYMBOL));
        if (abi == nullptr || entry == nullptr) {
            out.error = "plugin lacks cpn_backend_abi_version or cpn_backend_entry";
            return out;
        }
        out.abi = abi();
        static const cpn_host host{CPN_BACKEND_ABI_VERSION, sizeof(cpn_host), noop_log};
        out.table = entry(&host);
        if (out.table == nullptr) out.error = "cpn_backend_entry returned NULL";
        return out;
    }();
    return p;
}

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class OpenclBackend : public ::testing::Test {
protected:
    void SetUp() override {
        if (!std::filesystem::exists(kPluginPath))
            GTEST_SKIP() << "OpenCL plugin not built: " << kPluginPath << " does not exist";
        ASSERT_TRUE(plugin().error.empty()) << plugin().error;
        be = plugin().table;
    }
    void TearDown() override {
        if (be == nullptr) return;
        for (cpn_prepared* p : prepared_) be->release(p);
        for (cpn_device_handle* d : opened_) be->device_close(d);
    }

    /* Flat index of the first CPU-class device, or -1. */
    int find_cpu_device(cpn_device_desc* desc) {
        uint32_t n = 0;
        cpn_msg err{};
        if (be->device_count(&n, &err) != CPN_OK) return -1;
        for (uint32_t i = 0; i < n; ++i) {
            *desc = cpn_device_desc{};
            desc->struct_size = sizeof(cpn_device_desc);
            if (be->device_info(i, desc, &err) == CPN_OK && desc->device_class == CPN_CLASS_CPU)
                return static_cast<int>(i);
        }
        return -1;
    }

    /* Opens the CPU device, closed again in TearDown. */
    cpn_device_handle* open_cpu() {
        cpn_device_desc desc{};
        int index = find_cpu_device(&desc);
        if (index < 0) {
            ADD_FAILURE() << "no CPU-class OpenCL device (is pocl-opencl-icd installed?)";
            return nullptr;
        }
        cpn_device_handle* dev = nullptr;
        cpn_msg err{};
        cpn_status st = be->device_open(static_cast<uint32_t>(index), &dev, &err);
        EXPECT_EQ(st, CPN_OK) << err.text;
        if (dev != nullptr) opened_.push_back(dev);
        return dev;
    }

    cpn_prepared* prepare(cpn_device_handle* dev, const char* kind, const char* params,
                          cpn_status expect = CPN_OK, std::string* message = nullptr) {
        cpn_workload w{sizeof(cpn_workload), kind, params, nullptr, 0};
        cpn_prepared* p = nullptr;
        cpn_msg err{};
        cpn_status st = be->prepare(dev, &w, &p, &err);
        EXPECT_EQ(st, expect) << err.text;
        if (message != nullptr) *message = err.text;
        if (p != nullptr) prepared_.push_back(p);
        return p;
    }

    const cpn_backend* be = nullptr;

private:
    std::vector<cpn_device_handle*> opened_;
    std::vector<cpn_prepared*> prepared_;
};

/* Random x and y of n floats, and the run_io pointing at them with output y_out. */
struct SaxpyData {
    explicit SaxpyData(size_t n, uint32_t seed = 42) : x(n), y(n), y_out(n, -1.0f) {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> dist(-100.0f, 100.0f);
        for (size_t i = 0; i < n; ++i) {
            x[i] = dist(rng);
            y[i] = dist(rng);
        }
        inputs[0] = {"x", x.data(), n * sizeof(float)};
        inputs[1] = {"y", y.data(), n * sizeof(float)};
        outputs[0] = {"y", y_out.data(), n * sizeof(float)};
        io.struct_size = sizeof io;
        io.inputs = inputs;
        io.input_count = 2;
        io.outputs = outputs;
        io.output_count = 1;
        io.result_json = result;
        io.result_json_capacity = sizeof result;
    }
    std::vector<float> x, y, y_out;
    cpn_buffer inputs[2]{};
    cpn_buffer outputs[1]{};
    char result[256] = {};
    cpn_run_io io{};
};

TEST_F(OpenclBackend, AbiAndFunctionTable) {
    EXPECT_EQ(plugin().abi, CPN_BACKEND_ABI_VERSION);
    EXPECT_EQ(be->abi_version, CPN_BACKEND_ABI_VERSION);
    EXPECT_EQ(be->struct_size, sizeof(cpn_backend));
    EXPECT_STREQ(be->name, "opencl");
    ASSERT_NE(be->version, nullptr);
    for (const void* fn :
         {(const void*)be->probe, (const void*)be->device_count, (const void*)be->device_info,
          (const void*)be->device_open, (const void*)be->device_close, (const void*)be->query,
          (const void*)be->prepare, (const void*)be->run, (const void*)be->release,
          (const void*)be->get_proc, (const void*)be->shutdown})
        EXPECT_NE(fn, nullptr);
    EXPECT_EQ(be->get_proc("telemetry"), nullptr);
}

TEST_F(OpenclBackend, ProbeIsUsable) {
    cpn_probe_info info{};
    info.struct_size = sizeof info;
    cpn_msg err{};
    ASSERT_EQ(be->probe(&info, &err), CPN_OK) << err.text;
    EXPECT_EQ(info.usable, 1) << info.reason;
    EXPECT_STREQ(info.runtime_name, "OpenCL ICD loader");
    EXPECT_EQ(std::string(info.runtime_version).rfind("OpenCL ", 0), 0u) << info.runtime_version;
}

TEST_F(OpenclBackend, EnumeratesDevices) {
    uint32_t n = 0;
    cpn_msg err{};
    ASSERT_EQ(be->device_count(&n, &err), CPN_OK) << err.text;
    ASSERT_GE(n, 1u);
    for (uint32_t i = 0; i < n; ++i) {
        cpn_device_desc d{};
        d.struct_size = sizeof d;
        ASSERT_EQ(be->device_info(i, &d, &err), CPN_OK) << err.text;
        EXPECT_NE(d.native_name[0], '\0') << "device " << i;
        EXPECT_NE(d.precisions & CPN_PREC_FP32, 0u) << "device " << i;
        EXPECT_EQ(d.numa_node, -1);
        EXPECT_LE(d.attr_count, static_cast<uint32_t>(CPN_MAX_ATTRS));
        bool has_platform = false;
        for (uint32_t a = 0; a < d.attr_count; ++a) {
            EXPECT_EQ(std::string(d.attrs[a].key).rfind("opencl.", 0), 0u) << d.attrs[a].key;
            has_platform = has_platform || std::strcmp(d.attrs[a].key, "opencl.platform") == 0;
        }
        EXPECT_TRUE(has_platform) << "device " << i;
    }
    cpn_device_desc d{};
    d.struct_size = sizeof d;
    EXPECT_EQ(be->device_info(n, &d, &err), CPN_E_INVALID_ARGUMENT);
}

TEST_F(OpenclBackend, CpuDeviceMatchesHost) {
    cpn_device_desc d{};
    ASSERT_GE(find_cpu_device(&d), 0)
        << "no CPU-class OpenCL device (is pocl-opencl-icd installed?)";
    EXPECT_EQ(d.compute_units, std::thread::hardware_concurrency()) << d.native_name;
    EXPECT_GT(d.memory_bytes, 0u);
    EXPECT_EQ(d.healthy, 1) << d.health_reason;
    EXPECT_NE(d.vendor[0], '\0');
    EXPECT_NE(d.driver_version[0], '\0');
}

TEST_F(OpenclBackend, SaxpyMatchesHost) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    constexpr size_t n = 100003;  // prime: not a multiple of any work-group size
    const float a = 2.5f;
    const std::string params = "{\"a\": 2.5, \"n\": " + std::to_string(n) + "}";

    cpn_workload w{sizeof(cpn_workload), "selftest.saxpy", params.c_str(), nullptr, 0};
    cpn_query_result q{};
    q.struct_size = sizeof q;
    cpn_msg err{};
    ASSERT_EQ(be->query(dev, &w, &q, &err), CPN_OK) << err.text;
    EXPECT_EQ(q.supported, 1) << q.reason;
    EXPECT_EQ(q.device_memory_bytes, 2 * n * sizeof(float));

    cpn_prepared* p = prepare(dev, "selftest.saxpy", params.c_str());
    ASSERT_NE(p, nullptr);

    SaxpyData data(n);
    struct Progress {
        int calls = 0;
        double last = 0.0;
    } progress;
    cpn_run_control control{};
    control.struct_size = sizeof control;
    control.progress = [](void* user, double fraction, const char*) {
        auto* pr = static_cast<Progress*>(user);
        ++pr->calls;
        pr->last = fraction;
    };
    control.user = &progress;
    ASSERT_EQ(be->run(p, &data.io, &control, &err), CPN_OK) << err.text;

    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        const float want = std::fma(a, data.x[i], data.y[i]);
        // Relative to the operands' magnitude, so cancellation near zero does not blow it up.
        const float scale = std::fabs(a * data.x[i]) + std::fabs(data.y[i]);
        if (std::fabs(data.y_out[i] - want) > 1e-6f * scale + 1e-30f) {
            if (bad == 0)
                ADD_FAILURE() << "y[" << i << "] = " << data.y_out[i] << ", want " << want;
            ++bad;
        }
    }
    EXPECT_EQ(bad, 0u) << "elements differing from a*x+y";
    EXPECT_EQ(progress.calls, 1);
    EXPECT_EQ(progress.last, 1.0);
    EXPECT_NE(std::string(data.result).find("\"elements\":100003"), std::string::npos)
        << data.result;
    EXPECT_NE(std::string(data.result).find("\"device_ms\":"), std::string::npos) << data.result;

    // The same prepared workload runs again (the program is cached, the kernel reused).
    SaxpyData again(n, 7);
    ASSERT_EQ(be->run(p, &again.io, nullptr, &err), CPN_OK) << err.text;
    EXPECT_EQ(again.y_out[n - 1], std::fma(a, again.x[n - 1], again.y[n - 1]));
}

TEST_F(OpenclBackend, UnknownKindIsUnsupported) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    cpn_workload w{sizeof(cpn_workload), "render.pathtrace", "{}", nullptr, 0};
    cpn_query_result q{};
    q.struct_size = sizeof q;
    cpn_msg err{};
    ASSERT_EQ(be->query(dev, &w, &q, &err), CPN_OK) << err.text;
    EXPECT_EQ(q.supported, 0);
    EXPECT_NE(std::string(q.reason).find("render.pathtrace"), std::string::npos) << q.reason;
    EXPECT_NE(std::string(q.reason).find("opencl"), std::string::npos) << q.reason;

    std::string message;
    EXPECT_EQ(prepare(dev, "render.pathtrace", "{}", CPN_E_UNSUPPORTED, &message), nullptr);
    EXPECT_NE(message.find("render.pathtrace"), std::string::npos) << message;
}

TEST_F(OpenclBackend, MalformedParamsAreInvalid) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    std::string message;
    EXPECT_EQ(prepare(dev, "selftest.saxpy", "{\"a\": \"two\"}", CPN_E_INVALID_ARGUMENT, &message),
              nullptr);
    EXPECT_NE(message.find("\"a\""), std::string::npos) << message;
    EXPECT_EQ(prepare(dev, "selftest.saxpy", "not json", CPN_E_INVALID_ARGUMENT), nullptr);
}

TEST_F(OpenclBackend, CancelBeforeRun) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    cpn_prepared* p = prepare(dev, "selftest.saxpy", "{\"a\": 1.0}");
    ASSERT_NE(p, nullptr);
    SaxpyData data(1024);
    volatile int32_t cancel = 1;
    cpn_run_control control{};
    control.struct_size = sizeof control;
    control.cancel = &cancel;
    cpn_msg err{};
    EXPECT_EQ(be->run(p, &data.io, &control, &err), CPN_E_CANCELLED) << err.text;
    EXPECT_EQ(data.y_out[0], -1.0f) << "a cancelled run must not write its output";
}

TEST_F(OpenclBackend, DeadlineInThePast) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    cpn_prepared* p = prepare(dev, "selftest.saxpy", "{\"a\": 1.0}");
    ASSERT_NE(p, nullptr);
    SaxpyData data(1024);
    cpn_run_control control{};
    control.struct_size = sizeof control;
    control.deadline_ns = monotonic_ns() - 1;
    cpn_msg err{};
    EXPECT_EQ(be->run(p, &data.io, &control, &err), CPN_E_DEADLINE_EXCEEDED) << err.text;
}

TEST_F(OpenclBackend, WrongBufferIsNamed) {
    cpn_device_handle* dev = open_cpu();
    ASSERT_NE(dev, nullptr);
    cpn_prepared* p = prepare(dev, "selftest.saxpy", "{\"a\": 3}");
    ASSERT_NE(p, nullptr);
    cpn_msg err{};

    SaxpyData wrong_name(256);
    wrong_name.inputs[0].name = "xs";
    EXPECT_EQ(be->run(p, &wrong_name.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("\"xs\""), std::string::npos) << err.text;

    SaxpyData wrong_size(256);
    wrong_size.inputs[1].size -= sizeof(float);
    EXPECT_EQ(be->run(p, &wrong_size.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("\"y\""), std::string::npos) << err.text;

    SaxpyData missing(256);
    missing.io.input_count = 1;  // only "x"
    EXPECT_EQ(be->run(p, &missing.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.text).find("\"y\""), std::string::npos) << err.text;
}

}  // namespace
