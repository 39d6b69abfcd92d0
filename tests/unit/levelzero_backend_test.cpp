// levelzero_backend_test.cpp: the oneAPI Level Zero backend plugin, loaded directly with dlopen
// (no agent code).
//
// No machine here has a Level Zero driver: probe must say "not usable" with the reason and the
// rest must fail cleanly. Where a driver and devices exist, enumeration is checked too.
#include "cpn_backend.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

std::string ze_plugin_path() {
    return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-levelzero.so";
}

void ze_test_log(int, const char*, const char*) {}

/* The plugin, opened once for the whole test program and never closed: zeInit is once per
 * process, and unloading the plugin would also unload the Level Zero loader under it. */
struct ZePlugin {
    void* lib = nullptr;
    std::string error;
    cpn_backend_abi_version_fn abi_version = nullptr;
    cpn_backend_entry_fn entry = nullptr;
};

const ZePlugin& ze_plugin() {
    static ZePlugin p = [] {
        ZePlugin q;
        q.lib = dlopen(ze_plugin_path().c_str(), RTLD_NOW | RTLD_LOCAL);
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

class LevelZeroBackend : public ::testing::Test {
protected:
    void SetUp() override {
        if (access(ze_plugin_path().c_str(), F_OK) != 0) {
            GTEST_SKIP() << "plugin not built: " << ze_plugin_path();
        }
        const ZePlugin& p = ze_plugin();
        ASSERT_NE(p.lib, nullptr) << "dlopen(" << ze_plugin_path() << "): " << p.error;
        ASSERT_NE(p.abi_version, nullptr) << "no " << CPN_BACKEND_ABI_VERSION_SYMBOL;
        ASSERT_EQ(p.abi_version(), CPN_BACKEND_ABI_VERSION);
        ASSERT_NE(p.entry, nullptr) << "no " << CPN_BACKEND_ENTRY_SYMBOL;
        host_.abi_version = CPN_BACKEND_ABI_VERSION;
        host_.struct_size = sizeof(cpn_host);
        host_.log = ze_test_log;
        be_ = p.entry(&host_);
        ASSERT_NE(be_, nullptr);
    }

    cpn_probe_info probe() {
        cpn_probe_info info{};
        info.struct_size = sizeof info;
        cpn_msg err{};
        EXPECT_EQ(be_->probe(&info, &err), CPN_OK) << err.text;
        return info;
    }

    cpn_host host_{};
    const cpn_backend* be_ = nullptr;
};

TEST_F(LevelZeroBackend, ExportsTable) {
    EXPECT_EQ(be_->abi_version, CPN_BACKEND_ABI_VERSION);
    EXPECT_EQ(be_->struct_size, sizeof(cpn_backend));
    EXPECT_STREQ(be_->name, "levelzero");
    ASSERT_NE(be_->version, nullptr);
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

TEST_F(LevelZeroBackend, ProbeSaysWhetherUsableAndWhy) {
    cpn_probe_info info = probe();
    EXPECT_STREQ(info.runtime_name, "oneAPI Level Zero");
    if (info.usable == 0) {
        std::printf("[          ] Level Zero not usable here: %s\n", info.reason);
        EXPECT_GT(std::strlen(info.reason), 0u);
    } else {
        unsigned major = 0, minor = 0;
        EXPECT_EQ(std::sscanf(info.runtime_version, "%u.%u", &major, &minor), 2)
            << info.runtime_version;
        EXPECT_EQ(major, 1u);
    }
    /* A second probe answers the same (zeInit runs once per process). */
    cpn_probe_info again = probe();
    EXPECT_EQ(again.usable, info.usable);
    EXPECT_STREQ(again.reason, info.reason);
}

/* After an unusable probe: device_count is 0 or an error with a message; device_open and
 * device_info fail with a message; nothing crashes. */
TEST_F(LevelZeroBackend, UnusableProbeIsHandledCleanly) {
    cpn_probe_info info = probe();
    if (info.usable != 0) GTEST_SKIP() << "Level Zero is usable here";
    uint32_t count = 99;
    cpn_msg err{};
    cpn_status st = be_->device_count(&count, &err);
    if (st == CPN_OK) {
        EXPECT_EQ(count, 0u);
    } else {
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

TEST_F(LevelZeroBackend, RunIsNotImplemented) {
    cpn_msg err{};
    EXPECT_EQ(be_->run(nullptr, nullptr, nullptr, &err), CPN_E_UNSUPPORTED);
    EXPECT_NE(std::strstr(err.text, "not implemented"), nullptr) << err.text;
}

TEST_F(LevelZeroBackend, EnumeratesDevicesWhenUsable) {
    cpn_probe_info info = probe();
    if (info.usable == 0) GTEST_SKIP() << "no usable Level Zero driver: " << info.reason;
    uint32_t count = 0;
    cpn_msg err{};
    ASSERT_EQ(be_->device_count(&count, &err), CPN_OK) << err.text;
    ASSERT_GE(count, 1u);
    for (uint32_t i = 0; i < count; ++i) {
        cpn_device_desc d{};
        d.struct_size = sizeof d;
        ASSERT_EQ(be_->device_info(i, &d, &err), CPN_OK) << err.text;
        EXPECT_GT(std::strlen(d.vendor), 0u);
        EXPECT_GT(std::strlen(d.model), 0u);
        EXPECT_STREQ(d.model, d.native_name);
        EXPECT_NE(d.precisions & CPN_PREC_FP32, 0u);
        EXPECT_EQ(d.precisions & CPN_PREC_BF16, 0u);
        EXPECT_EQ(d.healthy, 1);
        bool has_type = false;
        for (uint32_t k = 0; k < d.attr_count; ++k) {
            if (std::strcmp(d.attrs[k].key, "levelzero.device_type") == 0) has_type = true;
        }
        EXPECT_TRUE(has_type);

        cpn_device_handle* dev = nullptr;
        ASSERT_EQ(be_->device_open(i, &dev, &err), CPN_OK) << err.text;
        cpn_workload w{};
        w.struct_size = sizeof w;
        w.kind = "selftest.saxpy";
        w.params_json = "{\"a\": 2}";
        cpn_query_result q{};
        q.struct_size = sizeof q;
        EXPECT_EQ(be_->query(dev, &w, &q, &err), CPN_OK) << err.text;
        EXPECT_EQ(q.supported, 0);
        EXPECT_NE(std::strstr(q.reason, "not implemented"), nullptr) << q.reason;
        cpn_prepared* p = nullptr;
        EXPECT_EQ(be_->prepare(dev, &w, &p, &err), CPN_E_UNSUPPORTED);
        EXPECT_EQ(p, nullptr);
        be_->device_close(dev);
    }
}

}  // namespace
