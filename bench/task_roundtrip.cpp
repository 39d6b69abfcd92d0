// task_roundtrip.cpp: the round trip of an `echo` task from submit to result through a broker,
// and, for comparison, a bare MQTT 5 request/response echo with the same client library.
//
//   --mode bare   this program also runs a responder (a second Paho C++ async_client, on its own
//                 callback thread) that answers each request on bench/bare/req by publishing the
//                 same payload to the request's Response Topic with its Correlation Data, QoS 1.
//   --mode agent  each request is an echo task submit on cpn/v1/nodes/{node}/task/submit
//                 (docs/protocol.md, "Tasks"), Response Topic cpn/v1/replies/<client id>,
//                 Correlation Data = the task id; the round trip ends with the SUCCEEDED
//                 task_state for that id (QUEUED/RUNNING are skipped; FAILED, REJECTED, TIMED_OUT,
//                 CANCELED and UNKNOWN are errors).
//
// Both modes use the same requester: MQTT 5, QoS 1, clean start, one async_client, subscribed to
// its reply topic before the first request. Latency: closed loop, one request at a time, --warmup
// (200) requests then --latency-n measured. Throughput: --throughput-n requests with at most
// --window outstanding. A latency is steady_clock from the publish call to the arrival of the
// answer in the message callback.
//
// --interleave-bare B (mode agent): the same process also runs the bare responder and a second
// requester, and the closed-loop phase alternates blocks of B bare requests and B echo tasks
// until each has --latency-n: both sets then share the machine's every moment, which on a
// shared VM (where the bare p50 alone moves by a third within minutes) keeps the neighbours out
// of their ratio. The agent's work after its answers (acknowledgements, the journal's apply)
// also slows the first bare requests of the next block, so small blocks flatter the agent.
// Reported as "bare_interleaved".
//
// TCP_NODELAY: Paho C 1.3 never sets it and has no option for it, so a client that PUBACKs a
// message and then publishes (a responder; a requester sending its next request after an answer)
// has its PUBLISH held by Nagle's algorithm until the broker's delayed ACK (40 ms on Linux): about
// 44 ms per leg on loopback. --tcp-nodelay on (the default) sets it on this process's sockets to
// the broker once connected; off shows stock Paho. The agent's own Paho sockets are its own.
//
// TZ: set to ":/etc/localtime" (unless set), as cpn-agent sets it, so neither mode pays glibc's
// stat of /etc/localtime in every localtime() call Paho C makes per packet.
//
// Exit: 0 done; 1 done but some requests ended in errors; 2 bad arguments (a bad broker URI);
// 3 the broker cannot be reached; 4 no answer within 10 s.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <unordered_map>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr auto kAnswerTimeout = std::chrono::seconds(10);
constexpr const char* kBareRequestTopic = "bench/bare/req";

enum Exit { kOk = 0, kErrors = 1, kUsage = 2, kUnreachable = 3, kNoAnswer = 4 };

struct Fatal {
    int code;
    std::string what;
};

std::string base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += t[v & 63];
    }
    if (i + 1 == in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8);
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += t[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::string describe(const mqtt::exception& e) {
    std::string s = e.what();
    if (e.get_reason_code() != 0) s += " (reason code " + std::to_string(e.get_reason_code()) + ")";
    return s;
}

std::optional<std::string> string_property(const mqtt::properties& p, mqtt::property::code c) {
    if (!p.contains(c)) return std::nullopt;
    return mqtt::get<std::string>(p, c);
}

mqtt::connect_options connect_options(int max_inflight) {
    return mqtt::connect_options_builder()
        .mqtt_version(MQTTVERSION_5)
        .clean_start(true)
        .keep_alive_interval(std::chrono::seconds(30))
        .connect_timeout(std::chrono::seconds(5))
        .max_inflight(max_inflight)
        .automatic_reconnect(false)
        .finalize();
}

std::unique_ptr<mqtt::async_client> make_client(const std::string& uri, const std::string& id) {
    mqtt::create_options copts(MQTTVERSION_5);
    // Paho C refuses a publish (-12) while more than this many commands wait to be sent (default 100).
    copts.set_max_buffered_messages(1 << 20);
    return std::make_unique<mqtt::async_client>(uri, id, copts, static_cast<mqtt::iclient_persistence*>(nullptr));
}

void connect(mqtt::async_client& c, const std::string& uri, int max_inflight) {
    try {
        c.connect(connect_options(max_inflight))->wait_for(std::chrono::seconds(10));
    } catch (const mqtt::exception& e) {
        throw Fatal{kUnreachable, "cannot connect to the broker at " + uri + ": " + describe(e)};
    }
    if (!c.is_connected()) throw Fatal{kUnreachable, "cannot connect to the broker at " + uri + ": no CONNACK within 10 s"};
}

void subscribe(mqtt::async_client& c, const std::string& topic) {
    try {
        auto tok = c.subscribe(topic, 1);
        if (!tok->wait_for(std::chrono::seconds(10))) throw Fatal{kUnreachable, "no SUBACK for " + topic + " within 10 s"};
        auto rcs = tok->get_subscribe_response().get_reason_codes();
        if (!rcs.empty() && rcs.front() >= 0x80)
            throw Fatal{kUnreachable, "the broker refused the subscription to " + topic + " (reason code " +
                                          std::to_string(int(rcs.front())) + ")"};
    } catch (const mqtt::exception& e) {
        throw Fatal{kUnreachable, "subscribing to " + topic + " failed: " + describe(e)};
    }
}

/* The bare responder: answers each request with its own payload, to its Response Topic, with
 * its Correlation Data, QoS 1. Runs on Paho's callback thread of its own client. */
class Responder {
public:
    Responder(const std::string& uri, const std::string& id) : client_(make_client(uri, id)) {
        client_->set_message_callback([this](mqtt::const_message_ptr m) {
            const auto& p = m->get_properties();
            auto rt = string_property(p, mqtt::property::RESPONSE_TOPIC);
            if (!rt) {
                ++dropped_;
                return;
            }
            mqtt::properties out;
            if (auto cd = string_property(p, mqtt::property::CORRELATION_DATA))
                out.add(mqtt::property(mqtt::property::CORRELATION_DATA, *cd));
            auto msg = mqtt::message_ptr_builder().topic(*rt).payload(m->get_payload()).qos(1).properties(std::move(out)).finalize();
            try {
                client_->publish(msg);
            } catch (const mqtt::exception&) {
                ++dropped_;
            }
        });
        connect(*client_, uri, 65535);
        subscribe(*client_, kBareRequestTopic);
    }
    ~Responder() {
        try {
            client_->disconnect()->wait_for(std::chrono::seconds(2));
        } catch (const mqtt::exception&) {
        }
    }
    long dropped() const { return dropped_.load(); }

private:
    std::unique_ptr<mqtt::async_client> client_;
    std::atomic<long> dropped_{0};
};

struct Pending {
    Clock::time_point t0;
    bool measure = false;
    std::string last_state;  // agent mode: the last non-final state seen for it
};

struct ErrorNote {
    std::string id, state, code, reason;
};

class Requester {
public:
    Requester(std::string uri, std::string client_id, std::string mode, std::string node, int payload_bytes, int window)
        : uri_(std::move(uri)), client_id_(std::move(client_id)), agent_(mode == "agent"), node_(std::move(node)),
          client_(make_client(uri_, client_id_)) {
        reply_topic_ = agent_ ? "cpn/v1/replies/" + client_id_ : "bench/bare/reply/" + client_id_;
        request_topic_ = agent_ ? "cpn/v1/nodes/" + node_ + "/task/submit" : kBareRequestTopic;
        std::mt19937_64 rng(std::random_device{}());
        input_.resize(size_t(payload_bytes));
        for (auto& ch : input_) ch = char(rng() & 0xff);
        input_b64_ = base64(input_);
        client_->set_message_callback([this](mqtt::const_message_ptr m) { on_message(*m, Clock::now()); });
        client_->set_connection_lost_handler([this](const std::string& cause) {
            std::lock_guard<std::mutex> g(mu_);
            lost_ = "the connection to the broker was lost" + (cause.empty() ? std::string() : ": " + cause);
            cv_.notify_all();
        });
        connect(*client_, uri_, std::max(window + 16, 64));
        subscribe(*client_, reply_topic_);
    }
    ~Requester() {
        try {
            client_->disconnect()->wait_for(std::chrono::seconds(2));
        } catch (const mqtt::exception&) {
        }
    }

    const std::string& request_topic() const { return request_topic_; }
    const std::string& reply_topic() const { return reply_topic_; }

    /* Sends one request; `measure` records its latency. */
    void send(bool measure) {
        std::string id = id_prefix_ + std::to_string(seq_++);
        std::string payload;
        if (agent_) {
            json j = {{"schema_version", 1}, {"id", id}, {"kind", "echo"}, {"input", {{"base64", input_b64_}}}};
            payload = j.dump();
        } else {
            payload = input_;
        }
        mqtt::properties props;
        props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, reply_topic_));
        props.add(mqtt::property(mqtt::property::CORRELATION_DATA, id));
        auto msg = mqtt::message_ptr_builder().topic(request_topic_).payload(std::move(payload)).qos(1).properties(std::move(props)).finalize();
        {
            std::lock_guard<std::mutex> g(mu_);
            Pending& p = pending_[id];
            p.measure = measure;
            p.t0 = Clock::now();
        }
        try {
            client_->publish(msg);
        } catch (const mqtt::exception& e) {
            throw Fatal{kUnreachable, "publishing to " + request_topic_ + " failed: " + describe(e)};
        }
    }

    /* Waits until at most `max_outstanding` requests are unanswered; no progress for 10 s is fatal. */
    void wait_outstanding_at_most(size_t max_outstanding) {
        std::unique_lock<std::mutex> lk(mu_);
        while (pending_.size() > max_outstanding) {
            size_t before = completed_;
            bool progressed = cv_.wait_for(lk, kAnswerTimeout, [&] {
                return pending_.size() <= max_outstanding || completed_ != before || !lost_.empty();
            });
            if (!lost_.empty()) throw Fatal{kUnreachable, lost_};
            if (!progressed) throw Fatal{kNoAnswer, no_answer_message()};
        }
    }

    std::vector<double> take_latencies() {
        std::lock_guard<std::mutex> g(mu_);
        return std::exchange(latencies_us_, {});
    }
    long errors() const {
        std::lock_guard<std::mutex> g(mu_);
        return long(error_notes_.size()) + mismatches_;
    }
    json details() const {
        std::lock_guard<std::mutex> g(mu_);
        json d = json::object();
        std::map<std::string, long> by;
        for (const auto& e : error_notes_) by[e.state + (e.code.empty() ? "" : "/" + e.code)]++;
        if (!by.empty()) d["errors_by_state"] = by;
        json first = json::array();
        for (size_t i = 0; i < error_notes_.size() && i < 5; ++i)
            first.push_back({{"id", error_notes_[i].id}, {"state", error_notes_[i].state}, {"code", error_notes_[i].code},
                             {"reason", error_notes_[i].reason}});
        if (!first.empty()) d["first_errors"] = first;
        if (mismatches_) d["output_mismatches"] = mismatches_;
        if (duplicates_) d["duplicate_answers"] = duplicates_;
        if (unexpected_) d["unexpected_messages"] = unexpected_;
        if (!protocol_notes_.empty()) d["protocol_notes"] = protocol_notes_;
        return d;
    }

private:
    std::string no_answer_message() const {  // mu_ held
        std::string s = "no answer within 10 s: " + std::to_string(pending_.size()) + " request(s) outstanding on " +
                        request_topic_ + " (answers expected on " + reply_topic_ + ")";
        if (!pending_.empty()) {
            const auto& [id, p] = *pending_.begin();
            s += "; e.g. " + id + (p.last_state.empty() ? ", nothing received for it" : ", last state " + p.last_state);
        }
        if (agent_ && completed_ == 0)
            s += "; is cpn-agent running as node '" + node_ + "' on this broker, and does it serve task submits?";
        return s;
    }

    void note(const std::string& s) {  // mu_ held; keeps the first few distinct notes
        if (protocol_notes_.size() < 8 && std::find(protocol_notes_.begin(), protocol_notes_.end(), s) == protocol_notes_.end())
            protocol_notes_.push_back(s);
    }

    void finish(std::unordered_map<std::string, Pending>::iterator it, Clock::time_point t1) {  // mu_ held
        if (it->second.measure)
            latencies_us_.push_back(std::chrono::duration<double, std::micro>(t1 - it->second.t0).count());
        pending_.erase(it);
        ++completed_;
        cv_.notify_all();
    }

    void on_message(const mqtt::message& m, Clock::time_point t1) {
        auto corr = string_property(m.get_properties(), mqtt::property::CORRELATION_DATA);
        if (!agent_) {
            std::lock_guard<std::mutex> g(mu_);
            auto it = corr ? pending_.find(*corr) : pending_.end();
            if (it == pending_.end()) {
                ++unexpected_;
                return;
            }
            if (m.get_payload_str() != input_) ++mismatches_;
            finish(it, t1);
            return;
        }
        json doc = json::parse(m.get_payload_str(), nullptr, false);
        std::lock_guard<std::mutex> g(mu_);
        if (!doc.is_object() || doc.value("type", "") != "task_state") {
            ++unexpected_;
            note("a message on the reply topic that is not a task_state: " + m.get_payload_str().substr(0, 160));
            return;
        }
        std::string task_id = doc.value("task_id", "");
        std::string state = doc.value("state", "");
        if (!corr) note("a task_state without the Correlation Data property (MQTT 5)");
        else if (*corr != task_id) note("Correlation Data '" + *corr + "' differs from task_id '" + task_id + "'");
        if (!doc.contains("correlation")) note("a task_state without the 'correlation' member");
        else if (corr && doc["correlation"] != *corr) note("the 'correlation' member differs from the Correlation Data property");
        std::string key = corr ? *corr : task_id;
        auto it = pending_.find(key);
        if (it == pending_.end()) {
            if (key.rfind(id_prefix_, 0) == 0) ++duplicates_;  // de-duplicated by (task_id, version)
            else ++unexpected_;
            return;
        }
        if (state == "QUEUED" || state == "RUNNING") {
            it->second.last_state = state + " v" + std::to_string(doc.value("version", -1));
            return;
        }
        if (state == "SUCCEEDED") {
            const json* out = nullptr;
            if (doc.contains("result") && doc["result"].is_object() && doc["result"].contains("output"))
                out = &doc["result"]["output"];
            if (out == nullptr || !out->is_object()) {
                note("a SUCCEEDED echo without result.output");
            } else if (out->contains("base64")) {
                if ((*out)["base64"] != input_b64_) ++mismatches_;
            } else if (!out->contains("path")) {
                note("result.output has neither base64 nor path");
            }
            finish(it, t1);
            return;
        }
        error_notes_.push_back({key, state, doc.value("code", ""), doc.value("reason", "")});
        finish(it, t1);
    }

    std::string uri_, client_id_;
    bool agent_;
    std::string node_;
    std::unique_ptr<mqtt::async_client> client_;
    std::string reply_topic_, request_topic_;
    std::string input_, input_b64_;
    std::string id_prefix_ = client_id_ + "-";
    uint64_t seq_ = 0;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::unordered_map<std::string, Pending> pending_;
    std::vector<double> latencies_us_;
    size_t completed_ = 0;
    std::string lost_;
    std::vector<ErrorNote> error_notes_;
    long mismatches_ = 0, duplicates_ = 0, unexpected_ = 0;
    std::vector<std::string> protocol_notes_;
};

/* Sets TCP_NODELAY on every TCP socket of this process connected to `port` (Paho C exposes
 * neither its sockets nor the option). Returns how many sockets it set. */
int set_nodelay_to_port(int port) {
    int n = 0;
    DIR* d = opendir("/proc/self/fd");
    if (d == nullptr) return 0;
    while (dirent* e = readdir(d)) {
        char* end = nullptr;
        long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
        int type = 0;
        socklen_t tl = sizeof type;
        if (getsockopt(int(fd), SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) continue;
        sockaddr_storage peer{};
        socklen_t pl = sizeof peer;
        if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
        int peer_port = -1;
        if (peer.ss_family == AF_INET) peer_port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
        else if (peer.ss_family == AF_INET6) peer_port = ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
        if (peer_port != port) continue;
        int one = 1;
        if (setsockopt(int(fd), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++n;
    }
    closedir(d);
    return n;
}

double pct(const std::vector<double>& sorted, double q) {
    if (sorted.empty()) return 0;
    size_t rank = size_t(std::ceil(q * double(sorted.size())));  // nearest rank
    return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

/* Returns the port. */
int validate_uri(const std::string& uri) {
    static const std::regex re(R"(^(tcp|mqtt)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$)");
    std::smatch m;
    if (!std::regex_match(uri, m, re))
        throw Fatal{kUsage, "--broker '" + uri + "' is not a broker URI of the form tcp://HOST:PORT (or mqtt://HOST:PORT)"};
    long port = std::stol(m[3].str());
    if (port < 1 || port > 65535) throw Fatal{kUsage, "--broker '" + uri + "': port " + m[3].str() + " is out of range (1-65535)"};
    return int(port);
}

int run(int argc, char** argv) {
    CLI::App app{"Task round trip through an MQTT broker: echo tasks via cpn-agent, or a bare MQTT 5 request/response"};
    std::string broker, mode, node = "bench-node";
    int warmup = 200, latency_n = 2000, throughput_n = 20000, window = 64, payload_bytes = 64;
    bool as_json = false;
    int interleave = 0;
    std::string nodelay = "on", latencies_out;
    app.add_option("--broker", broker, "Broker URI, tcp://HOST:PORT")->required();
    app.add_option("--mode", mode, "bare: MQTT request/response with an in-process responder; agent: echo tasks")
        ->required()->check(CLI::IsMember({"bare", "agent"}));
    app.add_option("--node", node, "Node id of the agent (mode agent)")->capture_default_str();
    app.add_option("--warmup", warmup, "Closed-loop requests sent, not measured, before the latency phase")
        ->check(CLI::Range(0, 1000000))->capture_default_str();
    app.add_option("--latency-n", latency_n, "Closed-loop requests measured after the warm-up")
        ->check(CLI::Range(1, 10000000))->capture_default_str();
    app.add_option("--throughput-n", throughput_n, "Requests of the throughput phase (0: skip)")
        ->check(CLI::Range(0, 100000000))->capture_default_str();
    app.add_option("--window", window, "Most requests outstanding in the throughput phase")
        ->check(CLI::Range(1, 65000))->capture_default_str();
    app.add_option("--payload-bytes", payload_bytes, "Bytes echoed per request (random)")
        ->check(CLI::Range(0, 1 << 20))->capture_default_str();
    app.add_option("--tcp-nodelay", nodelay, "Set TCP_NODELAY on this program's broker sockets (Paho C does not)")
        ->check(CLI::IsMember({"on", "off"}))->capture_default_str();
    app.add_option("--latencies-out", latencies_out,
                   "Also write the closed-loop latencies (us), one per line in the order sent, to this file");
    app.add_option("--interleave-bare", interleave,
                   "Mode agent: alternate blocks of this many bare requests and echo tasks in the closed-loop phase "
                   "(0: agent only)")
        ->check(CLI::Range(0, 1000000))->capture_default_str();
    app.add_flag("--json", as_json, "Print one JSON object on stdout (the human summary goes to stderr)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : kUsage;
    }
    int port = validate_uri(broker);
    static const std::regex node_re(R"(^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$)");
    if (!std::regex_match(node, node_re))
        throw Fatal{kUsage, "--node '" + node + "' is not a node id (letters, digits, . _ : -; no / + #)"};

    std::mt19937_64 rng(std::random_device{}());
    char tag[32];
    std::snprintf(tag, sizeof tag, "rt%d-%06llx", int(getpid()), static_cast<unsigned long long>(rng() & 0xffffff));
    std::string client_id = std::string("cpn-bench-") + tag;

    if (interleave > 0 && mode != "agent") throw Fatal{kUsage, "--interleave-bare needs --mode agent"};
    std::unique_ptr<Responder> responder;
    if (mode == "bare" || interleave > 0) responder = std::make_unique<Responder>(broker, client_id + "-resp");
    Requester req(broker, client_id, mode, node, payload_bytes, window);
    std::unique_ptr<Requester> bare_req;
    if (interleave > 0) bare_req = std::make_unique<Requester>(broker, client_id + "-b", "bare", node, payload_bytes, window);
    const int expect_sockets = 1 + (responder ? 1 : 0) + (bare_req ? 1 : 0);
    int nodelay_sockets = nodelay == "on" ? set_nodelay_to_port(port) : 0;
    if (nodelay == "on" && nodelay_sockets != expect_sockets)
        std::fprintf(stderr, "cpn-bench-task-roundtrip: warning: TCP_NODELAY set on %d socket(s), expected %d\n", nodelay_sockets,
                     expect_sockets);

    // Warm-up, then the closed-loop latency phase (in alternating blocks with --interleave-bare).
    auto closed_loop = [](Requester& r, int n, bool measure) {
        for (int i = 0; i < n; ++i) {
            r.send(measure);
            r.wait_outstanding_at_most(0);
        }
    };
    closed_loop(req, warmup, false);
    if (bare_req) closed_loop(*bare_req, warmup, false);
    req.take_latencies();
    std::vector<double> bare_lat;
    if (bare_req) {
        for (int done = 0; done < latency_n; done += interleave) {
            const int n = std::min(interleave, latency_n - done);
            closed_loop(*bare_req, n, true);
            closed_loop(req, n, true);
        }
        bare_lat = bare_req->take_latencies();
        std::sort(bare_lat.begin(), bare_lat.end());
    } else {
        closed_loop(req, latency_n, true);
    }
    auto lat = req.take_latencies();
    if (!latencies_out.empty()) {
        std::FILE* f = std::fopen(latencies_out.c_str(), "w");
        if (f == nullptr) throw Fatal{kUsage, "--latencies-out '" + latencies_out + "': " + std::strerror(errno)};
        for (double v : lat) std::fprintf(f, "%.1f\n", v);
        std::fclose(f);
    }
    std::sort(lat.begin(), lat.end());

    // Throughput phase: at most `window` outstanding.
    // A failure here still reports the latency phase.
    std::vector<double> tl;
    double per_s = 0, elapsed_s = 0;
    std::optional<Fatal> throughput_failed;
    if (throughput_n > 0) {
        auto t0 = Clock::now();
        try {
            for (int i = 0; i < throughput_n; ++i) {
                req.wait_outstanding_at_most(size_t(window) - 1);
                req.send(true);
            }
            req.wait_outstanding_at_most(0);
        } catch (const Fatal& f) {
            throughput_failed = f;
        }
        elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
        tl = req.take_latencies();
        std::sort(tl.begin(), tl.end());
        if (!throughput_failed) per_s = double(tl.size()) / elapsed_s;
    }

    long errors = req.errors() + (bare_req ? bare_req->errors() : 0);
    json out = {
        {"mode", mode},
        {"latency", {{"n", lat.size()}, {"p50_us", pct(lat, 0.50)}, {"p90_us", pct(lat, 0.90)}, {"p99_us", pct(lat, 0.99)},
                     {"max_us", lat.empty() ? 0.0 : lat.back()}}},
        {"throughput", {{"n", tl.size()}, {"window", window}, {"per_s", per_s}, {"p50_us", pct(tl, 0.50)},
                        {"p99_us", pct(tl, 0.99)}, {"elapsed_s", elapsed_s}}},
        {"errors", errors},
        {"payload_bytes", payload_bytes},
        {"tcp_nodelay", nodelay == "on"},
        {"broker", broker},
        {"request_topic", req.request_topic()},
    };
    if (mode == "agent") out["node"] = node;
    if (bare_req)
        out["bare_interleaved"] = {{"n", bare_lat.size()},         {"block", interleave},
                                   {"p50_us", pct(bare_lat, 0.50)}, {"p90_us", pct(bare_lat, 0.90)},
                                   {"p99_us", pct(bare_lat, 0.99)}, {"max_us", bare_lat.empty() ? 0.0 : bare_lat.back()},
                                   {"errors", bare_req->errors()}};
    if (throughput_failed) out["throughput"]["failed"] = throughput_failed->what;
    json d = req.details();
    if (responder && responder->dropped()) d["responder_dropped"] = responder->dropped();
    if (!d.empty()) out["details"] = d;

    FILE* h = as_json ? stderr : stdout;
    std::fprintf(h, "task round trip, mode %s, %s, payload %d B, QoS 1, MQTT 5, TCP_NODELAY %s\n", mode.c_str(),
                 req.request_topic().c_str(), payload_bytes, nodelay.c_str());
    std::fprintf(h, "  latency (closed loop)  n=%-7zu p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  max %8.1f us\n", lat.size(),
                 pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), lat.empty() ? 0.0 : lat.back());
    if (bare_req)
        std::fprintf(h, "  bare, interleaved in blocks of %d  n=%-7zu p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  max %8.1f us\n",
                     interleave, bare_lat.size(), pct(bare_lat, 0.5), pct(bare_lat, 0.9), pct(bare_lat, 0.99),
                     bare_lat.empty() ? 0.0 : bare_lat.back());
    if (throughput_failed)
        std::fprintf(h, "  throughput (window %d) FAILED after %zu answers: %s\n", window, tl.size(), throughput_failed->what.c_str());
    else if (throughput_n > 0)
        std::fprintf(h, "  throughput (window %d) n=%-7zu %9.0f /s   p50 %8.1f us  p99 %8.1f us  (%.2f s)\n", window, tl.size(),
                     per_s, pct(tl, 0.5), pct(tl, 0.99), elapsed_s);
    std::fprintf(h, "  errors %ld\n", errors);
    if (!d.empty()) std::fprintf(h, "  details %s\n", d.dump().c_str());
    if (as_json) std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
    if (throughput_failed) {
        std::fprintf(stderr, "cpn-bench-task-roundtrip: throughput phase: %s\n", throughput_failed->what.c_str());
        std::fflush(stderr);
        std::_Exit(throughput_failed->code);  // the Paho clients still hold outstanding work
    }
    return errors > 0 ? kErrors : kOk;
}

}  // namespace

int main(int argc, char** argv) {
    // As cpn-agent does: without TZ, glibc's localtime() (which Paho C calls for every packet)
    // stats /etc/localtime each time; both modes, and the agent, run without that cost.
    ::setenv("TZ", ":/etc/localtime", 0);
    try {
        return run(argc, argv);
    } catch (const Fatal& f) {
        std::fprintf(stderr, "cpn-bench-task-roundtrip: %s\n", f.what.c_str());
        std::fflush(stderr);
        // The Paho clients may still hold outstanding work: leave without unwinding them.
        std::_Exit(f.code);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cpn-bench-task-roundtrip: %s\n", e.what());
        return 1;
    }
}
