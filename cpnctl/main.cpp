// main.cpp: `cpnctl`, the operator's (and the brain's) client for the cpn-agent task protocol
// (docs/protocol.md, docs/cli.md#cpnctl): submit a task to a node or a shared queue and follow
// it, ask for a task's state, cancel it, list the nodes, watch task events.
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cpnctl_lib.hpp"
#include "mqtt_client.hpp"

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace cpnctl {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) { g_signal.store(sig); }

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

void err(const std::string& msg) { std::fprintf(stderr, "cpnctl: %s\n", msg.c_str()); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct Global {
    std::vector<std::string> brokers;
    std::string mqtt = "5";
    std::string username;
    std::string password_file;
    std::string ca_file, cert_file, key_file;
    std::string client_id;
    double timeout_s = 30;
    bool json_out = false;
};

/* --node NODE or --queue QUEUE, exactly one. */
struct Target {
    std::string node, queue;
    bool is_queue() const { return !queue.empty(); }
    const std::string& name() const { return is_queue() ? queue : node; }
    std::string flag() const { return is_queue() ? "--queue " + queue : "--node " + node; }
};

int check_target(const Target& t, const char* cmd) {
    if (t.node.empty() == t.queue.empty()) {
        err(std::string(cmd) + ": give exactly one of --node NODE or --queue QUEUE");
        return kExitUsage;
    }
    std::string e = check_topic_level(t.name(), t.is_queue() ? "--queue" : "--node");
    if (!e.empty()) {
        err(std::string(cmd) + ": " + e);
        return kExitUsage;
    }
    return kExitOk;
}

std::string default_client_id() {
    char host[256] = {0};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "host");
    std::string h;
    for (const char* p = host; *p; ++p) {
        const char c = *p;
        h += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_') ? c : '_';
    }
    return "cpnctl-" + h + "-" + std::to_string(::getpid());
}

/* The connection settings from the global options; "" or what is wrong (exit 2). */
std::string make_settings(const Global& g, ConnectSettings& s) {
    s.uris = g.brokers.empty() ? std::vector<std::string>{"tcp://127.0.0.1:1883"} : g.brokers;
    for (const std::string& u : s.uris) {
        const bool known = u.rfind("tcp://", 0) == 0 || u.rfind("mqtt://", 0) == 0 || u.rfind("ssl://", 0) == 0 ||
                           u.rfind("mqtts://", 0) == 0 || u.rfind("ws://", 0) == 0 || u.rfind("wss://", 0) == 0;
        if (!known)
            return "--broker '" + u + "': not a broker URI (tcp://HOST:PORT, ssl://HOST:PORT, mqtt://, mqtts://, "
                                      "ws://, wss://)";
    }
    s.mqtt5 = g.mqtt == "5";
    s.client_id = g.client_id.empty() ? default_client_id() : g.client_id;
    s.username = g.username;
    if (!g.password_file.empty()) {
        Result<std::string> pw = read_secret_file(g.password_file, "--password-file");
        if (!pw) return pw.error;
        s.password = *pw;
    }
    for (const auto& [flag, path] : {std::pair<const char*, std::string>{"--ca-file", g.ca_file},
                                     {"--cert-file", g.cert_file},
                                     {"--key-file", g.key_file}}) {
        if (path.empty()) continue;
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return std::string(flag) + " " + path + ": " + std::strerror(errno);
        if (!S_ISREG(st.st_mode)) return std::string(flag) + " " + path + ": not a regular file";
    }
    if (!g.key_file.empty()) {
        struct stat st {};
        if (::stat(g.key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
            return "--key-file " + g.key_file + " is readable or writable by group or others (mode " + mode +
                   "); refusing to use it: run 'chmod 600 " + g.key_file + "'";
        }
    }
    s.ca_file = g.ca_file;
    s.cert_file = g.cert_file;
    s.key_file = g.key_file;
    s.connect_timeout_s = static_cast<int>(std::min(30.0, std::max(1.0, g.timeout_s)));
    return "";
}

/* Connects, or prints why not. Returns the exit code (0: connected). */
int connect_client(const Global& g, std::unique_ptr<Client>& out, bool auto_reconnect = false) {
    ConnectSettings s;
    std::string e = make_settings(g, s);
    if (!e.empty()) {
        err(e);
        return kExitUsage;
    }
    s.auto_reconnect = auto_reconnect;
    try {
        out = std::make_unique<Client>(s);
    } catch (const std::exception& ex) {
        err(std::string("cannot create the MQTT client: ") + ex.what());
        return kExitBroker;
    }
    e = out->connect();
    if (!e.empty()) {
        err(e);
        return kExitBroker;
    }
    return kExitOk;
}

int timeout_ms(const Global& g) { return static_cast<int>(std::min(g.timeout_s, 3600.0) * 1000); }

// ---- following a task ------------------------------------------------------------------------

/* What a person sees on stderr while a task is followed: a progress bar on a terminal, plain
 * state lines otherwise, nothing with --json. */
class Display {
public:
    Display(bool enabled, const std::string& id) : enabled_(enabled), tty_(::isatty(STDERR_FILENO) == 1), id_(id) {}

    void state(const TaskTracker& t) {
        if (!enabled_) return;
        clear();
        std::fprintf(stderr, "%s\n", format_state_line(t.state_message()).c_str());
        draw(t);
    }
    void progress(const TaskTracker& t) { draw(t); }
    void tick(const TaskTracker& t) {
        if (Clock::now() - last_draw_ >= 200ms) draw(t);
    }
    void finish() {
        clear();
        std::fflush(stderr);
    }

private:
    void clear() {
        if (drawn_) std::fputs("\r\033[K", stderr);
        drawn_ = false;
    }
    void draw(const TaskTracker& t) {
        if (!enabled_ || !tty_ || t.terminal()) return;
        last_draw_ = Clock::now();
        const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
        const std::string st = t.has_state() ? t.state() : "waiting";
        const int width = 24;
        std::string bar;
        char pct[16] = "";
        if (t.progress()) {
            const int fill = static_cast<int>(*t.progress() * width + 0.5);
            bar = "[" + std::string(fill, '#') + std::string(width - fill, '.') + "] ";
            std::snprintf(pct, sizeof pct, "%3.0f%%", *t.progress() * 100);
        }
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.1fs", elapsed);
        std::string line = id_ + "  " + st + "  " + secs + "  " + bar + pct;
        if (!t.progress_message().empty()) line += "  " + t.progress_message();
        struct winsize ws {};
        size_t cols = 80;
        if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
        if (line.size() >= cols) line = line.substr(0, cols - 1);
        std::fputs(("\r\033[K" + line).c_str(), stderr);
        std::fflush(stderr);
        drawn_ = true;
    }

    bool enabled_, tty_;
    std::string id_;
    Clock::time_point start_ = Clock::now();
    Clock::time_point last_draw_{};
    bool drawn_ = false;
};

enum class Until { first_answer, terminal };
enum class Outcome { done, timed_out, interrupted, lost };

struct Follow {
    Outcome outcome = Outcome::done;
    std::string lost_cause;
};

Follow follow(Client& c, TaskTracker& t, Until until, Clock::time_point deadline, Display& d) {
    Follow f;
    while (true) {
        if (g_signal.load() != 0) {
            f.outcome = Outcome::interrupted;
            return f;
        }
        if (t.has_state() && (until == Until::first_answer || t.terminal() || t.state() == "UNKNOWN")) return f;
        const auto now = Clock::now();
        if (now >= deadline) {
            f.outcome = Outcome::timed_out;
            return f;
        }
        const auto wait = std::min<Clock::duration>(deadline - now, 200ms);
        std::optional<Incoming> in = c.next(std::chrono::duration_cast<std::chrono::milliseconds>(wait) + 1ms);
        if (!in) {
            d.tick(t);
            continue;
        }
        if (in->kind == Incoming::Kind::lost) {
            f.outcome = Outcome::lost;
            f.lost_cause = in->cause;
            return f;
        }
        if (in->kind != Incoming::Kind::message) continue;
        const json m = json::parse(in->payload, nullptr, false);
        if (m.is_discarded()) continue;
        switch (t.offer(m)) {
            case TaskTracker::Update::state: d.state(t); break;
            case TaskTracker::Update::progress: d.progress(t); break;
            default: break;
        }
    }
}

/* Prints why following stopped early and returns the exit code. */
int report_unfinished(const Global& g, const Follow& f, const TaskTracker& t, const Target& target,
                      const std::string& server, const std::string& request_topic_) {
    const std::string id = t.id();
    if (f.outcome == Outcome::interrupted) {
        err("interrupted; the task goes on: see it with 'cpnctl status " + target.flag() + " " + id + "'");
        return 130;
    }
    if (f.outcome == Outcome::lost) {
        err("the connection to " + server + " was lost (" + f.lost_cause + "); the task may go on: see it with "
            "'cpnctl status " + target.flag() + " " + id + "'");
        return kExitBroker;
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", g.timeout_s);
    if (!t.has_state()) {
        err(std::string("no answer within ") + secs + " s to the request on " + request_topic_ +
            (target.is_queue() ? ": does a node consume this queue (its agent running with the task path on)?"
                               : ": is the node's agent connected to this broker, with the task path on?"));
    } else {
        if (g.json_out) std::printf("%s\n", dump(t.state_message()).c_str());
        err("task " + id + " is still " + t.state() + " after " + secs + " s; follow it with 'cpnctl watch" +
            (t.state_message().value("node_id", std::string()).empty()
                 ? std::string()
                 : " --node " + t.state_message().value("node_id", std::string())) +
            "' or ask 'cpnctl status " + target.flag() + " " + id + "' (a longer --timeout waits longer)");
    }
    return kExitNoAnswer;
}

/* Publishes a request (submit, status, cancel) with the reply topic as the protocol says. */
int send_request(const Global& g, Client& c, const std::string& topic, json payload, const std::string& id,
                 const std::string& reply, std::vector<std::string> extra_subscriptions) {
    extra_subscriptions.insert(extra_subscriptions.begin(), reply);
    // Subscribe first: an answer must not be missed.
    std::string e = c.subscribe(extra_subscriptions, 1, timeout_ms(g));
    if (!e.empty()) {
        err(e);
        return kExitBroker;
    }
    if (!c.mqtt5()) {
        payload["reply_to"] = reply;
        payload["correlation"] = id;
    }
    e = c.publish(topic, dump(payload), 1, timeout_ms(g), reply, id);
    if (!e.empty()) {
        err(e);
        return kExitBroker;
    }
    return kExitOk;
}

// ---- submit --------------------------------------------------------------------------------

struct SubmitOptions {
    Target target;
    std::string file;
    SubmitFlags flags;
    std::string output;
    bool no_wait = false;
};

/* Writes the result's output to `path` after checking its sha256; returns "" or why not. */
std::string write_output(const json& state_msg, const std::string& path, std::string& note) {
    const json* out = nullptr;
    if (state_msg.contains("result") && state_msg["result"].is_object() && state_msg["result"].contains("output") &&
        state_msg["result"]["output"].is_object())
        out = &state_msg["result"]["output"];
    if (out == nullptr) return "the task's result has no output; nothing written to " + path;
    const std::string want = out->value("sha256", std::string());
    std::string bytes;
    if (out->contains("base64") && (*out)["base64"].is_string()) {
        if (!base64_decode((*out)["base64"].get<std::string>(), bytes))
            return "the result's output.base64 is not valid base64; nothing written to " + path;
    } else if (out->contains("path") && (*out)["path"].is_string()) {
        const std::string p = (*out)["path"].get<std::string>();
        const std::string node = state_msg.value("node_id", std::string("the node"));
        if (::access(p.c_str(), R_OK) != 0)
            return "the output (" + std::to_string(out->value("size", int64_t{0})) + " bytes, sha256 " + want +
                   ") is on node " + node + " at " + p + ", which is not readable here: copy it from the node";
        Result<std::string> r = read_file(p);
        if (!r) return "the output is on node " + node + " at " + p + ": " + r.error;
        bytes = std::move(*r);
    } else {
        return "the result's output has neither base64 nor path; nothing written to " + path;
    }
    const std::string got = sha256_hex(bytes);
    if (!want.empty() && got != want)
        return "the output's sha256 is " + got + " but the node reported " + want + "; nothing written to " + path;
    if (out->contains("size") && (*out)["size"].is_number_integer() &&
        (*out)["size"].get<int64_t>() != static_cast<int64_t>(bytes.size()))
        return "the output is " + std::to_string(bytes.size()) + " bytes but the node reported " +
               std::to_string((*out)["size"].get<int64_t>()) + "; nothing written to " + path;
    if (path == "-") {
        if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size() || std::fflush(stdout) != 0)
            return std::string("writing the output to standard output: ") + std::strerror(errno);
        note = std::to_string(bytes.size()) + " bytes written to standard output (sha256 verified)";
        return "";
    }
    const std::string tmp = path + ".cpnctl-" + std::to_string(::getpid()) + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) return "cannot write " + path + ": " + std::strerror(errno);
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        f.close();
        if (!f) {
            const std::string why = std::strerror(errno);
            std::remove(tmp.c_str());
            return "cannot write " + path + ": " + why;
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        return "cannot write " + path + ": " + why;
    }
    note = std::to_string(bytes.size()) + " bytes written to " + path + " (sha256 verified)";
    return "";
}

int cmd_submit(const Global& g, SubmitOptions& o) {
    if (int rc = check_target(o.target, "submit")) return rc;
    if (g.json_out && o.output == "-") {
        err("submit: --json and -o - both want standard output; write the output to a file");
        return kExitUsage;
    }
    if (!o.output.empty() && o.output != "-") {
        struct stat st {};
        if (::stat(o.output.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
            err("-o " + o.output + ": is a directory; name the file to write");
            return kExitUsage;
        }
    }
    std::optional<TaskFile> file;
    if (!o.file.empty()) {
        Result<TaskFile> r = load_task_file(o.file);
        if (!r) {
            err(r.error);
            return kExitUsage;
        }
        file = std::move(*r);
    }
    Result<json> doc = build_submit(file, o.flags);
    if (!doc) {
        err(doc.error);
        return kExitUsage;
    }
    const std::string id = (*doc)["id"].get<std::string>();
    std::unique_ptr<Client> c;
    if (int rc = connect_client(g, c)) return rc;
    const std::string reply = reply_topic(g.client_id);
    const std::string topic = request_topic(o.target.is_queue(), o.target.name(), "submit");
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms(g));
    if (int rc = send_request(g, *c, topic, *doc, id, reply, {"cpn/v1/nodes/+/task/event/" + id})) return rc;
    if (!g.json_out) std::fprintf(stderr, "submitted %s to %s\n", id.c_str(), topic.c_str());

    TaskTracker t(id);
    Display d(!g.json_out, id);
    Follow f = follow(*c, t, o.no_wait ? Until::first_answer : Until::terminal, deadline, d);
    d.finish();
    c->disconnect();
    if (f.outcome != Outcome::done) return report_unfinished(g, f, t, o.target, c->server(), topic);

    const json& m = t.state_message();
    const std::string state = t.state();
    int rc = exit_code_for_state(state);
    FILE* summary_out = o.output == "-" ? stderr : stdout;
    std::string note, write_error;
    if (!o.output.empty() && state == "SUCCEEDED") write_error = write_output(m, o.output, note);
    else if (!o.output.empty() && t.terminal())
        note = "nothing written to " + o.output + ": the task ended " + state;
    if (g.json_out) {
        std::fprintf(summary_out, "%s\n", dump(m).c_str());
    } else {
        std::fputs(format_state_summary(m).c_str(), summary_out);
        if (!note.empty()) std::fprintf(summary_out, "%s\n", note.c_str());
    }
    std::fflush(summary_out);
    if (state == "REJECTED" && g.json_out)  // the summary has them otherwise
        err("task " + id + " was rejected: " + m.value("code", std::string("?")) + ": " +
            m.value("reason", std::string()));
    if (!write_error.empty()) {
        err(write_error);
        if (rc == kExitOk) rc = kExitTaskFailed;
    }
    return rc;
}

// ---- status and cancel -----------------------------------------------------------------------

struct RequestOptions {
    Target target;
    std::string id;
    bool wait = false;
};

int cmd_request(const Global& g, RequestOptions& o, const std::string& verb) {
    if (int rc = check_target(o.target, verb.c_str())) return rc;
    if (!valid_task_id(o.id)) {
        err(verb + ": '" + o.id + "' is not a task id (1 to 128 letters, digits, '.', '_', ':' or '-', starting "
                                  "with a letter or digit)");
        return kExitUsage;
    }
    std::unique_ptr<Client> c;
    if (int rc = connect_client(g, c)) return rc;
    const std::string reply = reply_topic(g.client_id);
    const std::string topic = request_topic(o.target.is_queue(), o.target.name(), verb);
    const std::string events =
        "cpn/v1/nodes/" + (o.target.is_queue() ? std::string("+") : o.target.node) + "/task/event/" + o.id;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms(g));
    if (int rc = send_request(g, *c, topic, json{{"schema_version", 1}, {"id", o.id}}, o.id, reply, {events}))
        return rc;
    TaskTracker t(o.id);
    Display d(!g.json_out && o.wait, o.id);
    Follow f = follow(*c, t, Until::first_answer, deadline, d);
    if (f.outcome == Outcome::done && o.wait && !t.terminal() && t.state() != "UNKNOWN")
        f = follow(*c, t, Until::terminal, deadline, d);
    d.finish();
    c->disconnect();
    if (f.outcome != Outcome::done) return report_unfinished(g, f, t, o.target, c->server(), topic);
    const json& m = t.state_message();
    if (g.json_out) std::printf("%s\n", dump(m).c_str());
    else std::fputs(format_state_summary(m).c_str(), stdout);
    std::fflush(stdout);
    if (t.state() == "UNKNOWN") {
        err((o.target.is_queue() ? "no node of queue " + o.target.queue : "node " + o.target.node) +
            " holds no task " + o.id);
        return kExitUnknown;
    }
    return kExitOk;
}

// ---- nodes ---------------------------------------------------------------------------------

int cmd_nodes(const Global& g) {
    std::unique_ptr<Client> c;
    if (int rc = connect_client(g, c)) return rc;
    std::string e = c->subscribe({"cpn/v1/nodes/+/state", "cpn/v1/nodes/+/inventory", "cpn/v1/nodes/+/capacity"}, 1,
                                 timeout_ms(g));
    if (!e.empty()) {
        err(e);
        return kExitBroker;
    }
    NodeTable table;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms(g));
    auto quiet_until = Clock::now() + 1s;
    while (g_signal.load() == 0) {
        const auto now = Clock::now();
        const auto until = std::min(deadline, quiet_until);
        if (now >= until) break;
        std::optional<Incoming> in =
            c->next(std::chrono::duration_cast<std::chrono::milliseconds>(until - now) + 1ms);
        if (!in) continue;
        if (in->kind == Incoming::Kind::lost) {
            err("the connection to " + c->server() + " was lost: " + in->cause);
            return kExitBroker;
        }
        if (in->kind == Incoming::Kind::message) {
            table.add(in->topic, in->payload);
            quiet_until = Clock::now() + 1s;
        }
    }
    c->disconnect();
    if (g_signal.load() != 0) return 130;
    const auto rows = table.rows();
    const int64_t now = now_ms();
    if (g.json_out) {
        std::printf("%s\n", dump(nodes_json(rows, now)).c_str());
    } else {
        std::fputs(render_nodes_table(rows, now).c_str(), stdout);
        if (rows.empty()) err("no node has a retained state on " + c->server() + " (cpn/v1/nodes/+/state)");
    }
    return kExitOk;
}

// ---- watch ---------------------------------------------------------------------------------

int cmd_watch(const Global& g, const std::string& node, bool events_only) {
    if (!node.empty()) {
        std::string e = check_topic_level(node, "--node");
        if (!e.empty()) {
            err("watch: " + e);
            return kExitUsage;
        }
    }
    std::unique_ptr<Client> c;
    if (int rc = connect_client(g, c, /*auto_reconnect=*/true)) return rc;
    const std::string n = node.empty() ? "+" : node;
    std::vector<std::string> topics = {"cpn/v1/nodes/" + n + "/task/event/#"};
    if (!events_only) topics.push_back("cpn/v1/nodes/" + n + "/state");
    std::string e = c->subscribe(topics, 1, timeout_ms(g));
    if (!e.empty()) {
        err(e);
        return kExitBroker;
    }
    if (!g.json_out) std::fprintf(stderr, "watching %s on %s (Ctrl-C stops)\n", n.c_str(), c->server().c_str());
    while (g_signal.load() == 0) {
        std::optional<Incoming> in = c->next(200ms);
        if (!in) continue;
        if (in->kind == Incoming::Kind::lost) {
            err("the connection to " + c->server() + " was lost (" + in->cause + "); reconnecting");
            continue;
        }
        if (in->kind == Incoming::Kind::reconnected) {
            err("reconnected to " + c->server() + (in->cause.empty() ? "" : "; " + in->cause));
            continue;
        }
        const int64_t now = now_ms();
        if (g.json_out) std::printf("%s\n", dump(watch_json(in->topic, in->payload, in->retained, now)).c_str());
        else std::printf("%s\n", format_watch_line(in->topic, in->payload, in->retained, now).c_str());
        std::fflush(stdout);
    }
    c->disconnect();
    return kExitOk;
}

// ---- command line ----------------------------------------------------------------------------

int run(int argc, char** argv) {
    CLI::App app{"cpnctl: submit tasks to cpn-agent nodes and shared queues, follow them, list the nodes "
                 "(MQTT, docs/protocol.md)"};
    app.fallthrough();
    app.require_subcommand(1);
    app.footer("Exit codes: 0 ok (task SUCCEEDED, command answered), 1 task FAILED/TIMED_OUT/CANCELED, "
               "2 usage or input error, 3 broker unreachable or refused, 4 task REJECTED, 5 no answer "
               "within --timeout, 6 unknown task.\nRun 'cpnctl COMMAND --help' for a command's options.");
    Global g;
    app.add_option("--broker", g.brokers, "Broker URI, tried in order (repeatable; default tcp://127.0.0.1:1883)")
        ->allow_extra_args(false);
    app.add_option("--mqtt", g.mqtt, "MQTT protocol version: 5 (default) or 3.1.1")
        ->check(CLI::IsMember({"5", "3.1.1"}));
    app.add_option("--username", g.username, "User name for the broker");
    app.add_option("--password-file", g.password_file, "File holding the broker password (mode 0600 or stricter)");
    app.add_option("--ca-file", g.ca_file, "CA bundle to verify the broker with (ssl://, mqtts://)");
    app.add_option("--cert-file", g.cert_file, "Client certificate for mutual TLS");
    app.add_option("--key-file", g.key_file, "Client private key for mutual TLS (mode 0600 or stricter)");
    app.add_option("--client-id", g.client_id, "MQTT client id (default cpnctl-<host>-<pid>); replies come on "
                                               "cpn/v1/replies/<client-id>");
    app.add_option("--timeout", g.timeout_s, "Seconds to wait for answers (default 30)")
        ->check(CLI::PositiveNumber);
    app.add_flag("--json", g.json_out, "Machine output: one JSON document per result (JSON lines for watch)");
    bool version = false;
    app.add_flag("-V,--version", version, "Print the version and exit");

    // submit
    SubmitOptions so;
    int64_t priority = 0, task_timeout = 0, min_memory = 0;
    std::string id, kind, params_json, input_file, input_path, device_class, backend, precision, device_id;
    CLI::App* submit = app.add_subcommand("submit", "Submit a task and follow it until it ends");
    auto* s_node = submit->add_option("--node", so.target.node, "Node to run the task");
    auto* s_queue = submit->add_option("--queue", so.target.queue, "Shared queue to send the task to");
    s_node->excludes(s_queue);
    submit->add_option("file", so.file, "Task file, JSON or YAML (the submit document; flags override it; - "
                                        "reads standard input)");
    auto* o_id = submit->add_option("--id", id, "Task id (default: a generated UUID)");
    auto* o_kind = submit->add_option("--kind", kind, "Task kind (echo, bench, ...)");
    submit->add_option("--param", so.flags.params, "Parameter key=value (repeatable; true/false, integers and "
                                                   "numbers are typed, quote a value to keep it a string)")
        ->allow_extra_args(false);
    auto* o_pj = submit->add_option("--params-json", params_json, "Parameters as a JSON object");
    auto* o_if = submit->add_option("--input-file", input_file, "Local file sent inline (base64) as the input");
    auto* o_ip = submit->add_option("--input-path", input_path, "Absolute path of the input file on the node");
    o_if->excludes(o_ip);
    auto* o_prio = submit->add_option("--priority", priority, "Priority -100..100 (higher first)");
    auto* o_tt = submit->add_option("--task-timeout", task_timeout, "The task's own timeout_s on the node (1..86400)");
    auto* o_dc = submit->add_option("--device-class", device_class, "Required device class: cpu, gpu, fpga, npu, other");
    auto* o_be = submit->add_option("--backend", backend, "Required backend (cpu, cuda, opencl, levelzero, xrt)");
    auto* o_mm = submit->add_option("--min-memory", min_memory, "Required free device memory in bytes");
    auto* o_pr = submit->add_option("--precision", precision, "Required precision: fp64, fp32, fp16, bf16, int8");
    auto* o_di = submit->add_option("--device-id", device_id, "Run on this device of the node");
    submit->add_option("-o,--output", so.output, "Write the result's output bytes to this file (- : standard "
                                                 "output), after checking their sha256");
    submit->add_flag("--no-wait", so.no_wait, "Return after the first answer (QUEUED, RUNNING, or REJECTED)");

    // status, cancel
    RequestOptions st, ca;
    CLI::App* status = app.add_subcommand("status", "Ask for a task's current state");
    status->add_option("--node", st.target.node, "Node that holds the task")->excludes(
        status->add_option("--queue", st.target.queue, "Queue the task was sent to"));
    status->add_option("id", st.id, "Task id")->required();
    CLI::App* cancel = app.add_subcommand("cancel", "Cancel a task");
    cancel->add_option("--node", ca.target.node, "Node that holds the task")->excludes(
        cancel->add_option("--queue", ca.target.queue, "Queue the task was sent to"));
    cancel->add_option("id", ca.id, "Task id")->required();
    cancel->add_flag("--wait", ca.wait, "Follow the task until it ends");

    // nodes, watch
    CLI::App* nodes = app.add_subcommand("nodes", "List the nodes (retained state, inventory and capacity)");
    std::string watch_node;
    bool events_only = false;
    CLI::App* watch = app.add_subcommand("watch", "Print task events (and node state changes) until Ctrl-C");
    watch->add_option("--node", watch_node, "Only this node");
    watch->add_flag("--events-only", events_only, "Only task events, not node state");

    if (argc >= 2 && (std::strcmp(argv[1], "-V") == 0 || std::strcmp(argv[1], "--version") == 0)) {
        std::printf("cpnctl %s\n", CPNCTL_VERSION);
        return kExitOk;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitUsage;
    }
    if (version) {
        std::printf("cpnctl %s\n", CPNCTL_VERSION);
        return kExitOk;
    }
    if (g.client_id.empty()) g.client_id = default_client_id();
    if (g.client_id.size() > 200) {
        err("--client-id: longer than 200 characters");
        return kExitUsage;
    }
    install_signal_handlers();
    if (submit->parsed()) {
        if (o_id->count()) so.flags.id = id;
        if (o_kind->count()) so.flags.kind = kind;
        if (o_pj->count()) so.flags.params_json = params_json;
        if (o_if->count()) so.flags.input_file = input_file;
        if (o_ip->count()) so.flags.input_path = input_path;
        if (o_prio->count()) so.flags.priority = priority;
        if (o_tt->count()) so.flags.timeout_s = task_timeout;
        if (o_dc->count()) so.flags.device_class = device_class;
        if (o_be->count()) so.flags.backend = backend;
        if (o_mm->count()) so.flags.min_memory_bytes = min_memory;
        if (o_pr->count()) so.flags.precision = precision;
        if (o_di->count()) so.flags.device_id = device_id;
        return cmd_submit(g, so);
    }
    if (status->parsed()) return cmd_request(g, st, "status");
    if (cancel->parsed()) return cmd_request(g, ca, "cancel");
    if (nodes->parsed()) return cmd_nodes(g);
    if (watch->parsed()) return cmd_watch(g, watch_node, events_only);
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
}

}  // namespace
}  // namespace cpnctl

int main(int argc, char** argv) {
    try {
        return cpnctl::run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cpnctl: internal error: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "cpnctl: internal error\n");
    }
    return cpnctl::kExitTaskFailed;
}
