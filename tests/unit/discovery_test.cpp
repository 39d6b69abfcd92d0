// discovery_test.cpp: whole-node discovery through real plugin files, including the ways plugins
// fail in the field. Each scenario gets a plugin directory of its own.
#include "inventory/discovery.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cpn_backend.h"
#include "test_support.hpp"

namespace cpn {
namespace {

DiscoveryOptions options_for(const std::string& plugin_dir) {
    DiscoveryOptions o;
    o.plugin_dir = plugin_dir;
    o.helper = CPN_AGENT_BIN;
    o.probe_timeout_ms = 5000;
    o.node_id = "test-node";
    return o;
}

const PluginReport* report(const Inventory& inv, const std::string& name) {
    for (const PluginReport& p : inv.plugins)
        if (p.name == name) return &p;
    return nullptr;
}

const Device* cpu_device(const Inventory& inv) {
    for (const Device& d : inv.devices)
        if (d.device_class == DeviceClass::cpu && d.cpu) return &d;
    return nullptr;
}

TEST(Discovery, NoPluginsStillListsTheCpu) {
    test::TempDir dir;
    Inventory inv = discover(options_for(dir.path()));
    const Device* cpu = cpu_device(inv);
    ASSERT_NE(cpu, nullptr);
    EXPECT_EQ(cpu->id, "cpu");
    EXPECT_EQ(cpu->cpu->threads, static_cast<int>(std::thread::hardware_concurrency()));
    EXPECT_TRUE(cpu->runtimes.empty());
    EXPECT_TRUE(inv.plugins.empty());
}

TEST(Discovery, MissingPluginDirectoryIsReportedNotFatal) {
    Inventory inv = discover(options_for("/nonexistent/cpn-plugins"));
    ASSERT_NE(cpu_device(inv), nullptr);
    ASSERT_EQ(inv.plugins.size(), 1u);
    EXPECT_EQ(inv.plugins[0].status, "failed");
    EXPECT_NE(inv.plugins[0].reason.find("plugin directory does not exist"), std::string::npos);
}

TEST(Discovery, CpuPluginJoinsTheHostCpu) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", dir.path()));
    Inventory inv = discover(options_for(dir.path()));
    const Device* cpu = cpu_device(inv);
    ASSERT_NE(cpu, nullptr);
    ASSERT_EQ(cpu->runtimes.size(), 1u);
    EXPECT_EQ(cpu->runtimes[0].backend, "cpu");
    const PluginReport* r = report(inv, "cpu");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "ok");
    EXPECT_EQ(r->abi_version, CPN_BACKEND_ABI_VERSION);
}

TEST(Discovery, CorruptPluginFileIsReportedAndTheRestDiscovered) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", dir.path()));
    dir.write("libcpn-backend-corrupt.so", "this is not an ELF file, it was truncated in transit");
    Inventory inv = discover(options_for(dir.path()));
    const PluginReport* r = report(inv, "corrupt");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "failed");
    EXPECT_EQ(r->stage, "dlopen");
    EXPECT_NE(r->reason.find("libcpn-backend-corrupt.so"), std::string::npos) << r->reason;
    ASSERT_NE(report(inv, "cpu"), nullptr);
    EXPECT_EQ(report(inv, "cpu")->status, "ok");
    ASSERT_NE(cpu_device(inv), nullptr);
}

TEST(Discovery, WrongAbiIsRefusedNamingBothVersions) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "badabi", dir.path()));
    Inventory inv = discover(options_for(dir.path()));
    const PluginReport* r = report(inv, "badabi");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "refused");
    EXPECT_EQ(r->stage, "abi");
    const std::string want = "plugin ABI version " + std::to_string(CPN_BACKEND_ABI_VERSION + 98) +
                             " does not match the agent's ABI version " +
                             std::to_string(CPN_BACKEND_ABI_VERSION);
    EXPECT_NE(r->reason.find(want), std::string::npos) << r->reason;
    ASSERT_NE(cpu_device(inv), nullptr);
}

TEST(Discovery, HangingProbeIsTimeBoxedAndOthersComplete) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "hang", dir.path()));
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", dir.path()));
    DiscoveryOptions o = options_for(dir.path());
    o.probe_timeout_ms = 700;
    const auto t0 = std::chrono::steady_clock::now();
    Inventory inv = discover(o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 30.0);  // generous: this checks "does not hang forever", not speed
    const PluginReport* r = report(inv, "hang");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "timeout");
    EXPECT_EQ(r->reason, "probe process timed out after 700 ms and was killed");
    ASSERT_NE(report(inv, "cpu"), nullptr);
    EXPECT_EQ(report(inv, "cpu")->status, "ok");
    EXPECT_EQ(cpu_device(inv)->runtimes.size(), 1u);
}

TEST(Discovery, CrashingProbeIsReportedWithTheSignal) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "crash", dir.path()));
    Inventory inv = discover(options_for(dir.path()));
    const PluginReport* r = report(inv, "crash");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "failed");
    EXPECT_EQ(r->reason.rfind("probe process killed by signal 11 (Segmentation fault)", 0), 0u) << r->reason;
    ASSERT_NE(cpu_device(inv), nullptr);
}

TEST(Discovery, LibraryWithoutEntryIsNotABackend) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "nosymbol", dir.path()));
    Inventory inv = discover(options_for(dir.path()));
    const PluginReport* r = report(inv, "nosymbol");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "failed");
    EXPECT_EQ(r->stage, "symbol");
    EXPECT_EQ(r->reason, "not a cpn-agent backend: missing symbol cpn_backend_abi_version");
}

TEST(Discovery, MissingVendorRuntimeMeansSkipped) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "needsruntime", dir.path()));
    Inventory inv = discover(options_for(dir.path()));
    const PluginReport* r = report(inv, "needsruntime");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->status, "skipped");
    EXPECT_EQ(r->stage, "dlopen");
    EXPECT_EQ(r->reason.rfind("runtime library missing: libcpn-vanishing-runtime.so: cannot open "
                              "shared object file", 0), 0u) << r->reason;
}

TEST(Discovery, ConfigEnableAndDisable) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", dir.path()));
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "hang", dir.path()));
    DiscoveryOptions o = options_for(dir.path());
    o.disable = {"hang"};
    o.enable = {};
    Inventory inv = discover(o);
    ASSERT_NE(report(inv, "hang"), nullptr);
    EXPECT_EQ(report(inv, "hang")->status, "skipped");
    EXPECT_EQ(report(inv, "hang")->reason, "disabled in the configuration (plugins.disable)");

    o.disable = {};
    o.enable = {"cpu", "cuda-typo"};
    inv = discover(o);
    EXPECT_EQ(report(inv, "hang")->reason, "not listed in plugins.enable");
    ASSERT_NE(report(inv, "cuda-typo"), nullptr);
    EXPECT_EQ(report(inv, "cuda-typo")->reason,
              "plugins.enable names 'cuda-typo' but no such plugin file exists");
}

TEST(Discovery, EveryFailureAtOnce) {
    test::TempDir dir;
    for (const char* p : {"badabi", "hang", "crash", "nosymbol", "needsruntime"})
        ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, p, dir.path()));
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", dir.path()));
    dir.write("libcpn-backend-corrupt.so", "garbage");
    DiscoveryOptions o = options_for(dir.path());
    // Long enough for the CPU plugin's probe child (the agent with its ONNX and BLAS libraries)
    // to start under qemu-user in the arm64 cross test; the hanging plugin costs this much.
    o.probe_timeout_ms = 3000;
    Inventory inv = discover(o);
    EXPECT_EQ(inv.plugins.size(), 7u);
    for (const PluginReport& p : inv.plugins) {
        EXPECT_FALSE(p.status.empty()) << p.name;
        if (p.name != "cpu") {
            EXPECT_FALSE(p.reason.empty()) << p.name;
        }
    }
    EXPECT_EQ(report(inv, "cpu")->status, "ok");
    ASSERT_NE(cpu_device(inv), nullptr);
}

}  // namespace
}  // namespace cpn

namespace cpn {
namespace {

/* A recorded Alveo card and an Intel NPU on the bus, and a backend that claims the card's user
 * function and the NPU: each becomes one device with a runtime; the management function stays
 * listed with "no runtime". */
TEST(Discovery, FakeAcceleratorsJoinTheirRecordedPciDevices) {
    test::TempDir dir;
    ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, "fakeaccel", dir.path()));
    ::setenv("CPN_FAKE_ACCEL_DEVICES",
             "fpga,0000:AF:00.1,Alveo U250 (fake);npu,0000:00:0b.0,Fake NPU,firmware hang detected", 1);
    DiscoveryOptions o = options_for(dir.path());
    o.sysfs_root = std::string(CPN_FIXTURES_DIR) + "/sysfs/xilinx-card";
    Inventory inv = discover(o);
    ::unsetenv("CPN_FAKE_ACCEL_DEVICES");

    const Device* user = nullptr;
    const Device* mgmt = nullptr;
    const Device* npu = nullptr;
    for (const Device& d : inv.devices) {
        if (d.id == "pci-0000:af:00.1") user = &d;
        if (d.id == "pci-0000:af:00.0") mgmt = &d;
        if (d.id == "pci-0000:00:0b.0") npu = &d;
    }
    ASSERT_NE(user, nullptr);
    EXPECT_EQ(user->device_class, DeviceClass::fpga);
    ASSERT_EQ(user->runtimes.size(), 1u);
    EXPECT_EQ(user->runtimes[0].backend, "fakeaccel");
    EXPECT_EQ(user->model, "Alveo U250 (fake)");
    EXPECT_EQ(user->attributes.count("pci.vendor_id"), 1u);  // the bus view is kept
    EXPECT_TRUE(user->health.healthy);
    ASSERT_NE(mgmt, nullptr);
    EXPECT_TRUE(mgmt->runtimes.empty());
    EXPECT_NE(mgmt->health.reason.find("no runtime"), std::string::npos) << mgmt->health.reason;
    // Not on this recorded bus: listed from the runtime alone, with its health.
    ASSERT_NE(npu, nullptr);
    EXPECT_EQ(npu->device_class, DeviceClass::npu);
    EXPECT_FALSE(npu->health.healthy);
    EXPECT_EQ(npu->health.reason, "firmware hang detected");
}

TEST(Discovery, RecordedNpuUnderAccelClassIsListedWithoutRuntime) {
    test::TempDir dir;
    DiscoveryOptions o = options_for(dir.path());
    o.sysfs_root = std::string(CPN_FIXTURES_DIR) + "/sysfs/npu-accel";
    o.pci_ids_path = "";
    Inventory inv = discover(o);
    const Device* npu = nullptr;
    for (const Device& d : inv.devices)
        if (d.device_class == DeviceClass::npu) npu = &d;
    ASSERT_NE(npu, nullptr);
    EXPECT_TRUE(npu->runtimes.empty());
    EXPECT_NE(npu->health.reason.find("no runtime"), std::string::npos);
}

}  // namespace
}  // namespace cpn
