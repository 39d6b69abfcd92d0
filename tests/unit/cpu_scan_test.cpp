#include "inventory/cpu_scan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <variant>

namespace cpn {
namespace {

bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

#if defined(__x86_64__)
/* The flags line of this machine's /proc/cpuinfo, as a set. */
std::set<std::string> this_machine_flags() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) == 0) {
            std::istringstream s(line.substr(line.find(':') + 1));
            std::set<std::string> out;
            std::string w;
            while (s >> w) out.insert(w);
            return out;
        }
    }
    return {};
}
#endif

TEST(CpuScan, ThisMachineCoresThreadsAndIsa) {
    HostScan hs = scan_host();
    ASSERT_TRUE(hs.cpu.cpu.has_value());
    const CpuDetails& c = *hs.cpu.cpu;
    EXPECT_EQ(hs.cpu.id, "cpu");
    EXPECT_EQ(c.threads, static_cast<int>(std::thread::hardware_concurrency()));
    EXPECT_GE(c.cores, 1);
    EXPECT_LE(c.cores, c.threads);
    EXPECT_GE(c.sockets, 1);
    EXPECT_GT(hs.node.memory_bytes, 0u);
    EXPECT_FALSE(hs.cpu.model.empty());
#if defined(__x86_64__)
    // Every feature we list is in the kernel's flags, and every compute feature the kernel lists
    // that we know about is in ours.
    std::set<std::string> flags = this_machine_flags();
    for (const std::string& f : c.isa) EXPECT_TRUE(flags.count(f)) << f;
    for (const char* f : {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "fma"})
        EXPECT_EQ(has(c.isa, f), flags.count(f) == 1) << f;
    // Whether this machine is a guest, as the kernel's flags say.
    auto hv = hs.cpu.attributes.find("cpu.hypervisor");
    ASSERT_NE(hv, hs.cpu.attributes.end());
    ASSERT_TRUE(std::holds_alternative<bool>(hv->second.value));
    EXPECT_EQ(std::get<bool>(hv->second.value), flags.count("hypervisor") == 1);
#endif
    EXPECT_TRUE(has(std::vector<std::string>{"fp32"}, to_string(hs.cpu.precisions[1])));
}

TEST(CpuScan, X86FeaturesAndPrecisions) {
    const std::string info =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC 9654 96-Core Processor\ncpu MHz\t\t: 2400.000\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 mmx\n";
    auto isa = parse_isa_features(info, "x86_64");
    EXPECT_EQ(isa, (std::vector<std::string>{"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f",
                                             "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}));
    auto p = cpu_precisions(isa);
    EXPECT_EQ(p, (std::vector<Precision>{Precision::fp64, Precision::fp32, Precision::bf16, Precision::int8}));
    CpuIdentity id = parse_cpu_identity(info, "x86_64");
    EXPECT_EQ(id.vendor, "AMD");
    EXPECT_EQ(id.model, "AMD EPYC 9654 96-Core Processor");
    EXPECT_EQ(id.family, 25);
    EXPECT_EQ(id.model_id, 17);
    EXPECT_DOUBLE_EQ(id.mhz, 2400.0);
    EXPECT_EQ(id.hypervisor, 0);
    // A guest: the kernel lists the CPUID "hypervisor" bit among the flags.
    EXPECT_EQ(parse_cpu_identity(info + "flags\t\t: fpu avx2 hypervisor lahf_lm\n", "x86_64").hypervisor, 0)
        << "only the first processor's flags count";
    std::string guest = info;
    guest.replace(guest.find("mmx\n"), 4, "mmx hypervisor\n");
    EXPECT_EQ(parse_cpu_identity(guest, "x86_64").hypervisor, 1);
}

TEST(CpuScan, ArmNeonSveDotprod) {
    // As a Kunpeng 920 / Neoverse N2 prints it.
    const std::string info =
        "processor\t: 0\nBogoMIPS\t: 200.00\n"
        "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
        "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm sve2 i8mm bf16\n"
        "CPU implementer\t: 0x48\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd01\n";
    auto isa = parse_isa_features(info, "aarch64");
    EXPECT_EQ(isa, (std::vector<std::string>{"neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2"}));
    auto p = cpu_precisions(isa);
    EXPECT_EQ(p, (std::vector<Precision>{Precision::fp64, Precision::fp32, Precision::fp16,
                                         Precision::bf16, Precision::int8}));
    EXPECT_EQ(parse_cpu_identity(info, "aarch64").vendor, "HiSilicon");
    EXPECT_EQ(parse_cpu_identity(info, "aarch64").hypervisor, -1) << "cpuinfo cannot tell on ARM";
    EXPECT_EQ(parse_cpu_identity(info, "aarch64").model_id, 0xd01) << "the CPU part";
    EXPECT_EQ(parse_cpu_identity(info, "aarch64").family, -1);
}

TEST(CpuScan, RiscvVectorExtension) {
    const std::string info =
        "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdcv_zicbom_zicsr_zifencei_zihpm_zvfh\n"
        "mmu\t\t: sv39\nuarch\t\t: thead,c908\n";
    auto isa = parse_isa_features(info, "riscv64");
    EXPECT_EQ(isa, (std::vector<std::string>{"f", "d", "rvv", "zvfh"}));
    EXPECT_TRUE(has({"x"}, "x"));
    auto p = cpu_precisions(isa);
    EXPECT_EQ(p, (std::vector<Precision>{Precision::fp64, Precision::fp32, Precision::fp16}));
    EXPECT_EQ(parse_cpu_identity(info, "riscv64").vendor, "thead");
}

TEST(CpuScan, GarbageCpuinfoGivesNothingNotACrash) {
    EXPECT_TRUE(parse_isa_features("\x01\x02 : : flags\n:::", "x86_64").empty());
    EXPECT_TRUE(parse_isa_features("isa : rv", "riscv64").empty());
    CpuIdentity id = parse_cpu_identity("cpu family : many\nmodel : x\ncpu MHz : fast\n", "x86_64");
    EXPECT_EQ(id.family, -1);
    EXPECT_EQ(id.mhz, 0);
}

}  // namespace
}  // namespace cpn
