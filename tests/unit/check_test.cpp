// check_test.cpp: the checks behind `cpn-agent check` (cli/doctor.hpp) on their own: findings and
// their two forms, certificates and keys made here with OpenSSL (expired, expiring, not yet
// valid, a leaf where a CA belongs, a key of another certificate, an encrypted key), the state
// directory, the configuration's blocked sections, the plugin remedies (also from real probes of
// the test plugins) and the time box.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli/doctor.hpp"
#include "test_support.hpp"

namespace cpn {
namespace {

using doctor::Finding;
using doctor::Level;

constexpr std::time_t kNow = 1'750'000'000;  // a fixed "now": 2025-06-15

// --- a small PKI in memory ----------------------------------------------------------------------

struct Key {
    EVP_PKEY* k = nullptr;
    Key() : k(EVP_EC_gen("P-256")) {}
    ~Key() { EVP_PKEY_free(k); }
    Key(const Key&) = delete;
    Key& operator=(const Key&) = delete;
};

/* A certificate for `cn` with `key`, valid from now+from_days to now+to_days, issued by
 * `issuer_cn` with `issuer_key` (self-signed when they are the subject's). */
std::string make_cert(const std::string& cn, const Key& key, const std::string& issuer_cn, const Key& issuer_key,
                      long from_days, long to_days, bool ca) {
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(std::hash<std::string>{}(cn) & 0x7fffffff));
    std::time_t now = kNow;
    X509_time_adj_ex(X509_getm_notBefore(x), static_cast<int>(from_days), 0, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), static_cast<int>(to_days), 0, &now);
    X509_set_pubkey(x, key.k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_NAME* issuer = X509_NAME_new();
    X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(issuer_cn.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(x, issuer);
    X509_NAME_free(issuer);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* ext =
        X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, issuer_key.k, EVP_sha256());
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(b);
    X509_free(x);
    return pem;
}

std::string key_pem(const Key& key, const char* passphrase = nullptr) {
    BIO* b = BIO_new(BIO_s_mem());
    if (passphrase != nullptr)
        PEM_write_bio_PrivateKey(b, key.k, EVP_aes_256_cbc(),
                                 reinterpret_cast<unsigned char*>(const_cast<char*>(passphrase)),
                                 static_cast<int>(std::strlen(passphrase)), nullptr, nullptr);
    else
        PEM_write_bio_PrivateKey(b, key.k, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(b);
    return pem;
}

std::string all_messages(const std::vector<Finding>& f) {
    std::string s;
    for (const Finding& x : f) s += std::string(doctor::level_name(x.level)) + " " + x.subject + ": " + x.message + " | " + x.fix + "\n";
    return s;
}

const Finding* by_subject(const std::vector<Finding>& f, const std::string& prefix) {
    for (const Finding& x : f)
        if (x.subject.rfind(prefix, 0) == 0) return &x;
    return nullptr;
}

// --- findings ----------------------------------------------------------------------------------

TEST(Check, TextHasOneLinePerFindingAndAFixUnderProblems) {
    std::vector<Finding> f = {{"configuration", "/etc/a.yaml", Level::ok, "loaded and valid", ""},
                              {"state_dir", "/var/lib/x", Level::warn, "open to every user (mode 0755)", "chmod 750 /var/lib/x"},
                              {"broker", "tcp://b:1883", Level::fail, "cannot connect: connection refused", "start it"}};
    EXPECT_EQ(doctor::render_text(f),
              "[ OK ] configuration /etc/a.yaml: loaded and valid\n"
              "[WARN] state_dir /var/lib/x: open to every user (mode 0755)\n"
              "       fix: chmod 750 /var/lib/x\n"
              "[FAIL] broker tcp://b:1883: cannot connect: connection refused\n"
              "       fix: start it\n"
              "1 ok, 1 warning, 1 failure\n");
}

TEST(Check, JsonKeepsFieldOrderAndNullFixForOk) {
    std::vector<Finding> f = {{"misc", "/usr/share/misc/pci.ids", Level::ok, "present", ""},
                              {"misc", "/x", Level::warn, "missing", "apt install pci.ids"}};
    const std::string s = doctor::to_json(f).dump();
    EXPECT_EQ(s, R"([{"check":"misc","subject":"/usr/share/misc/pci.ids","status":"ok","message":"present","fix":null},)"
                 R"({"check":"misc","subject":"/x","status":"warn","message":"missing","fix":"apt install pci.ids"}])");
}

TEST(Check, PciIds) {
    test::TempDir d;
    EXPECT_EQ(doctor::check_pci_ids(d.file("pci.ids")).level, Level::warn);
    EXPECT_EQ(doctor::check_pci_ids(d.file("pci.ids")).fix, "apt install pci.ids");
    d.write("pci.ids", "8086  Intel Corporation\n");
    EXPECT_EQ(doctor::check_pci_ids(d.file("pci.ids")).level, Level::ok);
}

// --- configuration -----------------------------------------------------------------------------

TEST(Check, InvalidConfigurationBlocksOnlyTheChecksThatReadTheBrokenSections) {
    test::TempDir d;
    d.write("a.yaml", "broker:\n  keepalive_s: 1\nstate_dir: /tmp/x\n");
    doctor::ConfigOutcome c = doctor::check_configuration(d.file("a.yaml"), true);
    ASSERT_TRUE(c.invalid());
    ASSERT_EQ(c.findings.size(), 1u);
    EXPECT_EQ(c.findings[0].level, Level::fail);
    EXPECT_NE(c.findings[0].message.find(d.file("a.yaml") + ":2:16: broker.keepalive_s"), std::string::npos)
        << c.findings[0].message;
    EXPECT_EQ(c.config.state_dir, "/tmp/x");  // the valid keys are kept
    EXPECT_NE(doctor::blocked_by(c, {"broker", "node"}).find("broker"), std::string::npos);
    EXPECT_EQ(doctor::blocked_by(c, {"state_dir"}), "");

    d.write("b.yaml", "broker: [\n");
    c = doctor::check_configuration(d.file("b.yaml"), true);
    ASSERT_TRUE(c.invalid());
    EXPECT_NE(doctor::blocked_by(c, {"state_dir"}), "") << "a syntax error leaves nothing to check";

    c = doctor::check_configuration(d.file("none.yaml"), true);
    ASSERT_TRUE(c.invalid());
    EXPECT_NE(c.findings.at(0).message.find("not found"), std::string::npos);

    c = doctor::check_configuration(d.file("none.yaml"), false);
    EXPECT_FALSE(c.invalid());
    EXPECT_EQ(c.findings.at(0).level, Level::warn) << "built-in defaults are worth a warning";
    EXPECT_FALSE(c.config.node.id.empty()) << "finalised";
}

TEST(Check, ConfigurationThatIsADirectorySaysWhichFileToName) {
    test::TempDir d;
    doctor::ConfigOutcome c = doctor::check_configuration(d.path(), true);
    ASSERT_TRUE(c.invalid());
    EXPECT_EQ(c.findings.at(0).level, Level::fail);
    EXPECT_NE(c.findings[0].message.find("not a regular file"), std::string::npos) << c.findings[0].message;
    EXPECT_NE(c.findings[0].fix.find(d.path() + "/agent.yaml"), std::string::npos) << c.findings[0].fix;
}

// --- state directory ---------------------------------------------------------------------------

TEST(Check, StateDirModesAndMissing) {
    test::TempDir d;
    Config c;
    c.state_dir = d.path() + "/state";
    auto f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u) << all_messages(f);
    EXPECT_EQ(f[0].level, Level::ok);
    EXPECT_NE(f[0].message.find("does not exist yet"), std::string::npos);

    ASSERT_EQ(::mkdir(c.state_dir.c_str(), 0750), 0);
    ::chmod(c.state_dir.c_str(), 0750);
    f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u) << all_messages(f);
    EXPECT_EQ(f[0].level, Level::ok) << all_messages(f);
    EXPECT_NE(f[0].message.find("mode 0750"), std::string::npos);

    ::chmod(c.state_dir.c_str(), 0757);
    f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u) << all_messages(f);
    EXPECT_EQ(f[0].level, Level::fail);
    EXPECT_EQ(f[0].fix, "chmod 750 " + c.state_dir);

    ::chmod(c.state_dir.c_str(), 0755);
    f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u) << all_messages(f);
    EXPECT_EQ(f[0].level, Level::warn);

    c.state_dir = d.path() + "/file";
    d.write("file", "");
    f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail);
    EXPECT_NE(f[0].message.find("not a directory"), std::string::npos);

    // Low space: a store cap larger than any disk here.
    ::chmod((d.path() + "/state").c_str(), 0750);
    c.state_dir = d.path() + "/state";
    c.store.max_bytes = 1ll << 60;
    f = doctor::check_state_dir(c);
    ASSERT_EQ(f.size(), 1u) << all_messages(f);
    EXPECT_EQ(f[0].level, Level::warn);
    EXPECT_NE(f[0].message.find("free on its file system"), std::string::npos);
}

// --- certificates and keys ---------------------------------------------------------------------

TEST(Check, CertificateValidity) {
    test::TempDir d;
    Key ca, leaf;
    d.write("ok.pem", make_cert("client", leaf, "ca", ca, -10, 365, false));
    d.write("soon.pem", make_cert("client", leaf, "ca", ca, -10, 5, false));
    d.write("expired.pem", make_cert("client", leaf, "ca", ca, -100, -1, false));
    d.write("future.pem", make_cert("client", leaf, "ca", ca, 3, 365, false));
    d.write("junk.pem", "not a certificate\n");

    auto one = [&](const std::string& name) {
        auto f = doctor::check_certificate_file(d.file(name), "broker.tls.cert_file", false, kNow, 30);
        EXPECT_EQ(f.size(), 1u) << all_messages(f);
        return f.at(0);
    };
    EXPECT_EQ(one("ok.pem").level, Level::ok);
    EXPECT_NE(one("ok.pem").message.find("/CN=client, valid until 2026-"), std::string::npos) << one("ok.pem").message;
    EXPECT_EQ(one("soon.pem").level, Level::warn);
    EXPECT_NE(one("soon.pem").message.find("(in 5 days)"), std::string::npos) << one("soon.pem").message;
    EXPECT_EQ(one("expired.pem").level, Level::fail);
    EXPECT_NE(one("expired.pem").message.find("expired on"), std::string::npos);
    EXPECT_EQ(one("future.pem").level, Level::fail);
    EXPECT_NE(one("future.pem").message.find("clock"), std::string::npos);
    EXPECT_EQ(one("junk.pem").level, Level::fail);
    EXPECT_NE(one("junk.pem").message.find("no PEM certificate"), std::string::npos);
    EXPECT_EQ(one("missing.pem").level, Level::fail);
    EXPECT_NE(one("missing.pem").message.find("no such file"), std::string::npos);
}

TEST(Check, CaBundle) {
    test::TempDir d;
    Key ca, old_ca, leaf;
    const std::string good = make_cert("ca", ca, "ca", ca, -10, 3650, true);
    const std::string expired = make_cert("old-ca", old_ca, "old-ca", old_ca, -900, -30, true);
    d.write("one.pem", good);
    d.write("mixed.pem", good + expired);
    d.write("dead.pem", expired);
    d.write("leaf.pem", make_cert("broker", leaf, "ca", ca, -10, 365, false));
    auto run = [&](const std::string& name) {
        return doctor::check_certificate_file(d.file(name), "broker.tls.ca_file", true, kNow, 30);
    };
    auto f = run("one.pem");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::ok) << all_messages(f);
    f = run("mixed.pem");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::warn) << "an expired CA among valid ones: " << all_messages(f);
    EXPECT_NE(f[0].message.find("1 of 2 certificates"), std::string::npos) << f[0].message;
    f = run("dead.pem");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail);
    f = run("leaf.pem");
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail) << "the broker's certificate where its CA belongs";
    EXPECT_NE(f[0].message.find("not a CA"), std::string::npos) << f[0].message;
}

TEST(Check, SecretsKeyPermissionsMatchAndEncryption) {
    test::TempDir d;
    Key ca, client, other;
    d.write("ca.pem", make_cert("ca", ca, "ca", ca, -10, 3650, true));
    d.write("client.pem", make_cert("client", client, "ca", ca, -10, 365, false));
    d.write("client.key", key_pem(client));
    d.write("other.key", key_pem(other));
    d.write("enc.key", key_pem(client, "passphrase"));
    d.write("pw", "secret\n");
    for (const char* f : {"client.key", "other.key", "enc.key", "pw"}) ::chmod(d.file(f).c_str(), 0600);

    Config c;
    c.broker.uris = {"ssl://broker.example:8883"};
    c.broker.username = "node";
    c.broker.password_file = d.file("pw");
    c.broker.tls.ca_file = d.file("ca.pem");
    c.broker.tls.cert_file = d.file("client.pem");
    c.broker.tls.key_file = d.file("client.key");
    doctor::Credentials cr;
    auto f = doctor::check_secrets(c, cr, kNow);
    for (const Finding& x : f) EXPECT_EQ(x.level, Level::ok) << all_messages(f);
    EXPECT_EQ(cr.password, "secret");
    EXPECT_EQ(cr.unusable(true), "");
    EXPECT_NE(all_messages(f).find("matches the client certificate"), std::string::npos);

    c.broker.tls.key_file = d.file("other.key");
    cr = {};
    f = doctor::check_secrets(c, cr, kNow);
    EXPECT_NE(all_messages(f).find("fail broker.tls.key_file " + d.file("other.key") + ": does not belong"),
              std::string::npos)
        << all_messages(f);

    c.broker.tls.key_file = d.file("enc.key");
    f = doctor::check_secrets(c, cr, kNow);
    EXPECT_NE(all_messages(f).find("encrypted with a passphrase"), std::string::npos) << all_messages(f);

    ::chmod(d.file("client.key").c_str(), 0644);
    ::chmod(d.file("pw").c_str(), 0640);
    c.broker.tls.key_file = d.file("client.key");
    cr = {};
    f = doctor::check_secrets(c, cr, kNow);
    const Finding* k = by_subject(f, "broker.tls.key_file");
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(k->level, Level::fail);
    EXPECT_EQ(k->fix, "chmod 600 " + d.file("client.key"));
    const Finding* p = by_subject(f, "broker.password_file");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->fix, "chmod 600 " + d.file("pw"));
    EXPECT_NE(cr.unusable(false), "") << "the agent would refuse them, so the broker check must not use them";
    EXPECT_NE(cr.unusable(true).find("broker.tls.key_file"), std::string::npos) << cr.unusable(true);
    EXPECT_EQ(cr.password, "");

    // TLS files with no TLS URI, and verification off.
    c.broker.uris = {"tcp://broker.example:1883"};
    f = doctor::check_secrets(c, cr, kNow);
    EXPECT_NE(all_messages(f).find("no broker URI uses TLS"), std::string::npos);
    c.broker.uris = {"mqtts://broker.example"};
    c.broker.tls.verify = false;
    f = doctor::check_secrets(c, cr, kNow);
    EXPECT_NE(all_messages(f).find("warn broker.tls.verify"), std::string::npos) << all_messages(f);
}

// --- brokers -----------------------------------------------------------------------------------

TEST(Check, BrokerUris) {
    auto a = doctor::parse_broker_uri("ssl://broker.example");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "broker.example");
    EXPECT_EQ(a->port, 8883);
    EXPECT_TRUE(a->tls);
    EXPECT_EQ(doctor::parse_broker_uri("tcp://10.0.0.1")->port, 1883);
    EXPECT_EQ(doctor::parse_broker_uri("mqtt://h:1999")->port, 1999);
    EXPECT_EQ(doctor::parse_broker_uri("wss://h")->port, 443);
    EXPECT_EQ(doctor::parse_broker_uri("ws://h/")->port, 80);
    EXPECT_FALSE(doctor::parse_broker_uri("http://h"));
    EXPECT_FALSE(doctor::parse_broker_uri("tcp://h:99999"));
    Config c;
    c.node.id = "edge-7";
    EXPECT_EQ(doctor::check_client_id(c, 4242), "edge-7-check-4242");
}

TEST(Check, BrokerRefusedIsReportedWithoutMqtt) {
    // A port nothing listens on (bound, never listening): refused at TCP, before any MQTT.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    Config c;
    c.node.id = "n1";
    c.broker.connect_timeout_s = 2;
    c.broker.uris = {"tcp://127.0.0.1:" + std::to_string(ntohs(sa.sin_port))};
    auto f = doctor::check_brokers(c, {}, "n1-check-1");
    ::close(fd);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail);
    EXPECT_NE(f[0].message.find("connection refused"), std::string::npos) << f[0].message;
    EXPECT_NE(f[0].fix.find("start the broker"), std::string::npos) << f[0].fix;
}

// --- plugins -----------------------------------------------------------------------------------

PluginReport report(const std::string& name, const std::string& status, const std::string& stage,
                    const std::string& reason) {
    PluginReport r;
    r.name = name;
    r.path = "/usr/lib/x86_64-linux-gnu/cpn-agent/backends/libcpn-backend-" + name + ".so";
    r.status = status;
    r.stage = stage;
    r.reason = reason;
    return r;
}

TEST(Check, PluginRemedies) {
    auto fix = [](const PluginReport& r) { return doctor::plugin_fix(r); };
    EXPECT_NE(fix(report("opencl", "skipped", "dlopen",
                         "runtime library missing: libOpenCL.so.1: cannot open shared object file: No such file or "
                         "directory"))
                  .find("apt install ocl-icd-libopencl1"),
              std::string::npos);
    EXPECT_NE(fix(report("cuda", "skipped", "probe", "libcuda.so.1: cannot open shared object file")).find("libcuda1"),
              std::string::npos);
    EXPECT_NE(fix(report("levelzero", "skipped", "dlopen",
                         "runtime library missing: libze_loader.so.1: cannot open shared object file"))
                  .find("libze1"),
              std::string::npos);
    EXPECT_NE(fix(report("x", "skipped", "dlopen", "runtime library missing: libfoo.so.3: cannot open shared object file"))
                  .find("apt-file search libfoo.so.3"),
              std::string::npos);
    const std::string abi = fix(report("xrt", "refused", "abi", "plugin ABI version 9 does not match"));
    EXPECT_NE(abi.find("apt install --reinstall cpn-agent cpn-agent-backend-fpga"), std::string::npos) << abi;
    EXPECT_NE(fix(report("opencl", "timeout", "probe", "probe process timed out after 5000 ms"))
                  .find("discovery.probe_timeout_ms"),
              std::string::npos);
    EXPECT_NE(fix(report("opencl", "failed", "probe", "probe process killed by signal 11 (Segmentation fault)"))
                  .find("crashed"),
              std::string::npos);
    EXPECT_NE(fix(report("junk", "failed", "dlopen", "/x/libcpn-backend-junk.so: invalid ELF header")).find("reinstall"),
              std::string::npos);
    EXPECT_NE(fix(report("junk", "failed", "symbol", "not a cpn-agent backend: missing symbol")).find("remove it"),
              std::string::npos);
    EXPECT_NE(fix(report("npu", "failed", "dlopen", "plugins.enable names 'npu' but no such plugin file exists"))
                  .find("plugins.enable"),
              std::string::npos);

    Finding f = doctor::plugin_finding(report("cpu", "skipped", "config", "disabled in the configuration (plugins.disable)"));
    EXPECT_EQ(f.level, Level::ok);
    PluginReport ok = report("cpu", "ok", "done", "");
    ok.device_count = 1;
    EXPECT_EQ(doctor::plugin_finding(ok).level, Level::ok);
    ok.device_count = 0;
    EXPECT_EQ(doctor::plugin_finding(ok).level, Level::warn);
    EXPECT_EQ(doctor::plugin_finding(report("opencl", "skipped", "probe", "no OpenCL platform")).level, Level::warn);
    EXPECT_EQ(doctor::plugin_finding(report("opencl", "failed", "probe", "x")).level, Level::fail);
}

TEST(Check, PluginsProbedLikeTheAgentDoes) {
    test::TempDir d;
    for (const char* p : {"badabi", "needsruntime", "nosymbol"})
        ASSERT_TRUE(test::copy_plugin(CPN_TEST_PLUGIN_DIR, p, d.path())) << p;
    ASSERT_TRUE(test::copy_plugin(CPN_PLUGIN_DIR, "cpu", d.path()));
    Config c;
    c.plugins.dir = d.path();
    c.discovery.probe_timeout_ms = 20000;
    auto f = doctor::check_plugins(c, CPN_AGENT_BIN);
    const std::string all = all_messages(f);
    ASSERT_EQ(f.size(), 5u) << all;
    EXPECT_EQ(f[0].subject, d.path());
    EXPECT_EQ(f[0].level, Level::ok) << all;
    const Finding* cpu = by_subject(f, "cpu");
    ASSERT_NE(cpu, nullptr) << all;
    EXPECT_EQ(cpu->level, Level::ok) << all;
    const Finding* abi = by_subject(f, "badabi");
    ASSERT_NE(abi, nullptr) << all;
    EXPECT_EQ(abi->level, Level::fail);
    EXPECT_NE(abi->fix.find("different versions"), std::string::npos) << all;
    const Finding* rt = by_subject(f, "needsruntime");
    ASSERT_NE(rt, nullptr) << all;
    EXPECT_EQ(rt->level, Level::warn);
    EXPECT_NE(rt->fix.find("apt-file search libcpn-vanishing-runtime.so"), std::string::npos) << all;
    const Finding* sym = by_subject(f, "nosymbol");
    ASSERT_NE(sym, nullptr) << all;
    EXPECT_EQ(sym->level, Level::fail);

    c.plugins.dir = d.path() + "/none";
    f = doctor::check_plugins(c, CPN_AGENT_BIN);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail);
}

// --- time box ----------------------------------------------------------------------------------

TEST(Check, TimeBoxReportsAHungCheckAndMovesOn) {
    auto release = std::make_shared<std::atomic<bool>>(false);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    Finding on_timeout{"state_dir", "/x", Level::fail, "did not finish", "check the mount"};
    doctor::Boxed box([release, finished] {
        while (!*release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        *finished = true;
        return std::vector<Finding>{};
    }, std::chrono::milliseconds(50));
    auto f = box.get(on_timeout);
    EXPECT_TRUE(box.timed_out());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].message, "did not finish");
    EXPECT_TRUE(doctor::any_abandoned());
    *release = true;
    while (!*finished) std::this_thread::sleep_for(std::chrono::milliseconds(5));

    doctor::Boxed thrower([]() -> std::vector<Finding> { throw std::runtime_error("boom"); },
                          std::chrono::seconds(10));
    f = thrower.get(on_timeout);
    EXPECT_FALSE(thrower.timed_out());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].level, Level::fail);
    EXPECT_NE(f[0].message.find("boom"), std::string::npos);
}

}  // namespace
}  // namespace cpn
