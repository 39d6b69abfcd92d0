#include "inventory/merge.hpp"

#include <gtest/gtest.h>

namespace cpn {
namespace {

Device gpu_via(const std::string& backend, const std::string& pci, const std::string& uuid,
               const std::string& model) {
    Device d;
    d.device_class = DeviceClass::gpu;
    d.vendor = "NVIDIA";
    d.model = model;
    d.pci_address = pci;
    d.uuid = uuid;
    d.memory_bytes = 80ull << 30;
    d.compute_units = 132;
    d.precisions = {Precision::fp32, Precision::fp16};
    RuntimePath r;
    r.backend = backend;
    r.native_name = model;
    d.runtimes.push_back(r);
    d.id = make_device_id(d);
    return d;
}

Device host_cpu() {
    Device d;
    d.device_class = DeviceClass::cpu;
    d.model = "Intel(R) Xeon(R)";
    d.cpu = CpuDetails{};
    d.compute_units = 2;
    d.id = make_device_id(d);
    return d;
}

TEST(Merge, SameGpuThroughCudaAndOpenclIsOneDevice) {
    std::vector<Device> devs{host_cpu()};
    merge_devices(devs, {gpu_via("cuda", "0000:3b:00.0", "aa-bb", "NVIDIA H100 80GB HBM3"),
                         gpu_via("opencl", "0000:3b:00.0", "", "NVIDIA H100 80GB HBM3")});
    ASSERT_EQ(devs.size(), 2u);
    EXPECT_EQ(devs[1].id, "pci-0000:3b:00.0");
    ASSERT_EQ(devs[1].runtimes.size(), 2u);
    EXPECT_EQ(devs[1].runtimes[0].backend, "cuda");
    EXPECT_EQ(devs[1].runtimes[1].backend, "opencl");
    EXPECT_EQ(devs[1].uuid, "aa-bb");
}

TEST(Merge, MatchByUuidWhenOnlyOneSideKnowsTheBus) {
    std::vector<Device> devs;
    merge_devices(devs, {gpu_via("levelzero", "", "0123-4567", "Intel Arc"),
                         gpu_via("opencl", "", "0123-4567", "Intel Arc")});
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0].id, "uuid-0123-4567");
    EXPECT_EQ(devs[0].runtimes.size(), 2u);
}

TEST(Merge, BusOnlyDeviceIsClaimedByItsRuntime) {
    Device bus;
    bus.device_class = DeviceClass::gpu;
    bus.pci_address = "0000:3b:00.0";
    bus.vendor = "NVIDIA Corporation";
    bus.model = "GH100 [H100 SXM5 80GB]";
    bus.health = {true, "no runtime: no cpn-agent backend claimed this device"};
    bus.attributes["pci.device_id"] = {std::string("2330"), ""};
    bus.id = make_device_id(bus);
    std::vector<Device> devs{host_cpu(), bus};
    merge_devices(devs, {gpu_via("cuda", "0000:3b:00.0", "", "NVIDIA H100 80GB HBM3")});
    ASSERT_EQ(devs.size(), 2u);
    EXPECT_EQ(devs[1].model, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(devs[1].memory_bytes, 80ull << 30);
    EXPECT_TRUE(devs[1].health.healthy);
    EXPECT_TRUE(devs[1].health.reason.empty());
    EXPECT_EQ(devs[1].attributes.count("pci.device_id"), 1u);
}

TEST(Merge, OpenclCpuDeviceIsTheHostCpu) {
    Device pocl;
    pocl.device_class = DeviceClass::cpu;
    pocl.model = "cpu-sapphirerapids-Intel(R) Xeon(R) Processor";
    pocl.compute_units = 2;
    RuntimePath r;
    r.backend = "opencl";
    pocl.runtimes.push_back(r);
    pocl.id = make_device_id(pocl);
    std::vector<Device> devs{host_cpu()};
    merge_devices(devs, {pocl});
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_EQ(devs[0].id, "cpu");
    EXPECT_EQ(devs[0].model, "Intel(R) Xeon(R)");  // the host's own name wins for the CPU
    ASSERT_EQ(devs[0].runtimes.size(), 1u);
    EXPECT_EQ(devs[0].runtimes[0].backend, "opencl");
}

TEST(Merge, UnhealthyRuntimeMarksTheDeviceAndSaysWhy) {
    std::vector<Device> devs;
    Device a = gpu_via("cuda", "0000:3b:00.0", "", "H100");
    Device b = gpu_via("opencl", "0000:3b:00.0", "", "H100");
    b.health = {false, "CL_OUT_OF_RESOURCES on context creation"};
    merge_devices(devs, {a, b});
    ASSERT_EQ(devs.size(), 1u);
    EXPECT_FALSE(devs[0].health.healthy);
    EXPECT_EQ(devs[0].health.reason, "opencl: CL_OUT_OF_RESOURCES on context creation");
}

TEST(Merge, IdsAreUniqueLowerCaseAndStable) {
    Device x;
    x.device_class = DeviceClass::npu;
    x.model = "Same";
    RuntimePath r;
    r.backend = "opencl";
    x.runtimes.push_back(r);
    std::vector<Device> devs;
    merge_devices(devs, {x, x});
    ASSERT_EQ(devs.size(), 2u);
    EXPECT_NE(devs[0].id, devs[1].id);
    EXPECT_EQ(devs[1].id, devs[0].id + "-2");
    std::vector<Device> again;
    merge_devices(again, {x, x});
    EXPECT_EQ(again[0].id, devs[0].id);  // same input, same id: no randomness, no addresses
    for (char ch : devs[0].id) EXPECT_FALSE(std::isupper(static_cast<unsigned char>(ch)));
    Device up = gpu_via("cuda", "0000:3B:00.0", "", "H");
    EXPECT_EQ(make_device_id(up), "pci-0000:3b:00.0");
}

}  // namespace
}  // namespace cpn
