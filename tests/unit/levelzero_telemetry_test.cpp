// levelzero_telemetry_test.cpp: the Level Zero plugin's telemetry extra
// (get_proc(CPN_DEVICE_TELEMETRY_PROC), Sysman), loaded directly with dlopen (no agent code).
//
// No machine here has a Level Zero driver: sampling must say CPN_E_NOT_FOUND with the reason,
// remember that failure instead of retrying it on the next call, and reject malformed input
// cleanly. Where a driver and devices exist, the figures are checked for sanity too.
#include "cpn_backend.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifndef CPN_PLUGIN_DIR
#error "CPN_PLUGIN_DIR must name the directory the backend plugins are built into"
#endif

namespace {

std::string zes_plugin_path() {
    return std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-levelzero.so";
}

/* Log lines the plugin sent, to tell a real initialisation attempt (it logs why it failed)
 * from a replayed failure (silent). */
std::mutex g_log_mutex;
std::vector<std::string> g_log_lines;

void zes_test_log(int, const char*, const char* message) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_log_lines.emplace_back(message != nullptr ? message : "");
}

size_t sysman_log_lines() {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    size_t n = 0;
    for (const std::string& l : g_log_lines) {
        if (l.find("Sysman") != std::string::npos) ++n;
    }
    return n;
}

/* Opened once and never closed, like the backend test does: unloading the plugin would also
 * unload the Level Zero loader under it. dlopen of the same path returns the same handle. */
void* zes_plugin() {
    static void* lib = dlopen(zes_plugin_path().c_str(), RTLD_NOW | RTLD_LOCAL);
    return lib;
}

class LevelZeroTelemetry : public ::testing::Test {
protected:
    void SetUp() override {
        if (access(zes_plugin_path().c_str(), F_OK) != 0) {
            GTEST_SKIP() << "plugin not built: " << zes_plugin_path();
        }
        void* lib = zes_plugin();
        ASSERT_NE(lib, nullptr) << "dlopen(" << zes_plugin_path() << ") failed";
        auto abi = reinterpret_cast<cpn_backend_abi_version_fn>(
            dlsym(lib, CPN_BACKEND_ABI_VERSION_SYMBOL));
        ASSERT_NE(abi, nullptr) << "no " << CPN_BACKEND_ABI_VERSION_SYMBOL;
        ASSERT_EQ(abi(), CPN_BACKEND_ABI_VERSION);
        auto entry = reinterpret_cast<cpn_backend_entry_fn>(dlsym(lib, CPN_BACKEND_ENTRY_SYMBOL));
        ASSERT_NE(entry, nullptr) << "no " << CPN_BACKEND_ENTRY_SYMBOL;
        host_.abi_version = CPN_BACKEND_ABI_VERSION;
        host_.struct_size = sizeof(cpn_host);
        host_.log = zes_test_log;
        be_ = entry(&host_);
        ASSERT_NE(be_, nullptr);
        ASSERT_NE(be_->get_proc, nullptr);
        fn_ = reinterpret_cast<cpn_device_telemetry_fn>(be_->get_proc(CPN_DEVICE_TELEMETRY_PROC));
        ASSERT_NE(fn_, nullptr) << "get_proc(" << CPN_DEVICE_TELEMETRY_PROC << ") is NULL";
    }

    bool usable() {
        cpn_probe_info info{};
        info.struct_size = sizeof info;
        cpn_msg err{};
        EXPECT_EQ(be_->probe(&info, &err), CPN_OK) << err.text;
        return info.usable != 0;
    }

    cpn_host host_{};
    const cpn_backend* be_ = nullptr;
    cpn_device_telemetry_fn fn_ = nullptr;
};

TEST_F(LevelZeroTelemetry, GetProcKnowsOnlyTheTelemetryName) {
    EXPECT_EQ(be_->get_proc("no-such-extra"), nullptr);
    EXPECT_EQ(be_->get_proc(nullptr), nullptr);
    EXPECT_EQ(be_->get_proc("telemetry"), nullptr);
    EXPECT_NE(be_->shutdown, nullptr);
}

/* Without a driver: NOT_FOUND with a reason; the second call replays the remembered failure
 * (no new initialisation attempt, hence no new log line) and is fast. */
TEST_F(LevelZeroTelemetry, NoDriverIsNotFoundAndTheFailureIsRemembered) {
    if (usable()) GTEST_SKIP() << "a Level Zero driver is usable here";
    be_->shutdown(); /* forget whatever an earlier test left behind */
    be_ = reinterpret_cast<cpn_backend_entry_fn>(dlsym(zes_plugin(), CPN_BACKEND_ENTRY_SYMBOL))(
        &host_);

    const size_t logged_before = sysman_log_lines();
    cpn_device_telemetry t{};
    t.struct_size = sizeof t;
    cpn_msg err{};
    ASSERT_EQ(fn_("0000:03:00.0", &t, &err), CPN_E_NOT_FOUND) << err.text;
    const std::string first = err.text;
    EXPECT_FALSE(first.empty());
    EXPECT_NE(first.find("Sysman"), std::string::npos) << first;
    EXPECT_EQ(t.valid, 0u);
    EXPECT_EQ(t.struct_size, sizeof t);
    std::printf("[          ] Level Zero telemetry here: %s\n", first.c_str());
    const size_t logged_after_first = sysman_log_lines();
    EXPECT_GT(logged_after_first, logged_before) << "a real attempt logs why it failed";

    cpn_device_telemetry t2{};
    t2.struct_size = sizeof t2;
    t2.valid = 0xffu;
    cpn_msg err2{};
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(fn_("0000:03:00.0", &t2, &err2), CPN_E_NOT_FOUND) << err2.text;
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_STREQ(err2.text, first.c_str());
    EXPECT_EQ(t2.valid, 0u);
    EXPECT_EQ(sysman_log_lines(), logged_after_first) << "the second call tried again";
    EXPECT_LT(elapsed, std::chrono::milliseconds(250));

    /* Another address is answered from the same remembered failure. */
    cpn_msg err3{};
    EXPECT_EQ(fn_("0000:04:00.0", &t2, &err3), CPN_E_NOT_FOUND);
    EXPECT_STREQ(err3.text, first.c_str());
    EXPECT_EQ(sysman_log_lines(), logged_after_first);

    /* shutdown() forgets the failure: the next call is a real attempt again. */
    be_->shutdown();
    be_ = reinterpret_cast<cpn_backend_entry_fn>(dlsym(zes_plugin(), CPN_BACKEND_ENTRY_SYMBOL))(
        &host_);
    cpn_msg err4{};
    EXPECT_EQ(fn_("0000:03:00.0", &t2, &err4), CPN_E_NOT_FOUND);
    EXPECT_GT(std::strlen(err4.text), 0u);
    EXPECT_GT(sysman_log_lines(), logged_after_first);
}

TEST_F(LevelZeroTelemetry, MalformedArgumentsAreRejectedWithAMessage) {
    const char* bad[] = {"", "not-a-pci", "0000:zz:00.0", "0000:03:00.9", "0000:03:20.0",
                         "10000:03:00.0", "0000:03:00.0x", "0000:03:00"};
    for (const char* addr : bad) {
        cpn_device_telemetry t{};
        t.struct_size = sizeof t;
        cpn_msg err{};
        const cpn_status st = fn_(addr, &t, &err);
        EXPECT_TRUE(st == CPN_E_INVALID_ARGUMENT || st == CPN_E_NOT_FOUND)
            << "'" << addr << "': " << st << " " << err.text;
        EXPECT_GT(std::strlen(err.text), 0u) << "'" << addr << "'";
        EXPECT_EQ(t.valid, 0u);
    }
    cpn_msg err{};
    EXPECT_EQ(fn_(nullptr, nullptr, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_GT(std::strlen(err.text), 0u);
    cpn_device_telemetry t{};
    t.struct_size = sizeof t;
    EXPECT_EQ(fn_(nullptr, &t, &err), CPN_E_INVALID_ARGUMENT);
    EXPECT_EQ(fn_("0000:03:00.0", nullptr, &err), CPN_E_INVALID_ARGUMENT);
    cpn_device_telemetry small{};
    small.struct_size = 4;
    cpn_msg err2{};
    EXPECT_EQ(fn_("0000:03:00.0", &small, &err2), CPN_E_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(err2.text, "struct_size"), nullptr) << err2.text;
    /* A NULL message buffer is tolerated. */
    EXPECT_EQ(fn_("garbage", &t, nullptr), CPN_E_INVALID_ARGUMENT);
}

/* With a driver: every enumerated device with a PCI address is either unknown to Sysman
 * (NOT_FOUND, e.g. an NPU without Sysman) or gives finite figures; utilisation and power need a
 * previous sample, so the second call is the one that may have them. */
TEST_F(LevelZeroTelemetry, FiguresAreSaneWhenADriverIsPresent) {
    if (!usable()) GTEST_SKIP() << "no usable Level Zero driver here";
    uint32_t count = 0;
    cpn_msg err{};
    ASSERT_EQ(be_->device_count(&count, &err), CPN_OK) << err.text;
    for (uint32_t i = 0; i < count; ++i) {
        cpn_device_desc d{};
        d.struct_size = sizeof d;
        ASSERT_EQ(be_->device_info(i, &d, &err), CPN_OK) << err.text;
        if (d.pci_address[0] == '\0') continue;
        for (int pass = 0; pass < 2; ++pass) {
            if (pass == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
            cpn_device_telemetry t{};
            t.struct_size = sizeof t;
            cpn_msg e{};
            const cpn_status st = fn_(d.pci_address, &t, &e);
            std::printf("[          ] %s pass %d: status %d valid 0x%x util %.1f mem %llu/%llu "
                        "temp %.1f power %.1f %s\n",
                        d.pci_address, pass, st, t.valid, t.utilization_pct,
                        static_cast<unsigned long long>(t.memory_used_bytes),
                        static_cast<unsigned long long>(t.memory_total_bytes), t.temperature_c,
                        t.power_w, st == CPN_OK ? "" : e.text);
            if (st != CPN_OK) {
                EXPECT_EQ(st, CPN_E_NOT_FOUND) << e.text;
                EXPECT_GT(std::strlen(e.text), 0u);
                break;
            }
            if (pass == 0) {
                EXPECT_EQ(t.valid & (CPN_TELEM_UTILIZATION | CPN_TELEM_POWER), 0u);
            }
            if (t.valid & CPN_TELEM_UTILIZATION) {
                EXPECT_TRUE(std::isfinite(t.utilization_pct));
                EXPECT_GE(t.utilization_pct, 0.0);
                EXPECT_LE(t.utilization_pct, 100.0);
            }
            if (t.valid & CPN_TELEM_MEMORY) {
                EXPECT_GT(t.memory_total_bytes, 0u);
                EXPECT_LE(t.memory_used_bytes, t.memory_total_bytes);
            }
            if (t.valid & CPN_TELEM_TEMPERATURE) {
                EXPECT_TRUE(std::isfinite(t.temperature_c));
            }
            if (t.valid & CPN_TELEM_POWER) {
                EXPECT_TRUE(std::isfinite(t.power_w));
                EXPECT_GE(t.power_w, 0.0);
            }
        }
    }
}

}  // namespace
