// pci_scan_test.cpp: the PCI / accel sysfs scanner against recorded sysfs subsets under
// tests/fixtures/sysfs/<name>/, each compared with the expected.json beside it.
//
// expected.json holds the scan result as JSON:
//   { "devices": [ { "address": "0000:17:00.0", "vendor_id": "10de", "device_id": "2330",
//                    "subsystem_vendor_id": "10de", "subsystem_device_id": "16c1",
//                    "class": "030200", "driver": "", "numa_node": 0, "accel_nodes": [],
//                    "device_class": "gpu", "vendor_name": "NVIDIA Corporation",
//                    "device_name": "GH100 [H100 SXM5 80GB]" } ... ],
//     "warnings": [ "${ROOT}/bus/pci/devices/...: problem" ... ] }
// ids are lower-case hex without "0x"; names come from tests/fixtures/sysfs/pci.ids (a small
// subset, so that the result does not depend on the pci.ids version installed); ${ROOT} stands
// for the fixture directory. Set CPN_UPDATE_FIXTURES=1 to rewrite expected.json from the scan.
#include "inventory/pci_scan.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kFixtures = std::string(CPN_FIXTURES_DIR) + "/sysfs";
const std::string kPciIds = kFixtures + "/pci.ids";

std::string hex(uint32_t v, int digits) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%0*x", digits, v);
    return buf;
}

const char* class_name(cpn::DeviceClass c) {
    switch (c) {
        case cpn::DeviceClass::cpu: return "cpu";
        case cpn::DeviceClass::gpu: return "gpu";
        case cpn::DeviceClass::fpga: return "fpga";
        case cpn::DeviceClass::npu: return "npu";
        case cpn::DeviceClass::other: return "other";
    }
    return "?";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
        s.replace(p, from.size(), to);
    return s;
}

json result_to_json(const cpn::PciScanResult& r, const std::string& root) {
    json j;
    j["devices"] = json::array();
    for (const auto& d : r.devices) {
        j["devices"].push_back({
            {"address", d.address},
            {"vendor_id", hex(d.vendor_id, 4)},
            {"device_id", hex(d.device_id, 4)},
            {"subsystem_vendor_id", hex(d.subsystem_vendor_id, 4)},
            {"subsystem_device_id", hex(d.subsystem_device_id, 4)},
            {"class", hex(d.class_code, 6)},
            {"driver", d.driver},
            {"numa_node", d.numa_node},
            {"accel_nodes", d.accel_nodes},
            {"device_class", class_name(d.device_class)},
            {"vendor_name", d.vendor_name},
            {"device_name", d.device_name},
        });
    }
    j["warnings"] = json::array();
    for (const auto& w : r.warnings) j["warnings"].push_back(replace_all(w, root, "${ROOT}"));
    return j;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void check_fixture(const std::string& name) {
    const std::string root = kFixtures + "/" + name;
    const std::string expected_path = root + "/expected.json";
    ASSERT_TRUE(fs::is_directory(root)) << root;
    cpn::PciScanResult r = cpn::scan_pci(root, kPciIds);
    json got = result_to_json(r, root);
    if (const char* u = std::getenv("CPN_UPDATE_FIXTURES"); u != nullptr && std::string(u) == "1") {
        std::ofstream(expected_path) << got.dump(2) << "\n";
        GTEST_SKIP() << "rewrote " << expected_path;
    }
    json expected;
    try {
        expected = json::parse(slurp(expected_path));
    } catch (const std::exception& e) {
        FAIL() << expected_path << ": " << e.what();
    }
    EXPECT_EQ(got, expected) << "scan of " << root << ":\n"
                             << got.dump(2) << "\nexpected (" << expected_path << "):\n"
                             << expected.dump(2);
}

const cpn::PciDevice* find(const cpn::PciScanResult& r, const std::string& address) {
    for (const auto& d : r.devices)
        if (d.address == address) return &d;
    return nullptr;
}

bool any_warning(const cpn::PciScanResult& r, const std::string& a, const std::string& b) {
    for (const auto& w : r.warnings)
        if (w.find(a) != std::string::npos && w.find(b) != std::string::npos) return true;
    return false;
}

std::string attr_str(const cpn::Device& d, const std::string& key) {
    auto it = d.attributes.find(key);
    if (it == d.attributes.end()) return "<absent>";
    if (auto* s = std::get_if<std::string>(&it->second.value)) return *s;
    return "<not a string>";
}

}  // namespace

TEST(PciScan, GpuNoDriverMatchesExpected) { check_fixture("gpu-no-driver"); }
TEST(PciScan, NpuAccelMatchesExpected) { check_fixture("npu-accel"); }
TEST(PciScan, XilinxCardMatchesExpected) { check_fixture("xilinx-card"); }
TEST(PciScan, MalformedMatchesExpected) { check_fixture("malformed"); }

TEST(PciScan, FiltersConsoleVgaAndNics) {
    auto r = cpn::scan_pci(kFixtures + "/gpu-no-driver", "");
    ASSERT_EQ(r.devices.size(), 1u);
    EXPECT_EQ(r.devices[0].address, "0000:17:00.0");
    EXPECT_EQ(r.devices[0].device_class, cpn::DeviceClass::gpu);
    EXPECT_EQ(r.devices[0].driver, "");
    EXPECT_EQ(find(r, "0000:02:00.0"), nullptr) << "ASPEED BMC VGA must be filtered";
    EXPECT_EQ(find(r, "0000:31:00.0"), nullptr) << "ethernet NIC must be filtered";
    EXPECT_EQ(find(r, "0000:16:02.0"), nullptr) << "PCIe root port must be filtered";
    EXPECT_TRUE(r.warnings.empty());
}

TEST(PciScan, MalformedWarningsNameThePath) {
    const std::string root = kFixtures + "/malformed";
    auto r = cpn::scan_pci(root, "");
    for (const auto& w : r.warnings) EXPECT_EQ(w.rfind(root + "/", 0), 0u) << w;
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/0000:01:00.0/vendor", "garbage"));
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/0000:02:00.0/class", "missing"));
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/not-a-pci-address", "not a PCI address"));
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/0000:04:00.0/driver", "dangling"));
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/0000:04:00.0/numa_node", "zero"));
    EXPECT_TRUE(any_warning(r, root + "/bus/pci/devices/0000:05:00.0", "dangling"));
    EXPECT_TRUE(any_warning(r, root + "/class/accel/accel0/device", "dangling"));

    // The good GPU is complete; the others are skipped or partially filled.
    const auto* good = find(r, "0000:3b:00.0");
    ASSERT_NE(good, nullptr);
    EXPECT_EQ(good->driver, "nvidia");
    EXPECT_EQ(good->class_code, 0x030200u);
    EXPECT_EQ(find(r, "0000:01:00.0"), nullptr);
    const auto* no_class = find(r, "0000:02:00.0");
    ASSERT_NE(no_class, nullptr);
    EXPECT_EQ(no_class->class_code, 0u);
    EXPECT_EQ(no_class->device_class, cpn::DeviceClass::fpga);
    const auto* dangling = find(r, "0000:04:00.0");
    ASSERT_NE(dangling, nullptr);
    EXPECT_EQ(dangling->driver, "");
    EXPECT_EQ(dangling->numa_node, -1);
}

TEST(PciScan, AccelNodeMakesAnNpu) {
    auto r = cpn::scan_pci(kFixtures + "/npu-accel", kPciIds);
    const auto* npu = find(r, "0000:00:0b.0");
    ASSERT_NE(npu, nullptr);
    EXPECT_EQ(npu->accel_nodes, std::vector<std::string>{"accel0"});
    EXPECT_EQ(npu->device_class, cpn::DeviceClass::npu);
    EXPECT_EQ(npu->driver, "intel_vpu");
    EXPECT_EQ(npu->vendor_name, "Intel Corporation");
    EXPECT_EQ(npu->device_name, "");  // not in the fixture pci.ids

    cpn::Device d = cpn::device_from_pci(*npu);
    EXPECT_EQ(d.vendor, "Intel Corporation");
    EXPECT_EQ(d.model, "PCI device 8086:643e");
    EXPECT_EQ(attr_str(d, "accel.nodes"), "accel0");
    EXPECT_EQ(attr_str(d, "pci.driver"), "intel_vpu");
    EXPECT_EQ(attr_str(d, "pci.class"), "1200");
}

TEST(PciScan, XilinxPhysicalFunctionsAreFpgas) {
    auto r = cpn::scan_pci(kFixtures + "/xilinx-card", kPciIds);
    ASSERT_EQ(r.devices.size(), 2u);
    EXPECT_EQ(r.devices[0].driver, "xclmgmt");
    EXPECT_EQ(r.devices[1].driver, "xocl");
    for (const auto& d : r.devices) {
        EXPECT_EQ(d.device_class, cpn::DeviceClass::fpga) << d.address;
        EXPECT_EQ(d.class_code, 0x058000u);
        EXPECT_EQ(d.numa_node, 1);
    }
}

TEST(PciScan, NamesFallBackWithoutPciIds) {
    for (const std::string ids : {"", "/nonexistent/pci.ids"}) {
        auto r = cpn::scan_pci(kFixtures + "/gpu-no-driver", ids);
        ASSERT_EQ(r.devices.size(), 1u) << ids;
        EXPECT_TRUE(r.warnings.empty()) << ids << ": " << r.warnings.front();
        EXPECT_EQ(r.devices[0].vendor_name, "");
        EXPECT_EQ(r.devices[0].device_name, "");
        cpn::Device d = cpn::device_from_pci(r.devices[0]);
        EXPECT_EQ(d.vendor, "PCI vendor 0x10de");
        EXPECT_EQ(d.model, "PCI device 10de:2330");
    }
}

TEST(PciScan, DeviceFromPci) {
    auto r = cpn::scan_pci(kFixtures + "/gpu-no-driver", kPciIds);
    ASSERT_EQ(r.devices.size(), 1u);
    cpn::Device d = cpn::device_from_pci(r.devices[0]);
    EXPECT_EQ(d.device_class, cpn::DeviceClass::gpu);
    EXPECT_EQ(d.vendor, "NVIDIA Corporation");
    EXPECT_EQ(d.model, "GH100 [H100 SXM5 80GB]");
    EXPECT_EQ(d.pci_address, "0000:17:00.0");
    EXPECT_EQ(d.numa_node, 0);
    EXPECT_TRUE(d.runtimes.empty());
    EXPECT_TRUE(d.health.healthy);
    EXPECT_EQ(d.health.reason,
              "no runtime: no cpn-agent backend claimed this device; no kernel driver bound");
    EXPECT_EQ(attr_str(d, "pci.vendor_id"), "10de");
    EXPECT_EQ(attr_str(d, "pci.device_id"), "2330");
    EXPECT_EQ(attr_str(d, "pci.subsystem_vendor_id"), "10de");
    EXPECT_EQ(attr_str(d, "pci.subsystem_device_id"), "16c1");
    EXPECT_EQ(attr_str(d, "pci.class"), "0302");
    EXPECT_EQ(attr_str(d, "pci.driver"), "<absent>");
    EXPECT_EQ(attr_str(d, "accel.nodes"), "<absent>");
    EXPECT_FALSE(d.id.empty());
    EXPECT_EQ(d.id, cpn::make_device_id(d));

    auto m = cpn::scan_pci(kFixtures + "/malformed", kPciIds);
    const auto* good = find(m, "0000:3b:00.0");
    ASSERT_NE(good, nullptr);
    EXPECT_EQ(cpn::device_from_pci(*good).health.reason,
              "no runtime: no cpn-agent backend claimed this device; kernel driver: nvidia");
}

TEST(PciScan, SystemPciIdsGivesNames) {
    const std::string ids = "/usr/share/misc/pci.ids";
    if (!fs::exists(ids)) GTEST_SKIP() << ids << " not installed (Debian package pci.ids)";
    auto r = cpn::scan_pci(kFixtures + "/xilinx-card", ids);
    ASSERT_EQ(r.devices.size(), 2u);
    EXPECT_TRUE(r.warnings.empty());
    for (const auto& d : r.devices) {
        EXPECT_NE(d.vendor_name.find("Xilinx"), std::string::npos) << d.vendor_name;
        EXPECT_NE(d.device_name.find("U250"), std::string::npos) << d.device_name;
    }
}

TEST(PciScan, NonexistentRootIsEmpty) {
    auto r = cpn::scan_pci("/nonexistent/sysfs/root", kPciIds);
    EXPECT_TRUE(r.devices.empty());
    EXPECT_TRUE(r.warnings.empty());
    auto e = cpn::scan_pci("", "");
    EXPECT_TRUE(e.devices.empty());
}

TEST(PciScan, RealSysfsDoesNotCrash) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = cpn::scan_pci("/sys", "/usr/share/misc/pci.ids");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("real /sys: %zu compute-relevant PCI device(s), %zu warning(s), %.2f ms\n",
                r.devices.size(), r.warnings.size(), ms);
    for (const auto& d : r.devices) {
        std::printf("  %s %04x:%04x class %06x driver '%s' %s / %s\n", d.address.c_str(),
                    d.vendor_id, d.device_id, d.class_code, d.driver.c_str(),
                    d.vendor_name.c_str(), d.device_name.c_str());
        EXPECT_FALSE(d.address.empty());
        cpn::Device dev = cpn::device_from_pci(d);
        EXPECT_FALSE(dev.id.empty());
    }
    for (const auto& w : r.warnings) std::printf("  warning: %s\n", w.c_str());
    for (size_t i = 1; i < r.devices.size(); ++i)
        EXPECT_LT(r.devices[i - 1].address, r.devices[i].address);
}
