// conformance_test.cpp: every backend plugin that loads here runs the same workload through the
// core's own loader (PluginLibrary), on every device it reports, and must give the host's
// answer. A backend that cannot run here is skipped with its reason printed.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "plugin/plugin_library.hpp"

namespace cpn {
namespace {

std::vector<std::string> plugin_files() {
    std::vector<std::string> names;
    for (const std::string& p : list_plugin_files(CPN_PLUGIN_DIR))
        names.push_back(backend_name_from_file(std::filesystem::path(p).filename().string()));
    return names;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, SaxpyOnEveryDeviceMatchesTheHost) {
    const std::string path = std::string(CPN_PLUGIN_DIR) + "/libcpn-backend-" + GetParam() + ".so";
    PluginLoadError err;
    auto lib = PluginLibrary::open(path, err);
    if (!lib) GTEST_SKIP() << GetParam() << ": " << err.status << " at " << err.stage << ": " << err.reason;
    const cpn_backend& b = lib->backend();
    cpn_probe_info probe{};
    probe.struct_size = sizeof probe;
    cpn_msg msg{};
    ASSERT_EQ(b.probe(&probe, &msg), CPN_OK) << msg.text;
    if (!probe.usable) GTEST_SKIP() << GetParam() << " not usable here: " << probe.reason;
    uint32_t count = 0;
    ASSERT_EQ(b.device_count(&count, &msg), CPN_OK) << msg.text;
    ASSERT_GT(count, 0u) << "usable backend with no devices";
    ASSERT_NE(b.device_open, nullptr);

    const size_t n = 200003;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-10.f, 10.f);
    std::vector<float> x(n), y(n), want(n), got(n);
    for (size_t i = 0; i < n; ++i) {
        x[i] = dist(rng);
        y[i] = dist(rng);
        want[i] = 1.75f * x[i] + y[i];
    }
    int ran = 0;
    for (uint32_t i = 0; i < count; ++i) {
        cpn_device_handle* dev = nullptr;
        ASSERT_EQ(b.device_open(i, &dev, &msg), CPN_OK) << GetParam() << " device " << i << ": " << msg.text;
        cpn_workload w{sizeof(cpn_workload), "selftest.saxpy", "{\"a\": 1.75}", nullptr, 0};
        cpn_query_result q{};
        q.struct_size = sizeof q;
        ASSERT_EQ(b.query(dev, &w, &q, &msg), CPN_OK) << msg.text;
        if (!q.supported) {
            std::printf("[ SKIP     ] %s device %u: %s\n", GetParam().c_str(), i, q.reason);
            b.device_close(dev);
            continue;
        }
        cpn_prepared* prep = nullptr;
        ASSERT_EQ(b.prepare(dev, &w, &prep, &msg), CPN_OK) << msg.text;
        std::fill(got.begin(), got.end(), 0.f);
        cpn_buffer in[2] = {{"x", x.data(), n * 4}, {"y", y.data(), n * 4}};
        cpn_buffer out[1] = {{"y", got.data(), n * 4}};
        char result[256] = {0};
        cpn_run_io io{sizeof(cpn_run_io), in, 2, out, 1, result, sizeof result};
        volatile int32_t cancel = 0;
        cpn_run_control ctl{sizeof(cpn_run_control), &cancel, nullptr, nullptr, 0};
        ASSERT_EQ(b.run(prep, &io, &ctl, &msg), CPN_OK) << msg.text;
        size_t bad = 0;
        for (size_t k = 0; k < n; ++k) {
            float tol = 1e-6f * (std::fabs(1.75f * x[k]) + std::fabs(y[k])) + 1e-30f;
            if (!(std::fabs(got[k] - want[k]) <= tol)) ++bad;
        }
        EXPECT_EQ(bad, 0u) << GetParam() << " device " << i << " differs from the host";
        EXPECT_EQ(std::string(result).rfind("{", 0), 0u) << "metrics must be a JSON object: " << result;
        b.release(prep);
        b.device_close(dev);
        ++ran;
    }
    std::printf("[ INFO     ] %s: saxpy ran on %d of %u devices\n", GetParam().c_str(), ran, count);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(plugin_files()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Conformance);

}  // namespace
}  // namespace cpn
