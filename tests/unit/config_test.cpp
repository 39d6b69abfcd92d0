#include "config/config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "test_support.hpp"

namespace cpn {
namespace {

TEST(Config, EmptyFileGivesDefaults) {
    Result<Config> c = parse_config("", "agent.yaml");
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->broker.uris, std::vector<std::string>{"tcp://127.0.0.1:1883"});
    EXPECT_EQ(c->discovery.probe_timeout_ms, 5000);
    EXPECT_EQ(c->state_dir, "/var/lib/cpn-agent");
    EXPECT_EQ(c->log.level, "info");
}

TEST(Config, FullFileIsRead) {
    Result<Config> c = parse_config(R"(
node:
  id: edge-17.bj
  site: beijing-haidian-3
broker:
  uris: [ "ssl://brain.example:8883", "tcp://10.0.0.2:1883" ]
  keepalive_s: 60
  protocol: "3.1.1"
plugins:
  dir: /opt/cpn/backends
  enable: [cpu, opencl]
  disable: [cuda]
discovery:
  probe_timeout_ms: 2500
state_dir: /srv/cpn
log:
  level: debug
)", "agent.yaml");
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->node.id, "edge-17.bj");
    EXPECT_EQ(c->node.site, "beijing-haidian-3");
    EXPECT_EQ(c->broker.uris.size(), 2u);
    EXPECT_EQ(c->broker.keepalive_s, 60);
    EXPECT_EQ(c->broker.protocol, "3.1.1");
    EXPECT_EQ(c->plugins.dir, "/opt/cpn/backends");
    EXPECT_EQ(c->plugins.enable, (std::vector<std::string>{"cpu", "opencl"}));
    EXPECT_EQ(c->plugins.disable, std::vector<std::string>{"cuda"});
    EXPECT_EQ(c->discovery.probe_timeout_ms, 2500);
    EXPECT_EQ(c->state_dir, "/srv/cpn");
    EXPECT_EQ(c->log.level, "debug");
}

struct BadCase {
    const char* name;
    const char* yaml;
    const char* message;  // the exact, complete error text
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class ConfigBadFile : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigBadFile, ExactMessage) {
    Result<Config> c = parse_config(GetParam().yaml, "agent.yaml");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), Code::invalid_argument);
    EXPECT_EQ(c.status().message(), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigBadFile,
    ::testing::Values(
        BadCase{"UnknownTopLevelKey", "nodes:\n  id: a\n",
                "agent.yaml:1:1: nodes: unknown key (did you mean 'node'?)"},
        BadCase{"UnknownNestedKey", "broker:\n  uri: tcp://a:1\n",
                "agent.yaml:2:3: broker.uri: unknown key (did you mean 'broker.uris'?)"},
        BadCase{"UnknownKeyNoHint", "plugins:\n  colour: blue\n",
                "agent.yaml:2:3: plugins.colour: unknown key"},
        BadCase{"IntegerWrongType", "discovery:\n  probe_timeout_ms: fast\n",
                "agent.yaml:2:21: discovery.probe_timeout_ms: expected an integer, got 'fast'"},
        BadCase{"IntegerOutOfRange", "discovery:\n  probe_timeout_ms: 0\n",
                "agent.yaml:2:21: discovery.probe_timeout_ms: must be between 100 and 600000, got 0"},
        BadCase{"IntegerWithUnit", "broker:\n  keepalive_s: 30s\n",
                "agent.yaml:2:16: broker.keepalive_s: expected an integer, got '30s'"},
        BadCase{"ListExpected", "broker:\n  uris: tcp://a:1883\n",
                "agent.yaml:2:9: broker.uris: expected a list of strings, got 'tcp://a:1883'"},
        BadCase{"EmptyBrokerList", "broker:\n  uris: []\n",
                "agent.yaml:2:9: broker.uris: must not be empty"},
        BadCase{"BadUri", "broker:\n  uris: [\"http://brain\"]\n",
                "agent.yaml:2:10: broker.uris[0]: 'http://brain' is not a broker URI (expected "
                "scheme://host[:port] with scheme tcp, ssl, mqtt, mqtts, ws or wss)"},
        BadCase{"BadNodeId", "node:\n  id: Edge/1\n",
                "agent.yaml:2:7: node.id: 'Edge/1' is not a valid node id (1-64 characters: "
                "lower-case letters, digits, '.', '_', '-'; it becomes part of MQTT topics)"},
        BadCase{"SiteWithWildcard", "node:\n  site: a/+\n",
                "agent.yaml:2:9: node.site: 'a/+' must not contain '/', '+' or '#' (it becomes "
                "part of MQTT topics)"},
        BadCase{"RelativeStateDir", "state_dir: var/lib\n",
                "agent.yaml:1:12: state_dir: 'var/lib' must be an absolute path"},
        BadCase{"BadLogLevel", "log:\n  level: verbose\n",
                "agent.yaml:2:10: log.level: 'verbose' is not a log level (expected trace, debug, "
                "info, warn, error or off)"},
        BadCase{"BadProtocol", "broker:\n  protocol: 4\n",
                "agent.yaml:2:13: broker.protocol: '4' is not an MQTT version (expected 5 or 3.1.1)"},
        BadCase{"MetricsListenHostNotAnAddress", "metrics:\n  prometheus:\n    listen: localhost:9464\n",
                "agent.yaml:3:13: metrics.prometheus.listen: 'localhost:9464': host 'localhost' is not an IPv4 "
                "address (the metrics server binds IPv4 addresses only and resolves no names; e.g. 127.0.0.1, or "
                "0.0.0.0 for every interface)"},
        BadCase{"MetricsListenIpv6", "metrics:\n  prometheus:\n    listen: \"[::1]:9464\"\n",
                "agent.yaml:3:13: metrics.prometheus.listen: '[::1]:9464': host '[::1]' is not an IPv4 address (the "
                "metrics server binds IPv4 addresses only and resolves no names; e.g. 127.0.0.1, or 0.0.0.0 for "
                "every interface)"},
        BadCase{"MetricsListenPortOutOfRange", "metrics:\n  prometheus:\n    listen: \"127.0.0.1:99999\"\n",
                "agent.yaml:3:13: metrics.prometheus.listen: '127.0.0.1:99999': port '99999' is not a number "
                "between 1 and 65535"},
        BadCase{"MetricsListenWithoutPort", "metrics:\n  prometheus:\n    listen: \"9464\"\n",
                "agent.yaml:3:13: metrics.prometheus.listen: '9464' is not a listen address (expected host:port, "
                "e.g. 127.0.0.1:9464)"},
        BadCase{"MetricsEnabledNotBool", "metrics:\n  prometheus:\n    enabled: yes\n",
                "agent.yaml:3:14: metrics.prometheus.enabled: expected true or false, got 'yes'"},
        BadCase{"SectionNotAMap", "plugins: all\n",
                "agent.yaml:1:10: plugins: expected a mapping (a section), got 'all'"},
        BadCase{"BackendNameInvalid", "plugins:\n  enable: [OpenCL]\n",
                "agent.yaml:2:12: plugins.enable[0]: 'OpenCL' is not a backend name (lower-case "
                "letters, digits, '_', '-')"},
        BadCase{"EnabledAndDisabled", "plugins:\n  enable: [cuda]\n  disable: [cuda]\n",
                "agent.yaml: plugins: backend 'cuda' is listed in both plugins.enable and "
                "plugins.disable"},
        BadCase{"DuplicateKey", "log:\n  level: info\n  level: debug\n",
                "agent.yaml:3:3: log.level: duplicate key (first set at line 2)"},
        BadCase{"TopLevelList", "- a\n- b\n",
                "agent.yaml:1:1: (top level): expected a mapping of sections, got a list"},
        BadCase{"SyntaxError", "node:\n  id: [a\n",
                "agent.yaml:3:1: YAML syntax error: end of sequence flow not found"},
        BadCase{"SeveralErrorsAllReported", "log:\n  level: loud\nstate_dir: x\n",
                "agent.yaml:2:10: log.level: 'loud' is not a log level (expected trace, debug, "
                "info, warn, error or off)\nagent.yaml:3:12: state_dir: 'x' must be an absolute path"}),
    [](const ::testing::TestParamInfo<BadCase>& i) { return std::string(i.param.name); });

TEST(Config, PrometheusMetricsKeys) {
    Result<Config> d = parse_config("", "agent.yaml");
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d->metrics.prometheus.enabled);
    EXPECT_EQ(d->metrics.prometheus.listen, "127.0.0.1:9464");
    for (const char* listen : {"0.0.0.0:1", "127.0.0.1:65535", "10.1.2.3:9100"}) {
        Result<Config> c = parse_config(std::string("metrics:\n  prometheus:\n    listen: \"") + listen + "\"\n",
                                        "agent.yaml");
        ASSERT_TRUE(c.ok()) << listen << ": " << c.status().message();
        EXPECT_EQ(c->metrics.prometheus.listen, listen);
    }
    // Enabling it needs a binary built with the exporter; otherwise it says so, where.
    Result<Config> on = parse_config("metrics:\n  prometheus:\n    enabled: true\n", "agent.yaml");
#if CPN_WITH_PROMETHEUS
    ASSERT_TRUE(on.ok()) << on.status().message();
    EXPECT_TRUE(on->metrics.prometheus.enabled);
#else
    ASSERT_FALSE(on.ok());
    EXPECT_EQ(on.status().message(),
              "agent.yaml:3:14: metrics.prometheus.enabled: this cpn-agent was built without Prometheus support "
              "(CPN_PROMETHEUS=OFF or prometheus-cpp-dev missing at build time); set it to false or rebuild");
#endif
}

TEST(Config, MissingExplicitFileIsAnError) {
    Result<Config> c = load_config("/nonexistent/agent.yaml", true);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().message(), "/nonexistent/agent.yaml: configuration file not found");
}

TEST(Config, MissingDefaultFileMeansDefaults) {
    Result<Config> c = load_config("/nonexistent/agent.yaml", false);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->source, "(built-in defaults)");
}

TEST(Config, BinaryGarbageIsAClearError) {
    test::TempDir dir;
    const char kJunk[] = "\x7f" "ELF\x02\x01\x01\x00\x00\xff\xfe: [";
    std::string junk(kJunk, sizeof kJunk - 1);  // the NULs inside, not past the literal
    dir.write("agent.yaml", junk);
    Result<Config> c = load_config(dir.file("agent.yaml"), true);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find(dir.file("agent.yaml") + ":"), std::string::npos)
        << c.status().message();
}

TEST(Config, DirectoryIsNotAConfigurationFile) {
    // Read as a stream, a directory looks empty: it must not pass for "every key at its default".
    test::TempDir dir;
    for (bool explicit_path : {true, false}) {
        Result<Config> c = load_config(dir.path(), explicit_path);
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.status().message(), dir.path() + ": not a regular file (a directory?); name the configuration file");
    }
}

TEST(Config, NodeIdDefaultsToHostName) {
    Config c;
    finalise_config(c);
    EXPECT_FALSE(c.node.id.empty());
    for (char ch : c.node.id) EXPECT_TRUE(std::islower(ch) || std::isdigit(ch) || ch == '-' || ch == '.' || ch == '_');
}

/* config/agent.yaml is the documented example: it must parse, hold every key the agent knows,
 * and state each key's default as the code has it. */
TEST(Config, ExampleFileHasEveryKeyWithItsDefault) {
    const std::string path = std::string(CPN_SOURCE_DIR) + "/config/agent.yaml";
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    Result<Config> c = parse_config(text, path);
    ASSERT_TRUE(c.ok()) << c.status().message();
    for (const ConfigKey& k : config_keys()) {
        std::string path_s = k.path;
        std::string leaf = path_s.substr(path_s.rfind('.') + 1);
        std::string line = leaf + ": " + k.default_yaml;
        EXPECT_NE(text.find(line), std::string::npos)
            << "config/agent.yaml lacks '" << line << "' for key " << k.path;
        EXPECT_NE(text.find(k.comment), std::string::npos)
            << "config/agent.yaml lacks the comment for " << k.path << ": " << k.comment;
    }
    // Its values are the defaults.
    Config d;
    EXPECT_EQ(c->broker.uris, d.broker.uris);
    EXPECT_EQ(c->discovery.probe_timeout_ms, d.discovery.probe_timeout_ms);
    EXPECT_EQ(c->state_dir, d.state_dir);
}

}  // namespace
}  // namespace cpn
