#include "mqtt/mqtt_session.hpp"

#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>

#include <MQTTAsync.h>
#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

namespace cpn::mqtt {

namespace {

/* The last TLS error Paho C reported, from its trace stream. Paho C++ 1.2's per-connection
 * ssl error_handler keeps a pointer into options it copies, and crashes when OpenSSL reports an
 * error (paho.mqtt.cpp #325); the C library's trace callback is global and has no such problem. */
std::mutex g_tls_mu;
std::string g_tls_error;

void trace_callback(enum MQTTASYNC_TRACE_LEVELS, char* message) {
    // Called for every packet at PROTOCOL level: filter on the raw text before allocating.
    if (message == nullptr || std::strstr(message, "SSL") == nullptr) return;
    const char* alert = std::strstr(message, "SSL alert");
    const char* err = std::strstr(message, "SSLSocket error");
    if (alert == nullptr && err == nullptr) return;
    std::string m(alert ? alert : err);
    while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.pop_back();
    std::lock_guard<std::mutex> g(g_tls_mu);
    if (alert != nullptr || g_tls_error.empty()) g_tls_error = m;  // the alert names the cause
}

void install_trace_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        MQTTAsync_setTraceCallback(trace_callback);
        // PROTOCOL is the quietest level that still carries TLS alerts ("unknown CA").
        MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_PROTOCOL);
    });
}

std::string take_tls_error() {
    std::lock_guard<std::mutex> g(g_tls_mu);
    std::string e = std::move(g_tls_error);
    g_tls_error.clear();
    return e;
}

/* The words for a refused CONNECT: MQTT 5 reason codes and MQTT 3.1.1 return codes. */
const char* connack_words(int code, bool mqtt5) {
    if (!mqtt5) {
        switch (code) {
            case 1: return "unacceptable protocol version";
            case 2: return "client identifier rejected";
            case 3: return "server unavailable";
            case 4: return "bad user name or password";
            case 5: return "not authorized";
            default: return nullptr;
        }
    }
    switch (code) {
        case 128: return "unspecified error";
        case 129: return "malformed packet";
        case 130: return "protocol error";
        case 131: return "implementation specific error";
        case 132: return "unsupported protocol version";
        case 133: return "client identifier not valid";
        case 134: return "bad user name or password";
        case 135: return "not authorized";
        case 136: return "server unavailable";
        case 137: return "server busy";
        case 138: return "banned";
        case 140: return "bad authentication method";
        case 149: return "packet too large";
        case 151: return "quota exceeded";
        case 156: return "use another server";
        case 157: return "server moved";
        case 159: return "connection rate exceeded";
        default: return nullptr;
    }
}

/* Turns a Paho failure into words an operator can act on. */
std::string describe(const ::mqtt::exception& e, bool mqtt5 = true) {
    std::string s = e.what();
    if (const char* w = connack_words(e.get_return_code(), mqtt5)) s += std::string(": the broker refused: ") + w;
    else if (const char* w2 = connack_words(e.get_reason_code(), true)) s += std::string(": the broker refused: ") + w2;
    return s;
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
};

Session::Session(SessionSettings settings) : impl_(std::make_unique<Impl>()) {
    install_trace_once();
    impl_->s = std::move(settings);
    ::mqtt::create_options copts(impl_->s.mqtt5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
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
        if (h) h(cause.empty() ? "connection lost" : cause);
    });
    im->delivery_listener.fn = [im](const ::mqtt::token& t, bool ok) {
        DeliveryHandler h;
        {
            std::lock_guard<std::mutex> g(im->mu);
            h = im->on_delivery;
        }
        if (h) h(static_cast<int64_t>(reinterpret_cast<intptr_t>(t.get_user_context())), ok);
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
        return {Code::unavailable, "connect: " + describe(e)};
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
        std::lock_guard<std::mutex> g(im->mu);
        im->server = r.get_server_uri();
        im->connect_token.reset();
        return {};
    } catch (const ::mqtt::exception& e) {
        im->connect_token.reset();
        std::string why = describe(e, im->s.mqtt5);
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
        return {Code::unavailable, "publish to " + m.topic + ": " + describe(e)};
    }
}

Status Session::publish_async(const OutgoingMessage& m, int64_t tag) {
    try {
        auto msg = ::mqtt::make_message(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retained);
        if (!m.correlation.empty() && impl_->s.mqtt5) {
            ::mqtt::properties props;
            props.add(::mqtt::property(::mqtt::property::CORRELATION_DATA, ::mqtt::binary(m.correlation)));
            msg->set_properties(props);
        }
        impl_->client->publish(msg, reinterpret_cast<void*>(static_cast<intptr_t>(tag)),
                               impl_->delivery_listener);
        return {};
    } catch (const ::mqtt::exception& e) {
        return {Code::unavailable, "publish to " + m.topic + ": " + describe(e)};
    }
}

Status Session::subscribe(const std::string& topic, int qos, int timeout_ms) {
    try {
        auto tok = impl_->client->subscribe(topic, qos);
        if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)))
            return {Code::deadline_exceeded, "subscribe to " + topic + ": no answer"};
        return {};
    } catch (const ::mqtt::exception& e) {
        return {Code::unavailable, "subscribe to " + topic + ": " + describe(e)};
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
