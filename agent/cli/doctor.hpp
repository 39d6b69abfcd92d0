// doctor.hpp: the checks behind `cpn-agent check`. Each part of a node's set-up (configuration,
// state directory, key and password files, certificates, brokers, plugins, pci.ids) is checked
// on its own and reported as findings: what was checked, what is wrong, and the command or
// setting that fixes it. Nothing here changes the node; every check is time-boxed.
#pragma once

#include <chrono>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "inventory/device.hpp"

namespace cpn::doctor {

enum class Level { ok, warn, fail };

/* "ok", "warn", "fail": the JSON form. */
const char* level_name(Level l);

struct Finding {
    std::string check;    // "configuration", "state_dir", "secrets", "broker", "plugins", "misc"
    std::string subject;  // what was checked: a file, a directory, a URI, a plugin
    Level level = Level::ok;
    std::string message;
    std::string fix;      // a concrete remedy; "" for ok
};

/* One line per finding ("[ OK ]", "[WARN]", "[FAIL]", then check, subject and message), an
 * indented "fix:" line under each warning and failure, and a closing count. */
std::string render_text(const std::vector<Finding>& findings);
/* [{check, subject, status, message, fix}], fix null when there is none. */
nlohmann::ordered_json to_json(const std::vector<Finding>& findings);

// --- configuration -----------------------------------------------------------------------------

struct ConfigOutcome {
    Config config;                   // finalised; defaults stand in for every wrong key
    std::vector<std::string> bad_sections;  // sections with errors; "(file)": nothing usable
    std::vector<Finding> findings;
    bool invalid() const { return !bad_sections.empty(); }
};

/* Loads the file the way the agent does (load_config: a missing default file means the built-in
 * defaults) and reports every problem with the loader's file:line:column. */
ConfigOutcome check_configuration(const std::string& path, bool explicit_path);

/* "" when a check that reads these configuration sections can run; else why not (the sections
 * that have errors). A "(file)" or "(top level)" error blocks every check. */
std::string blocked_by(const ConfigOutcome& cfg, std::initializer_list<const char*> sections);

/* The finding that stands in for a check the configuration's errors keep from running. */
Finding skipped(const std::string& check, const std::string& why);

// --- state directory ---------------------------------------------------------------------------

/* Exists (or its nearest existing parent lets it be created), is writable (a file is created
 * and removed), is not open to others, its files are writable too, and its file system has
 * room. */
std::vector<Finding> check_state_dir(const Config& c);

// --- secrets and certificates ------------------------------------------------------------------

/* What the broker check may connect with: the password when broker.password_file is usable, and
 * why a secret the agent would refuse (a 0644 key file, an unreadable password, a missing
 * certificate) keeps the MQTT connect from being tried ("" when none does). */
struct Credentials {
    std::string password;
    std::string password_problem;  // the password file cannot be used
    std::string tls_problem;       // a broker.tls file cannot be used
    /* Why a connect to a URI (TLS or not) cannot be tried; "" when it can. */
    std::string unusable(bool tls) const;
};

/* broker.password_file and broker.tls.key_file: exist, readable, owner-only (the daemon's own
 * mqtt::check_private_file rule); ca_file and cert_file: PEM certificates, valid now and for
 * more than `warn_days`; the client key matches the client certificate. */
std::vector<Finding> check_secrets(const Config& c, Credentials& creds, std::time_t now, int warn_days = 30);

/* One certificate file: the certificates it holds, their validity against `now`. `ca` is for
 * broker.tls.ca_file (a bundle: an expired certificate among valid ones is a warning). Exposed for
 * tests. */
std::vector<Finding> check_certificate_file(const std::string& path, const std::string& what, bool ca,
                                            std::time_t now, int warn_days);

// --- brokers -----------------------------------------------------------------------------------

struct BrokerAddress {
    std::string scheme, host;
    int port = 0;
    bool tls = false;
};
/* "ssl://broker.example:8883" -> {ssl, broker.example, 8883, tls}; the port defaults by scheme
 * as Paho's do (tcp/mqtt 1883, ssl/mqtts 8883, ws 80, wss 443). nullopt when it is not a URI. */
std::optional<BrokerAddress> parse_broker_uri(const std::string& uri);

/* For each URI in broker.uris: name resolution, a TCP connection within
 * broker.connect_timeout_s, then an MQTT connect (protocol, credentials, TLS as configured) as
 * `client_id`, disconnected cleanly. Without usable credentials (creds.unusable) the MQTT step is not
 * tried. One finding per URI. */
std::vector<Finding> check_brokers(const Config& c, const Credentials& creds, const std::string& client_id);

/* The MQTT client id of the check: the node id with "-check-<pid>", so the check's session
 * never takes over the running agent's. */
std::string check_client_id(const Config& c, long pid);

// --- plugins -----------------------------------------------------------------------------------

/* The plugin directory exists and holds plugins; each plugin is probed the way the agent does
 * (discover(): isolated, time-boxed child processes) and reported. `helper` runs the probes
 * ("": this executable, the agent). */
std::vector<Finding> check_plugins(const Config& c, const std::string& helper = "");

/* One plugin's outcome as a finding with its remedy. Exposed for tests. */
Finding plugin_finding(const PluginReport& r);
/* The remedy for a plugin that did not load or found nothing: the package providing a missing
 * runtime library, matching versions for an ABI mismatch, reinstalling a damaged file, the
 * driver for a hang or crash. */
std::string plugin_fix(const PluginReport& r);

// --- misc --------------------------------------------------------------------------------------

/* The PCI id database `discover` names devices with. */
Finding check_pci_ids(const std::string& path);

// --- time boxes --------------------------------------------------------------------------------

/* Runs one check on a thread of its own, started at construction. get() waits for it until
 * `limit` after the start; a check still running then is left to finish on its own (its thread
 * is detached) and `on_timeout` stands in for its findings. */
class Boxed {
public:
    Boxed(std::function<std::vector<Finding>()> fn, std::chrono::milliseconds limit);
    std::vector<Finding> get(const Finding& on_timeout);
    /* After get(): whether the check ran past its limit. */
    bool timed_out() const { return timed_out_; }

private:
    struct State;
    std::shared_ptr<State> state_;
    std::chrono::steady_clock::time_point deadline_;
    bool timed_out_ = false;
};

/* True once some Boxed check ran past its limit: its thread may still be running, so the
 * process should end with _Exit rather than run static destructors under it. */
bool any_abandoned();

}  // namespace cpn::doctor
