#include "mqtt/mqtt_session.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include <MQTTAsync.h>
#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include "mqtt/reason_words.hpp"

namespace cpn::mqtt {

namespace {


/* Paho C never sets TCP_NODELAY on its socket, and has no option for it: each small publish then
 * waits for the broker's delayed ACK (about 40 ms on Linux) whenever an earlier segment is
 * unacknowledged, which turns a sub-millisecond request/response into ~44 ms. The agent's only
 * TCP connections are Paho's, so every connected TCP socket of the process gets TCP_NODELAY
 * (idempotent; other descriptors are left alone). */
void set_tcp_nodelay_on_tcp_sockets() {
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return;
    while (dirent* e = ::readdir(d)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == ::dirfd(d)) continue;
        int type = 0;
        socklen_t len = sizeof type;
        if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
        sockaddr_storage addr{};
        socklen_t alen = sizeof addr;
        if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
        if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) continue;
        int one = 1;
        (void)::setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ::closedir(d);
}

class Listener : public ::mqtt::iaction_listener {
public:
    std::function<void(const ::mqtt::token&, bool)> fn;
    void on_success(const ::mqtt::token& t) override { fn(t, true); }
    void on_failure(const ::mqtt::token& t) override { fn(t, false); }
};

}  // namespace

struct Session::Impl {
    SessionSettings s;
    std::unique_ptr<::mqtt::async_client> client;
    ::mqtt::token_ptr connect_token;
    mutable std::mutex mu;
    std::string server;
    MessageHandler on_message;
    LostHandler on_lost;
    DeliveryHandler on_delivery;
    std::function<void()> on_connect_done;
    Listener delivery_listener;
    Listener connect_listener;

    // Flow control: QoS 1 publications in flight are kept below the broker's Receive Maximum.
    // Paho C queues what is above it and sends it only when other traffic wakes its send
    // thread, so a burst could sit unsent for seconds; the session queues instead and sends the
    // next one from each acknowledgement.
    std::mutex fmu;
    std::deque<std::pair<OutgoingMessage, int64_t>> waiting;
    int in_flight = 0;
    int window = 16;

    /* Hands one publication to Paho; false when it refused it. */
    bool send(const OutgoingMessage& m, int64_t tag, std::string* why) {
        try {
            auto msg = ::mqtt::make_message(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retained);
            if (!m.correlation.empty() && s.mqtt5) {
                ::mqtt::properties props;
                props.add(::mqtt::property(::mqtt::property::CORRELATION_DATA, ::mqtt::binary(m.correlation)));
                msg->set_properties(props);
            }
            if (m.qos == 0) client->publish(msg);
            else client->publish(msg, reinterpret_cast<void*>(static_cast<intptr_t>(tag)), delivery_listener);
            return true;
        } catch (const ::mqtt::exception& e) {
            if (why) *why = "publish to " + m.topic + ": " + describe_exception(e);
            return false;
        }
    }

    /* After an acknowledgement (or a failure): sends what waits, as the window allows. Any
     * publication Paho refuses is reported failed to the delivery handler. */
    void drain() {
        for (;;) {
            std::pair<OutgoingMessage, int64_t> next;
            {
                std::lock_guard<std::mutex> g(fmu);
                if (waiting.empty() || in_flight >= window) return;
                next = std::move(waiting.front());
                waiting.pop_front();
                ++in_flight;
            }
            if (!send(next.first, next.second, nullptr)) {
                {
                    std::lock_guard<std::mutex> g(fmu);
                    --in_flight;
                }
                DeliveryHandler h;
                {
                    std::lock_guard<std::mutex> g(mu);
                    h = on_delivery;
                }
                if (h) h(next.second, false);
            }
        }
    }

    /* The connection ended: what waits will not be sent on it. */
    void fail_waiting() {
        std::deque<std::pair<OutgoingMessage, int64_t>> dropped;
        {
            std::lock_guard<std::mutex> g(fmu);
            dropped.swap(waiting);
            in_flight = 0;
        }
        DeliveryHandler h;
        {
            std::lock_guard<std::mutex> g(mu);
            h = on_delivery;
        }
        if (h)
            for (auto& d : dropped) h(d.second, false);
    }
};

Session::Session(SessionSettings settings) : impl_(std::make_unique<Impl>()) {
    install_trace_once();
    impl_->s = std::move(settings);
    ::mqtt::create_options copts(impl_->s.mqtt5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    // Paho C counts every publish waiting for the broker's flow-control window as "buffered",
    // also while connected, and refuses more than max_buffered_messages (default 100). The
    // session's own window (Impl::window) keeps QoS 1 below the broker's Receive Maximum; this
    // is headroom for QoS 0 progress and the synchronous publications.
    copts.set_max_buffered_messages(4096);
    // No Paho persistence: the agent's own outbox is the durable store.
    impl_->client = std::make_unique<::mqtt::async_client>(
        impl_->s.uris.front(), impl_->s.client_id, copts,
        static_cast<::mqtt::iclient_persistence*>(nullptr));
    Impl* im = impl_.get();
    im->client->set_message_callback([im](::mqtt::const_message_ptr m) {
        MessageHandler h;
        {
            std::lock_guard<std::mutex> g(im->mu);
            h = im->on_message;
        }
        if (!h) return;
        IncomingMessage in{m->get_topic(), m->get_payload_str(), {}, {}};
        const ::mqtt::properties& props = m->get_properties();
        if (props.contains(::mqtt::property::RESPONSE_TOPIC))
            in.response_topic = ::mqtt::get<std::string>(props, ::mqtt::property::RESPONSE_TOPIC);
        if (props.contains(::mqtt::property::CORRELATION_DATA))
            in.correlation = ::mqtt::get<::mqtt::binary>(props, ::mqtt::property::CORRELATION_DATA);
        h(std::move(in));
    });
    im->client->set_connection_lost_handler([im](const std::string& cause) {
        LostHandler h;
        {
            std::lock_guard<std::mutex> g(im->mu);
            h = im->on_lost;
            im->server.clear();
        }
        im->fail_waiting();
        if (h) h(cause.empty() ? "connection lost" : cause);
    });
    im->delivery_listener.fn = [im](const ::mqtt::token& t, bool ok) {
        DeliveryHandler h;
        {
            std::lock_guard<std::mutex> g(im->mu);
            h = im->on_delivery;
        }
        {
            std::lock_guard<std::mutex> g(im->fmu);
            if (im->in_flight > 0) --im->in_flight;
        }
        if (h) h(static_cast<int64_t>(reinterpret_cast<intptr_t>(t.get_user_context())), ok);
        im->drain();
    };
    im->connect_listener.fn = [im](const ::mqtt::token&, bool) {
        std::function<void()> h;
        {
            std::lock_guard<std::mutex> g(im->mu);
            h = im->on_connect_done;
        }
        if (h) h();
    };
}

Session::~Session() {
    try {
        if (impl_->client && impl_->client->is_connected()) impl_->client->disconnect(0)->wait_for(500);
    } catch (...) {
    }
}

void Session::on_message(MessageHandler h) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_message = std::move(h);
}
void Session::on_connection_lost(LostHandler h) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_lost = std::move(h);
}
void Session::on_connect_done(std::function<void()> h) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_connect_done = std::move(h);
}
void Session::on_delivery(DeliveryHandler h) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_delivery = std::move(h);
}

Status Session::start_connect(const OutgoingMessage& will) {
    Impl* im = impl_.get();
    try {
        auto b = ::mqtt::connect_options_builder();
        if (im->s.mqtt5) b.mqtt_version(MQTTVERSION_5).clean_start(true);
        else b.mqtt_version(MQTTVERSION_3_1_1).clean_session(true);
        b.keep_alive_interval(std::chrono::seconds(im->s.keepalive_s))
            .connect_timeout(std::chrono::seconds(im->s.connect_timeout_s))
            .automatic_reconnect(false)
            .servers(std::make_shared<::mqtt::string_collection>(im->s.uris))
            .will(::mqtt::message(will.topic, will.payload, will.qos, will.retained));
        if (!im->s.username.empty()) b.user_name(im->s.username);
        if (!im->s.password.empty()) b.password(im->s.password);
        bool tls = false;
        for (const std::string& u : im->s.uris)
            if (u.rfind("ssl://", 0) == 0 || u.rfind("mqtts://", 0) == 0 || u.rfind("wss://", 0) == 0) tls = true;
        if (tls) {
            auto sb = ::mqtt::ssl_options_builder();
            if (!im->s.tls.ca_file.empty()) sb.trust_store(im->s.tls.ca_file);
            else sb.ca_path("/etc/ssl/certs");
            if (!im->s.tls.cert_file.empty()) sb.key_store(im->s.tls.cert_file);
            if (!im->s.tls.key_file.empty()) sb.private_key(im->s.tls.key_file);
            sb.enable_server_cert_auth(im->s.tls.verify).verify(im->s.tls.verify);
            b.ssl(sb.finalize());
        }
        (void)take_tls_error();
        im->connect_token = im->client->connect(b.finalize(), nullptr, im->connect_listener);
        return {};
    } catch (const ::mqtt::exception& e) {
        return {Code::unavailable, "connect: " + describe_exception(e)};
    } catch (const std::exception& e) {
        return {Code::internal, std::string("connect: ") + e.what()};
    }
}

Status Session::wait_connected(int timeout_ms) {
    Impl* im = impl_.get();
    if (!im->connect_token) return {Code::failed_precondition, "no connection attempt in progress"};
    try {
        if (!im->connect_token->wait_for(std::chrono::milliseconds(timeout_ms)))
            return {Code::deadline_exceeded, "connecting"};
        ::mqtt::connect_response r = im->connect_token->get_connect_response();
        {
            // The broker's Receive Maximum (MQTT 5; 65535 when absent), less a few for the
            // synchronous publications (birth, capacity) that bypass the window.
            int receive_max = 65535;
            if (im->s.mqtt5 && r.get_properties().contains(::mqtt::property::RECEIVE_MAXIMUM))
                receive_max = ::mqtt::get<uint16_t>(r.get_properties(), ::mqtt::property::RECEIVE_MAXIMUM);
            if (!im->s.mqtt5) receive_max = 20;  // 3.1.1 has no flow control: mosquitto's default
            std::lock_guard<std::mutex> g(im->fmu);
            im->window = std::clamp(receive_max - 4, 1, 1024);
            im->in_flight = 0;
        }
        set_tcp_nodelay_on_tcp_sockets();
        std::lock_guard<std::mutex> g(im->mu);
        im->server = r.get_server_uri();
        im->connect_token.reset();
        return {};
    } catch (const ::mqtt::exception& e) {
        im->connect_token.reset();
        std::string why = describe_exception(e, im->s.mqtt5);
        std::string tls = take_tls_error();
        if (tls.find("unknown CA") != std::string::npos || tls.find("bad certificate") != std::string::npos ||
            tls.find("certificate") != std::string::npos)
            why += "; TLS certificate verification failed (" + tls +
                   "): is broker.tls.ca_file the CA that signed the broker's certificate, and does the "
                   "certificate name the host in broker.uris?";
        else if (!tls.empty())
            why += "; TLS: " + tls;
        return {Code::unavailable, why};
    }
}

bool Session::connected() const {
    try {
        return impl_->client->is_connected();
    } catch (...) {
        return false;
    }
}

std::string Session::server_uri() const {
    std::lock_guard<std::mutex> g(impl_->mu);
    return impl_->server;
}

Status Session::publish_sync(const OutgoingMessage& m, int timeout_ms) {
    try {
        auto tok = impl_->client->publish(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retained);
        if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)))
            return {Code::deadline_exceeded, "publish to " + m.topic + ": no acknowledgement within " +
                                                 std::to_string(timeout_ms) + " ms"};
        return {};
    } catch (const ::mqtt::exception& e) {
        return {Code::unavailable, "publish to " + m.topic + ": " + describe_exception(e)};
    }
}

Status Session::publish_async(const OutgoingMessage& m, int64_t tag) {
    Impl* im = impl_.get();
    if (!connected()) return {Code::unavailable, "publish to " + m.topic + ": not connected"};
    std::string why;
    if (m.qos == 0) {
        if (!im->send(m, tag, &why)) return {Code::unavailable, why};
        return {};
    }
    {
        std::lock_guard<std::mutex> g(im->fmu);
        if (im->in_flight >= im->window || !im->waiting.empty()) {
            // Sent, in order, as acknowledgements free the window; reported through the
            // delivery handler like any other.
            im->waiting.emplace_back(m, tag);
            return {};
        }
        ++im->in_flight;
    }
    if (!im->send(m, tag, &why)) {
        std::lock_guard<std::mutex> g(im->fmu);
        --im->in_flight;
        return {Code::unavailable, why};
    }
    return {};
}

Status Session::subscribe(const std::string& topic, int qos, int timeout_ms) {
    try {
        auto tok = impl_->client->subscribe(topic, qos);
        if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)))
            return {Code::deadline_exceeded, "subscribe to " + topic + ": no answer"};
        return {};
    } catch (const ::mqtt::exception& e) {
        return {Code::unavailable, "subscribe to " + topic + ": " + describe_exception(e)};
    }
}

void Session::disconnect(int timeout_ms) {
    try {
        if (impl_->client->is_connected())
            impl_->client->disconnect(std::chrono::milliseconds(timeout_ms))->wait_for(std::chrono::milliseconds(timeout_ms));
    } catch (...) {
    }
}

Status check_private_file(const std::string& path, const std::string& what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return {Code::not_found, what + " " + path + ": " + std::strerror(errno)};
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return {Code::permission_denied, what + " " + path + " is readable or writable by group or others (mode " +
                                             mode + "); refusing to use it: run 'chmod 600 " + path + "'"};
    }
    return {};
}

Result<std::string> read_secret_file(const std::string& path, const std::string& what) {
    Status st = check_private_file(path, what);
    if (!st.ok()) return st;
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(Code::permission_denied, what + " " + path + ": cannot be read");
    std::ostringstream s;
    s << in.rdbuf();
    std::string v = s.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();  // editors add one
    if (v.empty()) return Status(Code::invalid_argument, what + " " + path + " is empty");
    return v;
}

}  // namespace cpn::mqtt
