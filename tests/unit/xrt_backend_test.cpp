// xrt_backend_test.cpp: the Xilinx XRT plugin, loaded the way the host loads it (dlopen), on a
// machine that may have no FPGA and no xocl driver: it must say so through probe, answer the
// other calls with a status and a message, and never take the process down. Skipped when the
// plugin was not built (libxrt-dev missing).
#include "cpn_backend.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

const std::string kPlugin = std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-xrt.so";

std::atomic<int> g_log_lines{0};
void test_log(int level, const char* backend, const char* message) {
    ++g_log_lines;
    std::printf("  [plugin log %d %s] %s\n", level, backend ? backend : "?", message ? message : "");
}

const cpn_host kHost = {CPN_BACKEND_ABI_VERSION, sizeof(cpn_host), &test_log};

/* dlopen'ed once per process and never closed: XRT does not support being unloaded. */
const cpn_backend* load(std::string& why) {
    if (access(kPlugin.c_str(), F_OK) != 0) {
        why = kPlugin + " not built (libxrt-dev not found at configure time?)";
        return nullptr;
    }
    void* h = dlopen(kPlugin.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        const char* e = dlerror();
        why = std::string("dlopen failed: ") + (e ? e : "?");
        return nullptr;
    }
    auto abi = reinterpret_cast<cpn_backend_abi_version_fn>(dlsym(h, CPN_BACKEND_ABI_VERSION_SYMBOL));
    auto entry = reinterpret_cast<cpn_backend_entry_fn>(dlsym(h, CPN_BACKEND_ENTRY_SYMBOL));
    if (abi == nullptr || entry == nullptr) {
        why = "plugin lacks " CPN_BACKEND_ABI_VERSION_SYMBOL " or " CPN_BACKEND_ENTRY_SYMBOL;
        return nullptr;
    }
    if (abi() != CPN_BACKEND_ABI_VERSION) {
        why = "ABI version " + std::to_string(abi());
        return nullptr;
    }
    return entry(&kHost);
}

class XrtBackend : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why;
        b_ = load(why);
        if (b_ == nullptr && why.find("not built") != std::string::npos) GTEST_SKIP() << why;
        ASSERT_NE(b_, nullptr) << why;
    }
    const cpn_backend* b_ = nullptr;
};

cpn_probe_info new_probe_info() {
    cpn_probe_info p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    return p;
}

}  // namespace

// First in the file on purpose: it needs a process where no earlier test has loaded XRT's shim.
// With XILINX_XRT pointing nowhere, XRT's loader throws; the reason must carry its text verbatim.
TEST_F(XrtBackend, XrtExceptionTextComesBackVerbatim) {
    if (dlopen("libxrt_core.so.2", RTLD_NOW | RTLD_NOLOAD) != nullptr)
        GTEST_SKIP() << "XRT's shim is already loaded in this process (run this test on its own)";
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        setenv("XILINX_XRT", "/nonexistent/xrt", 1);
        b_->shutdown();  // forget any probe result inherited from the parent
        cpn_probe_info p = new_probe_info();
        cpn_msg err{};
        cpn_status st = b_->probe(&p, &err);
        char out[1024];
        int n = std::snprintf(out, sizeof out, "%d|%d|%s", static_cast<int>(st), p.usable, p.reason);
        if (write(fds[1], out, static_cast<size_t>(n)) < 0) _exit(3);
        _exit(0);
    }
    close(fds[1]);
    std::string got;
    char buf[512];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child died: signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    std::printf("  child probe (XILINX_XRT=/nonexistent/xrt): %s\n", got.c_str());
    EXPECT_EQ(got.rfind("0|0|", 0), 0u) << got;  // CPN_OK, usable=0
    EXPECT_NE(got.find("/nonexistent/xrt/lib/libxrt_core.so"), std::string::npos) << got;
}

TEST_F(XrtBackend, TableIsComplete) {
    EXPECT_EQ(b_->abi_version, CPN_BACKEND_ABI_VERSION);
    EXPECT_EQ(b_->struct_size, sizeof(cpn_backend));
    EXPECT_STREQ(b_->name, "xrt");
    EXPECT_NE(b_->version, nullptr);
    EXPECT_NE(b_->probe, nullptr);
    EXPECT_NE(b_->device_count, nullptr);
    EXPECT_NE(b_->device_info, nullptr);
    EXPECT_NE(b_->device_open, nullptr);
    EXPECT_NE(b_->device_close, nullptr);
    EXPECT_NE(b_->query, nullptr);
    EXPECT_NE(b_->prepare, nullptr);
    EXPECT_NE(b_->run, nullptr);
    EXPECT_NE(b_->release, nullptr);
    EXPECT_NE(b_->get_proc, nullptr);
    EXPECT_NE(b_->shutdown, nullptr);
    EXPECT_EQ(b_->get_proc("telemetry"), nullptr);
}

TEST_F(XrtBackend, ProbeWithoutFpgaSaysWhy) {
    cpn_probe_info p = new_probe_info();
    cpn_msg err{};
    ASSERT_EQ(b_->probe(&p, &err), CPN_OK) << err.text;
    std::printf("  usable=%d reason='%s' runtime='%s' version='%s' driver='%s'\n", p.usable,
                p.reason, p.runtime_name, p.runtime_version, p.driver_version);
    EXPECT_STREQ(p.runtime_name, "Xilinx XRT");
    EXPECT_STRNE(p.runtime_version, "");
    if (p.usable == 0) {
        EXPECT_STRNE(p.reason, "") << "an unusable backend must say why";
    } else {
        std::printf("  an XRT device is present here: the no-FPGA expectations do not apply\n");
    }
}

TEST_F(XrtBackend, DeviceCountAfterProbe) {
    cpn_probe_info p = new_probe_info();
    cpn_msg err{};
    ASSERT_EQ(b_->probe(&p, &err), CPN_OK);
    uint32_t count = 12345;
    cpn_msg cerr{};
    cpn_status st = b_->device_count(&count, &cerr);
    if (st == CPN_OK) {
        if (p.usable == 0) {
            EXPECT_EQ(count, 0u);
        } else {
            EXPECT_GT(count, 0u);
        }
    } else {
        EXPECT_STRNE(cerr.text, "") << "status " << st;
        EXPECT_EQ(count, 0u);
    }
    // Past the end: an error with a message, no crash.
    cpn_device_desc d;
    std::memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    cpn_msg ierr{};
    EXPECT_NE(b_->device_info(st == CPN_OK ? count : 0, &d, &ierr), CPN_OK);
    EXPECT_STRNE(ierr.text, "");
    for (uint32_t i = 0; st == CPN_OK && i < count; ++i) {  // only where an FPGA exists
        std::memset(&d, 0, sizeof d);
        d.struct_size = sizeof d;
        ASSERT_EQ(b_->device_info(i, &d, &ierr), CPN_OK) << ierr.text;
        EXPECT_EQ(d.device_class, CPN_CLASS_FPGA);
    }
}

TEST_F(XrtBackend, BadArgumentsAreRefused) {
    cpn_msg err{};
    EXPECT_EQ(b_->probe(nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_STRNE(err.text, "");
    cpn_probe_info small = new_probe_info();
    small.struct_size = 4;
    EXPECT_EQ(b_->probe(&small, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(b_->device_count(nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(b_->device_info(0, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(b_->device_open(0, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(b_->probe(nullptr, nullptr), CPN_E_INVALID_ARGUMENT);  // NULL err is allowed
}

TEST_F(XrtBackend, ExecutionHalfIsUnsupported) {
    cpn_msg err{};
    cpn_device_handle* h = nullptr;
    cpn_status st = b_->device_open(0, &h, &err);
    if (st != CPN_OK) {
        EXPECT_EQ(h, nullptr);
        EXPECT_STRNE(err.text, "");
        std::printf("  device_open(0): status %d: %s\n", st, err.text);
    }
    cpn_workload w{sizeof(cpn_workload), "selftest.saxpy", "{}", nullptr, 0};
    if (h != nullptr) {
        cpn_query_result q{};
        q.struct_size = sizeof q;
        ASSERT_EQ(b_->query(h, &w, &q, &err), CPN_OK);
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::string(q.reason).find("no workload kernels"), std::string::npos);
        cpn_prepared* prep = nullptr;
        EXPECT_EQ(b_->prepare(h, &w, &prep, &err), CPN_E_UNSUPPORTED);
        EXPECT_EQ(prep, nullptr);
        b_->device_close(h);
    }
    cpn_query_result q{};
    q.struct_size = sizeof q;
    EXPECT_EQ(b_->query(nullptr, &w, &q, &err), CPN_E_INVALID_ARGUMENT);
    cpn_prepared* prep = nullptr;
    EXPECT_EQ(b_->prepare(nullptr, &w, &prep, &err), CPN_E_INVALID_ARGUMENT);
    cpn_msg rerr{};
    EXPECT_EQ(b_->run(nullptr, nullptr, nullptr, &rerr), CPN_E_UNSUPPORTED);
    EXPECT_NE(std::string(rerr.text).find("no workload kernels"), std::string::npos) << rerr.text;
    b_->release(nullptr);
    b_->device_close(nullptr);
}

TEST_F(XrtBackend, ShutdownThenProbeAgain) {
    b_->shutdown();
    cpn_probe_info p = new_probe_info();
    cpn_msg err{};
    EXPECT_EQ(b_->probe(&p, &err), CPN_OK);
    if (p.usable == 0) {
        EXPECT_STRNE(p.reason, "");
    }
    // Re-register the log callback the shutdown dropped, as a host re-initialising would.
    std::string why;
    EXPECT_NE(load(why), nullptr) << why;
}
