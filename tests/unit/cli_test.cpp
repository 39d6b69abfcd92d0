// cli_test.cpp: the `cpn-agent` binary as an operator meets it: help, exit codes, the three
// output forms, and clear errors for bad flags and bad configuration files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "test_support.hpp"

namespace cpn {
namespace {

std::string agent() { return std::string(CPN_AGENT_BIN); }
std::string plugins() { return std::string(" --plugin-dir ") + CPN_PLUGIN_DIR; }

TEST(Cli, HelpOnEveryCommand) {
    auto r = test::run_command(agent() + " --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("discover"), std::string::npos);
    EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
    EXPECT_EQ(r.out.find("probe-plugin"), std::string::npos) << "internal command is hidden";
    r = test::run_command(agent() + " discover --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("--json"), std::string::npos);
    EXPECT_NE(r.out.find("--yaml"), std::string::npos);
}

TEST(Cli, VersionNamesAbiAndBackends) {
    auto r = test::run_command(agent() + " --version");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("plugin ABI 1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("backends built: cpu"), std::string::npos) << r.out;
    // The revision is the checkout's as built, not as it was when CMake configured.
    auto head = test::run_command("git -C '" CPN_SOURCE_DIR "' rev-parse --short=12 HEAD 2>/dev/null");
    if (head.exit_code == 0 && head.out.size() > 12) {
        EXPECT_NE(r.out.find("(git " + head.out.substr(0, 12)), std::string::npos) << r.out << " HEAD " << head.out;
    } else {
        EXPECT_NE(r.out.find("(git "), std::string::npos) << r.out;  // "unknown" or CPN_GIT_REVISION
    }
}

TEST(Cli, UnknownFlagIsUsageError) {
    auto r = test::run_command(agent() + " discover --jsn 2>&1");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.out.find("--jsn"), std::string::npos) << r.out;
}

TEST(Cli, JsonAndYamlTogetherIsUsageError) {
    auto r = test::run_command(agent() + " discover --json --yaml 2>&1");
    EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, BadConfigFileExitsThreeWithFileLineColumn) {
    test::TempDir dir;
    dir.write("agent.yaml", "log:\n  level: chatty\n");
    auto r = test::run_command(agent() + " --config " + dir.file("agent.yaml") + " discover 2>&1");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_NE(r.out.find(dir.file("agent.yaml") + ":2:10: log.level: 'chatty' is not a log level"),
              std::string::npos) << r.out;
}

TEST(Cli, MissingExplicitConfigExitsThree) {
    auto r = test::run_command(agent() + " --config /nonexistent/agent.yaml discover 2>&1");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_NE(r.out.find("/nonexistent/agent.yaml: configuration file not found"), std::string::npos);
}

TEST(Cli, DiscoverTableJsonYaml) {
    auto t = test::run_command(agent() + " discover" + plugins());
    ASSERT_EQ(t.exit_code, 0);
    EXPECT_NE(t.out.find("DEVICE"), std::string::npos);
    EXPECT_NE(t.out.find("PLUGIN"), std::string::npos);

    auto j = test::run_command(agent() + " discover --json" + plugins());
    ASSERT_EQ(j.exit_code, 0);
    nlohmann::json doc = nlohmann::json::parse(j.out);
    EXPECT_EQ(doc["schema_version"], 1);
    EXPECT_EQ(doc["devices"][0]["class"], "cpu");

    auto y = test::run_command(agent() + " discover --yaml" + plugins());
    ASSERT_EQ(y.exit_code, 0);
    YAML::Node n = YAML::Load(y.out);
    EXPECT_EQ(n["schema_version"].as<int>(), 1);
    EXPECT_EQ(n["devices"][0]["class"].as<std::string>(), "cpu");
    EXPECT_EQ(n["devices"].size(), doc["devices"].size());
}

TEST(Cli, DiscoverToUnwritableFileExitsOne) {
    auto r = test::run_command(agent() + " discover --json -o /nonexistent-dir/out.json" + plugins() + " 2>&1");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("cannot write /nonexistent-dir/out.json"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cpn

namespace cpn {
namespace {

/* The core links no vendor runtime: vendor code is reached only through dlopen'ed plugins. */
TEST(Cli, CoreBinaryLinksNoVendorRuntime) {
    auto r = test::run_command("ldd " + agent());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    for (const char* lib : {"libcuda", "libcudart", "libOpenCL", "libze_loader", "libxrt", "libnvidia"})
        EXPECT_EQ(r.out.find(lib), std::string::npos) << "cpn-agent links " << lib << ":\n" << r.out;
    // Nor OpenBLAS: its constructor would start threads before main() blocks the daemon's
    // signals (SIGTERM then kills instead of stopping cleanly); it is opened on first use.
    EXPECT_EQ(r.out.find("libopenblas"), std::string::npos) << "cpn-agent links OpenBLAS:\n" << r.out;
    // Nor oneDNN and its OpenMP runtime (workloads/infer/onednn.cpp), for the same reason.
    for (const char* lib : {"libdnnl", "libgomp"})
        EXPECT_EQ(r.out.find(lib), std::string::npos) << "cpn-agent links " << lib << ":\n" << r.out;
}

}  // namespace
}  // namespace cpn
