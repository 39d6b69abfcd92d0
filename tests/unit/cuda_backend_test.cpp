// cuda_backend_test.cpp: the CUDA backend plugin, loaded directly with dlopen (no agent code).
//
// On a machine without the NVIDIA driver the plugin must still load and report "not usable"
// with the reason; the GPU tests then skip, printing that reason. On a GPU machine they check
// enumeration and run the selftest.saxpy workload.
#include "cpn_backend.h"

#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

std::string cuda_plugin_path() { return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-cuda.so"; }

void cuda_test_log(int, const char*, const char*) {}

/* The plugin, opened once for the whole test program and never closed (closing and reopening
 * would only exercise the dynamic loader). */
struct CudaPlugin {
    void* lib = nullptr;
    std::string error;
    cpn_backend_abi_version_fn abi_version = nullptr;
    cpn_backend_entry_fn entry = nullptr;
};

const CudaPlugin& cuda_plugin() {
    static CudaPlugin p = [] {
        CudaPlugin q;
        q.lib = dlopen(cuda_plugin_path().c_str(), RTLD_NOW | RTLD_LOCAL);
        if (q.lib == nullptr) {
            const char* e = dlerror();
            q.error = e != nullptr ? e : "dlopen failed";
            return q;
        }
        q.abi_version = reinterpret_cast<cpn_backend_abi_version_fn>(
            dlsym(q.lib, CPN_BACKEND_ABI_VERSION_SYMBOL));
        q.entry = reinterpret_cast<cpn_backend_entry_fn>(dlsym(q.lib, CPN_BACKEND_ENTRY_SYMBOL));
        return q;
    }();
    return p;
}

class CudaBackend : public ::testing::Test {
protected:
    void SetUp() override {
        if (access(cuda_plugin_path().c_str(), F_OK) != 0) {
            GTEST_SKIP() << "plugin not built: " << cuda_plugin_path();
        }
        const CudaPlugin& p = cuda_plugin();
        ASSERT_NE(p.lib, nullptr) << "dlopen(" << cuda_plugin_path() << "): " << p.error;
        ASSERT_NE(p.abi_version, nullptr) << "no " << CPN_BACKEND_ABI_VERSION_SYMBOL;
        ASSERT_EQ(p.abi_version(), CPN_BACKEND_ABI_VERSION);
        ASSERT_NE(p.entry, nullptr) << "no " << CPN_BACKEND_ENTRY_SYMBOL;
        host_.abi_version = CPN_BACKEND_ABI_VERSION;
        host_.struct_size = sizeof(cpn_host);
        host_.log = cuda_test_log;
        be_ = p.entry(&host_);
        ASSERT_NE(be_, nullptr);
    }

    /* probe(), asserting it succeeds; the caller looks at usable/reason. */
    cpn_probe_info probe() {
        cpn_probe_info info{};
        info.struct_size = sizeof info;
        cpn_msg err{};
        EXPECT_EQ(be_->probe(&info, &err), CPN_OK) << err.text;
        return info;
    }

    /* Skips the calling test when the driver is not usable here, printing why. */
    bool require_gpu() {
        cpn_probe_info info = probe();
        if (info.usable == 0) reason_ = info.reason;
        return info.usable != 0;
    }

    /* Opens device 0 and prepares selftest.saxpy with parameter a. */
    void open_and_prepare(float a) {
        cpn_msg err{};
        ASSERT_EQ(be_->device_open(0, &dev_, &err), CPN_OK) << err.text;
        params_ = "{\"a\": " + std::to_string(a) + "}";
        cpn_workload w{};
        w.struct_size = sizeof w;
        w.kind = "selftest.saxpy";
        w.params_json = params_.c_str();
        ASSERT_EQ(be_->prepare(dev_, &w, &prep_, &err), CPN_OK) << err.text;
        ASSERT_NE(prep_, nullptr);
    }

    void TearDown() override {
        if (prep_ != nullptr) be_->release(prep_);
        if (dev_ != nullptr) be_->device_close(dev_);
    }

    cpn_host host_{};
    const cpn_backend* be_ = nullptr;
    std::string reason_;
    std::string params_;
    cpn_device_handle* dev_ = nullptr;
    cpn_prepared* prep_ = nullptr;
};

#define CPN_REQUIRE_CUDA()                                                        \
    do {                                                                          \
        if (!require_gpu()) GTEST_SKIP() << "no usable CUDA driver: " << reason_; \
    } while (0)

TEST_F(CudaBackend, ExportsTable) {
    EXPECT_EQ(be_->abi_version, CPN_BACKEND_ABI_VERSION);
    EXPECT_EQ(be_->struct_size, sizeof(cpn_backend));
    EXPECT_STREQ(be_->name, "cuda");
    ASSERT_NE(be_->version, nullptr);
    EXPECT_GT(std::strlen(be_->version), 0u);
    EXPECT_NE(be_->probe, nullptr);
    EXPECT_NE(be_->device_count, nullptr);
    EXPECT_NE(be_->device_info, nullptr);
    EXPECT_NE(be_->device_open, nullptr);
    EXPECT_NE(be_->device_close, nullptr);
    EXPECT_NE(be_->query, nullptr);
    EXPECT_NE(be_->prepare, nullptr);
    EXPECT_NE(be_->run, nullptr);
    EXPECT_NE(be_->release, nullptr);
}

/* The DT_NEEDED entries of a 64-bit ELF shared object, read from its section headers. */
std::vector<std::string> elf_needed(const std::string& path, std::string* error) {
    std::vector<std::string> needed;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        *error = "cannot open " + path;
        return needed;
    }
    std::vector<unsigned char> data;
    unsigned char chunk[65536];
    size_t got = 0;
    while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0)
        data.insert(data.end(), chunk, chunk + got);
    std::fclose(f);
    if (data.size() < sizeof(Elf64_Ehdr) || std::memcmp(data.data(), ELFMAG, SELFMAG) != 0 ||
        data[EI_CLASS] != ELFCLASS64) {
        *error = path + " is not a 64-bit ELF file";
        return needed;
    }
    Elf64_Ehdr eh;
    std::memcpy(&eh, data.data(), sizeof eh);
    auto section = [&](size_t i, Elf64_Shdr* sh) {
        const size_t off = eh.e_shoff + i * eh.e_shentsize;
        if (off + sizeof *sh > data.size()) return false;
        std::memcpy(sh, data.data() + off, sizeof *sh);
        return true;
    };
    for (size_t i = 0; i < eh.e_shnum; ++i) {
        Elf64_Shdr dyn{}, str{};
        if (!section(i, &dyn) || dyn.sh_type != SHT_DYNAMIC) continue;
        if (!section(dyn.sh_link, &str) || dyn.sh_offset + dyn.sh_size > data.size()) break;
        for (size_t k = 0; k + sizeof(Elf64_Dyn) <= dyn.sh_size; k += sizeof(Elf64_Dyn)) {
            Elf64_Dyn d;
            std::memcpy(&d, data.data() + dyn.sh_offset + k, sizeof d);
            if (d.d_tag == DT_NULL) break;
            if (d.d_tag == DT_NEEDED && str.sh_offset + d.d_un.d_val < data.size()) {
                needed.emplace_back(
                    reinterpret_cast<const char*>(data.data() + str.sh_offset + d.d_un.d_val));
            }
        }
        return needed;
    }
    *error = path + " has no dynamic section";
    return needed;
}

/* The plugin loaded (SetUp) even where libcuda.so.1 is absent; prove also that it names no
 * libcuda or libcudart as a link-time dependency, directly (DT_NEEDED) or through another
 * library (ldd, when the system has it). */
TEST_F(CudaBackend, HasNoLinkTimeCudaDependency) {
    std::string error;
    std::vector<std::string> needed = elf_needed(cuda_plugin_path(), &error);
    ASSERT_TRUE(error.empty()) << error;
    EXPECT_FALSE(needed.empty());
    for (const std::string& lib : needed) {
        EXPECT_EQ(lib.find("libcuda"), std::string::npos) << "DT_NEEDED " << lib;
    }

    std::string cmd = "ldd '" + cuda_plugin_path() + "' 2>&1";
    FILE* f = popen(cmd.c_str(), "r");
    ASSERT_NE(f, nullptr) << "popen(" << cmd << ") failed";
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
    int rc = pclose(f);
    if (rc != 0 && out.find("not found") != std::string::npos &&
        out.find("ldd") != std::string::npos) {
        GTEST_SKIP() << "ldd is not available: " << out;
    }
    ASSERT_EQ(rc, 0) << cmd << ":\n" << out;
    EXPECT_EQ(out.find("libcuda"), std::string::npos) << out;
    EXPECT_EQ(out.find("not found"), std::string::npos) << out;
}

TEST_F(CudaBackend, ProbeSaysWhetherUsableAndWhy) {
    cpn_probe_info info = probe();
    EXPECT_STREQ(info.runtime_name, "CUDA driver API");
    if (info.usable == 0) {
        std::string reason = info.reason;
        std::printf("[          ] CUDA not usable here: %s\n", info.reason);
        EXPECT_FALSE(reason.empty());
        EXPECT_TRUE(reason.find("libcuda.so.1") != std::string::npos ||
                    reason.find("no CUDA-capable device") != std::string::npos ||
                    reason.find("CUDA_ERROR_") != std::string::npos)
            << reason;
    } else {
        unsigned major = 0, minor = 0;
        EXPECT_EQ(std::sscanf(info.runtime_version, "%u.%u", &major, &minor), 2)
            << info.runtime_version;
        EXPECT_GE(major, 11u);
    }
}

TEST_F(CudaBackend, ProbeRejectsShortStruct) {
    cpn_probe_info info{};
    info.struct_size = 4;
    cpn_msg err{};
    EXPECT_EQ(be_->probe(&info, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err.text, "struct_size"), nullptr) << err.text;
}

/* Without a usable driver: device_count is 0 (or an error with a message), device_open fails
 * with a message, and nothing crashes. */
TEST_F(CudaBackend, UnusableDriverIsHandledCleanly) {
    cpn_probe_info info = probe();
    if (info.usable != 0) GTEST_SKIP() << "CUDA is usable here";
    uint32_t count = 99;
    cpn_msg err{};
    cpn_status st = be_->device_count(&count, &err);
    EXPECT_EQ(count, 0u);
    if (st != CPN_OK) {
        EXPECT_GT(std::strlen(err.text), 0u);
    }
    cpn_device_handle* dev = nullptr;
    cpn_msg err2{};
    EXPECT_NE(be_->device_open(0, &dev, &err2), CPN_OK);
    EXPECT_EQ(dev, nullptr);
    EXPECT_GT(std::strlen(err2.text), 0u);
    cpn_device_desc desc{};
    desc.struct_size = sizeof desc;
    cpn_msg err3{};
    EXPECT_NE(be_->device_info(0, &desc, &err3), CPN_OK);
    EXPECT_GT(std::strlen(err3.text), 0u);
}

TEST_F(CudaBackend, EnumeratesDevices) {
    CPN_REQUIRE_CUDA();
    uint32_t count = 0;
    cpn_msg err{};
    ASSERT_EQ(be_->device_count(&count, &err), CPN_OK) << err.text;
    ASSERT_GE(count, 1u);
    for (uint32_t i = 0; i < count; ++i) {
        cpn_device_desc d{};
        d.struct_size = sizeof d;
        ASSERT_EQ(be_->device_info(i, &d, &err), CPN_OK) << err.text;
        EXPECT_EQ(d.device_class, CPN_CLASS_GPU);
        EXPECT_STREQ(d.vendor, "NVIDIA");
        EXPECT_GT(std::strlen(d.model), 0u);
        EXPECT_GT(std::strlen(d.pci_address), 0u);
        EXPECT_EQ(std::strlen(d.uuid), 36u) << d.uuid;
        EXPECT_GT(d.memory_bytes, 0u);
        EXPECT_GT(d.compute_units, 0u);
        EXPECT_NE(d.precisions & CPN_PREC_FP32, 0u);
        EXPECT_EQ(d.healthy, 1);
        bool has_cc = false;
        for (uint32_t k = 0; k < d.attr_count; ++k) {
            if (std::strcmp(d.attrs[k].key, "nvidia.com/gpu.compute.major") == 0) {
                has_cc = true;
                EXPECT_EQ(d.attrs[k].type, CPN_ATTR_INT);
                EXPECT_GE(d.attrs[k].i, 3);
            }
        }
        EXPECT_TRUE(has_cc) << "no nvidia.com/gpu.compute.major on device " << i;
        std::printf("[          ] device %u: %s pci=%s uuid=%s sms=%u mem=%llu\n", i, d.model,
                    d.pci_address, d.uuid, d.compute_units,
                    static_cast<unsigned long long>(d.memory_bytes));
    }
}

struct ProgressLog {
    int calls = 0;
    double last = -1.0;
};

void record_progress(void* user, double fraction, const char*) {
    auto* p = static_cast<ProgressLog*>(user);
    ++p->calls;
    p->last = fraction;
}

TEST_F(CudaBackend, SaxpyMatchesHost) {
    CPN_REQUIRE_CUDA();
    const float a = 2.5f;
    open_and_prepare(a);
    const size_t n = size_t{1} << 20;
    std::vector<float> x(n), y(n), out(n, 0.0f);
    for (size_t i = 0; i < n; ++i) {
        x[i] = static_cast<float>(i % 1000) * 0.001f + 0.5f;
        y[i] = static_cast<float>((i * 7) % 997) * 0.01f - 3.0f;
    }
    const uint64_t bytes = n * sizeof(float);
    cpn_buffer inputs[2] = {{"x", x.data(), bytes}, {"y", y.data(), bytes}};
    cpn_buffer outputs[1] = {{"y", out.data(), bytes}};
    char result[256] = {};
    cpn_run_io io{};
    io.struct_size = sizeof io;
    io.inputs = inputs;
    io.input_count = 2;
    io.outputs = outputs;
    io.output_count = 1;
    io.result_json = result;
    io.result_json_capacity = sizeof result;
    volatile int32_t cancel = 0;
    ProgressLog progress;
    cpn_run_control ctl{};
    ctl.struct_size = sizeof ctl;
    ctl.cancel = &cancel;
    ctl.progress = record_progress;
    ctl.user = &progress;
    cpn_msg err{};
    ASSERT_EQ(be_->run(prep_, &io, &ctl, &err), CPN_OK) << err.text;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        const float expect = a * x[i] + y[i];
        const float tol = 1e-6f * std::max(1.0f, std::fabs(expect));
        if (std::fabs(out[i] - expect) > tol && bad++ < 5) {
            ADD_FAILURE() << "y[" << i << "] = " << out[i] << ", expected " << expect;
        }
    }
    EXPECT_EQ(bad, 0u);
    EXPECT_NE(std::strstr(result, "\"elements\":1048576"), nullptr) << result;
    EXPECT_NE(std::strstr(result, "\"device_ms\":"), nullptr) << result;
    EXPECT_GE(progress.calls, 1);
    EXPECT_EQ(progress.last, 1.0);
    std::printf("[          ] result_json: %s\n", result);
}

TEST_F(CudaBackend, UnknownKindIsUnsupported) {
    CPN_REQUIRE_CUDA();
    cpn_msg err{};
    ASSERT_EQ(be_->device_open(0, &dev_, &err), CPN_OK) << err.text;
    cpn_workload w{};
    w.struct_size = sizeof w;
    w.kind = "bench.nonexistent";
    w.params_json = "{}";
    cpn_query_result q{};
    q.struct_size = sizeof q;
    ASSERT_EQ(be_->query(dev_, &w, &q, &err), CPN_OK) << err.text;
    EXPECT_EQ(q.supported, 0);
    EXPECT_NE(std::strstr(q.reason, "bench.nonexistent"), nullptr) << q.reason;
    cpn_prepared* p = nullptr;
    EXPECT_EQ(be_->prepare(dev_, &w, &p, &err), CPN_E_UNSUPPORTED);
    EXPECT_EQ(p, nullptr);
    EXPECT_NE(std::strstr(err.text, "bench.nonexistent"), nullptr) << err.text;

    w.kind = "selftest.saxpy";
    w.params_json = "{\"a\": 1.5}";
    ASSERT_EQ(be_->query(dev_, &w, &q, &err), CPN_OK) << err.text;
    EXPECT_EQ(q.supported, 1) << q.reason;
}

/* Builds a small x/y run for the error-path tests. */
struct SmallRun {
    std::vector<float> x = std::vector<float>(256, 1.0f);
    std::vector<float> y = std::vector<float>(256, 2.0f);
    std::vector<float> out = std::vector<float>(256, 0.0f);
    cpn_buffer inputs[2];
    cpn_buffer outputs[1];
    cpn_run_io io{};
    SmallRun() {
        const uint64_t bytes = x.size() * sizeof(float);
        inputs[0] = {"x", x.data(), bytes};
        inputs[1] = {"y", y.data(), bytes};
        outputs[0] = {"y", out.data(), bytes};
        io.struct_size = sizeof io;
        io.inputs = inputs;
        io.input_count = 2;
        io.outputs = outputs;
        io.output_count = 1;
    }
};

TEST_F(CudaBackend, CancelBeforeRun) {
    CPN_REQUIRE_CUDA();
    open_and_prepare(1.0f);
    SmallRun r;
    volatile int32_t cancel = 1;
    cpn_run_control ctl{};
    ctl.struct_size = sizeof ctl;
    ctl.cancel = &cancel;
    cpn_msg err{};
    EXPECT_EQ(be_->run(prep_, &r.io, &ctl, &err), CPN_E_CANCELLED) << err.text;
}

TEST_F(CudaBackend, PastDeadlineIsExceeded) {
    CPN_REQUIRE_CUDA();
    open_and_prepare(1.0f);
    SmallRun r;
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    cpn_run_control ctl{};
    ctl.struct_size = sizeof ctl;
    ctl.deadline_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull - 1;
    cpn_msg err{};
    EXPECT_EQ(be_->run(prep_, &r.io, &ctl, &err), CPN_E_DEADLINE_EXCEEDED) << err.text;
}

TEST_F(CudaBackend, WrongBufferNameIsInvalid) {
    CPN_REQUIRE_CUDA();
    open_and_prepare(1.0f);
    SmallRun r;
    r.inputs[1].name = "z";
    cpn_msg err{};
    EXPECT_EQ(be_->run(prep_, &r.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err.text, "\"z\""), nullptr) << err.text;
}

TEST_F(CudaBackend, MismatchedSizesAreInvalid) {
    CPN_REQUIRE_CUDA();
    open_and_prepare(1.0f);
    SmallRun r;
    r.outputs[0].size -= sizeof(float);
    cpn_msg err{};
    EXPECT_EQ(be_->run(prep_, &r.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err.text, "output buffer \"y\""), nullptr) << err.text;
    r.outputs[0].size += sizeof(float);
    r.inputs[0].size -= 2;
    EXPECT_EQ(be_->run(prep_, &r.io, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err.text, "multiple of 4"), nullptr) << err.text;
}

TEST_F(CudaBackend, MissingParameterIsInvalid) {
    CPN_REQUIRE_CUDA();
    cpn_msg err{};
    ASSERT_EQ(be_->device_open(0, &dev_, &err), CPN_OK) << err.text;
    cpn_workload w{};
    w.struct_size = sizeof w;
    w.kind = "selftest.saxpy";
    w.params_json = "{\"b\": 2}";
    cpn_prepared* p = nullptr;
    EXPECT_EQ(be_->prepare(dev_, &w, &p, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err.text, "\"a\""), nullptr) << err.text;
    w.params_json = "{\"a\": }";
    EXPECT_EQ(be_->prepare(dev_, &w, &p, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(p, nullptr);
}

}  // namespace
