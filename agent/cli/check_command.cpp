// check_command.cpp: `cpn-agent check`, the operator's doctor. It runs the checks of
// cli/doctor.hpp, each in its own time box, prints one line per finding with its fix (or JSON),
// and exits 0 (warnings allowed), 1 (a check failed) or 3 (the configuration is invalid).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>

#include "cli/commands.hpp"
#include "cli/doctor.hpp"
#include "core/log.hpp"

namespace cpn::cli {

namespace {

using doctor::Boxed;
using doctor::Finding;
using doctor::Level;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct CheckArgs {
    bool json = false, skip_broker = false, skip_plugins = false;
};

Finding timed_out(const std::string& check, const std::string& subject, milliseconds limit, const std::string& fix) {
    return {check, subject, Level::fail,
            "did not finish within " + std::to_string(limit.count() / 1000) + " s (a hung file system, resolver or "
            "driver?)",
            fix};
}

int run_check(const GlobalOptions& g, const CheckArgs& args) {
    // The findings are the output; log lines would only interleave with them.
    if (g.log_level.empty()) (void)set_log_level("error");
    // A broker that closes the connection mid-write, or `check | head`, must not end the check.
    ::signal(SIGPIPE, SIG_IGN);
    std::vector<Finding> all;
    auto append = [&all](std::vector<Finding> f) { all.insert(all.end(), f.begin(), f.end()); };

    // 1. Configuration. Its outcome is shared with the box, which may outlive a time-out.
    auto cfg = std::make_shared<doctor::ConfigOutcome>();
    const std::string path = g.config_path;
    const bool explicit_path = g.config_explicit;
    const milliseconds cfg_limit = seconds(15);
    Boxed cfg_box([cfg, path, explicit_path] {
        *cfg = doctor::check_configuration(path, explicit_path);
        return cfg->findings;
    }, cfg_limit);
    append(cfg_box.get(timed_out("configuration", path, cfg_limit, "check the file system that holds " + path)));
    const bool cfg_hung = cfg_box.timed_out();
    // A copy for the checks below: a timed-out loader may still write into *cfg.
    doctor::ConfigOutcome c;
    if (cfg_hung) c.bad_sections = {"(file)"};
    else c = *cfg;
    const Config& conf = c.config;

    // 5 (started first, it runs longest). Plugins, probed alongside the other checks.
    std::unique_ptr<Boxed> plugins_box;
    const milliseconds plugins_limit = milliseconds(conf.discovery.probe_timeout_ms) + seconds(30);
    const std::string plugins_blocked = doctor::blocked_by(c, {"plugins", "discovery"});
    if (!args.skip_plugins && plugins_blocked.empty())
        plugins_box = std::make_unique<Boxed>([conf] { return doctor::check_plugins(conf); }, plugins_limit);

    // 2. State directory.
    if (std::string why = doctor::blocked_by(c, {"state_dir"}); !why.empty()) {
        all.push_back(doctor::skipped("state_dir", why));
    } else {
        const milliseconds limit = seconds(15);
        append(Boxed([conf] { return doctor::check_state_dir(conf); }, limit)
                   .get(timed_out("state_dir", conf.state_dir, limit,
                                  "check the file system that holds it (a stale network mount?)")));
    }

    // 3. Secrets and certificates; what they yield is what the broker check connects with.
    auto creds = std::make_shared<doctor::Credentials>();
    bool secrets_checked = false;
    if (std::string why = doctor::blocked_by(c, {"broker"}); !why.empty()) {
        all.push_back(doctor::skipped("secrets", why));
    } else {
        const milliseconds limit = seconds(15);
        const std::time_t now = std::time(nullptr);
        Boxed box([conf, creds, now] { return doctor::check_secrets(conf, *creds, now); }, limit);
        append(box.get(timed_out("secrets", "", limit, "check the file systems that hold the key and certificate files")));
        secrets_checked = !box.timed_out();
    }

    // 4. Brokers, under a client id of the check's own so the running agent keeps its session.
    if (!args.skip_broker) {
        if (std::string why = doctor::blocked_by(c, {"broker", "node"}); !why.empty()) {
            all.push_back(doctor::skipped("broker", why));
        } else {
            doctor::Credentials cr;
            if (secrets_checked) cr = *creds;
            else cr.password_problem = "the secrets could not be checked";
            const std::string client_id = doctor::check_client_id(conf, static_cast<long>(::getpid()));
            // Per URI: resolution and TCP within the connect timeout each, CONNECT within it + 2 s.
            const milliseconds limit =
                seconds((3 * conf.broker.connect_timeout_s + 10) * static_cast<int>(std::max<size_t>(1, conf.broker.uris.size())));
            append(Boxed([conf, cr, client_id] { return doctor::check_brokers(conf, cr, client_id); }, limit)
                       .get(timed_out("broker", "", limit, "check the network and the resolver of this node")));
        }
    }

    if (!args.skip_plugins) {
        if (!plugins_blocked.empty()) all.push_back(doctor::skipped("plugins", plugins_blocked));
        else
            append(plugins_box->get(timed_out("plugins", "", plugins_limit,
                                              "a plugin's vendor runtime hangs beyond its probe time box: run "
                                              "'cpn-agent discover --log-level debug' to see which")));
    }

    // 6. Misc.
    {
        const milliseconds limit = seconds(5);
        append(Boxed([] { return std::vector<Finding>{doctor::check_pci_ids(CPN_PCI_IDS_PATH)}; }, limit)
                   .get(timed_out("misc", CPN_PCI_IDS_PATH, limit, "check the file system that holds it")));
    }

    std::string text;
    if (args.json) text = doctor::to_json(all).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    else text = doctor::render_text(all);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);

    int rc = kExitOk;
    if (c.invalid()) rc = kExitConfig;
    else
        for (const Finding& f : all)
            if (f.level == Level::fail) rc = kExitFailure;
    // A check that ran past its box may still be running: end without running static
    // destructors under it.
    if (doctor::any_abandoned()) std::_Exit(rc);
    return rc;
}

}  // namespace

std::function<int()> add_check_command(CLI::App& app, const GlobalOptions& g) {
    auto args = std::make_shared<CheckArgs>();
    CLI::App* cmd = app.add_subcommand(
        "check", "Check this node's set-up: configuration, state directory, key and password files, certificates, "
                 "brokers, plugins; say how to fix what is wrong");
    cmd->add_flag("--json", args->json, "Print a JSON array of {check, subject, status, message, fix}");
    cmd->add_flag("--skip-broker", args->skip_broker, "Do not connect to the brokers");
    cmd->add_flag("--skip-plugins", args->skip_plugins, "Do not probe the backend plugins");
    cmd->footer("Exit codes: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage error, "
                "3 configuration error (the checks that need the broken part are skipped).");
    return [args, &g]() -> int { return run_check(g, *args); };
}

}  // namespace cpn::cli
