// mqtt_client.cpp: see mqtt_client.hpp.
#include "mqtt_client.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include <MQTTAsync.h>
#include <mqtt/async_client.h>

#include "mqtt/reason_words.hpp"

namespace cpnctl {

namespace {

using cpn::mqtt::take_tls_error;

std::string describe(const ::mqtt::exception& e, bool mqtt5) {
    std::string s = cpn::mqtt::describe_exception(e, mqtt5);
    if (s.find(": the broker refused: ") != std::string::npos) return s;
    if (e.get_return_code() == MQTTASYNC_FAILURE)
        return s + " (nothing accepted the connection: is a broker running there, and is the URI right?)";
    return s;
}

bool is_tls_uri(const std::string& u) {
    return u.rfind("ssl://", 0) == 0 || u.rfind("mqtts://", 0) == 0 || u.rfind("wss://", 0) == 0;
}

}  // namespace

Client::Client(ConnectSettings s) : s_(std::move(s)) {
    cpn::mqtt::install_trace_once();
    ::mqtt::create_options copts(s_.mqtt5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
    client_ = std::make_unique<::mqtt::async_client>(s_.uris.front(), s_.client_id, copts,
                                                     static_cast<::mqtt::iclient_persistence*>(nullptr));
    client_->set_message_callback([this](::mqtt::const_message_ptr m) {
        Incoming in;
        in.topic = m->get_topic();
        in.payload = m->get_payload_str();
        in.retained = m->is_retained();
        push(std::move(in));
    });
    client_->set_connection_lost_handler([this](const std::string& cause) {
        Incoming in;
        in.kind = Incoming::Kind::lost;
        in.cause = cause.empty() ? "connection lost" : cause;
        push(std::move(in));
    });
}

Client::~Client() {
    try {
        disconnect(500);
    } catch (...) {
    }
}

void Client::push(Incoming in) {
    {
        std::lock_guard<std::mutex> g(mu_);
        queue_.push_back(std::move(in));
    }
    cv_.notify_one();
}

std::string Client::connect() {
    std::string failures;
    for (const std::string& uri : s_.uris) {
        try {
            auto b = ::mqtt::connect_options_builder();
            if (s_.mqtt5) b.mqtt_version(MQTTVERSION_5).clean_start(true);
            else b.mqtt_version(MQTTVERSION_3_1_1).clean_session(true);
            b.keep_alive_interval(std::chrono::seconds(30))
                .connect_timeout(std::chrono::seconds(s_.connect_timeout_s))
                .servers(std::make_shared<::mqtt::string_collection>(std::vector<std::string>{uri}));
            if (s_.auto_reconnect) b.automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
            if (!s_.username.empty()) b.user_name(s_.username);
            if (!s_.password.empty()) b.password(s_.password);
            if (is_tls_uri(uri)) {
                auto sb = ::mqtt::ssl_options_builder();
                if (!s_.ca_file.empty()) sb.trust_store(s_.ca_file);
                else sb.ca_path("/etc/ssl/certs");
                if (!s_.cert_file.empty()) sb.key_store(s_.cert_file);
                if (!s_.key_file.empty()) sb.private_key(s_.key_file);
                sb.enable_server_cert_auth(true).verify(true);
                b.ssl(sb.finalize());
            }
            (void)take_tls_error();
            auto tok = client_->connect(b.finalize());
            if (!tok->wait_for(std::chrono::seconds(s_.connect_timeout_s + 2))) {
                failures += "\n  " + uri + ": no answer within " + std::to_string(s_.connect_timeout_s) + " s";
                try {
                    client_->disconnect(0);
                } catch (...) {
                }
                continue;
            }
            server_ = uri;
            if (s_.auto_reconnect) {
                client_->set_connected_handler([this](const std::string&) {
                    Incoming in;
                    in.kind = Incoming::Kind::reconnected;
                    push(std::move(in));
                });
            }
            return "";
        } catch (const ::mqtt::exception& e) {
            std::string why = describe(e, s_.mqtt5);
            const std::string tls = take_tls_error();
            if (!tls.empty())
                why += "; TLS: " + tls +
                       (tls.find("certificate") != std::string::npos || tls.find("unknown CA") != std::string::npos
                            ? " (is --ca-file the CA that signed the broker's certificate, and does it name the "
                              "host in the URI?)"
                            : "");
            failures += "\n  " + uri + ": " + why;
        } catch (const std::exception& e) {
            failures += "\n  " + uri + ": " + e.what();
        }
    }
    return "cannot connect to the broker:" + failures;
}

std::string Client::subscribe(const std::vector<std::string>& topics, int qos, int timeout_ms) {
    for (const std::string& t : topics) {
        try {
            auto tok = client_->subscribe(t, qos);
            if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)))
                return "subscribe to " + t + ": the broker did not answer within " + std::to_string(timeout_ms) +
                       " ms";
            const auto codes = tok->get_subscribe_response().get_reason_codes();
            for (auto c : codes)
                if (static_cast<int>(c) >= 0x80)
                    return "subscribe to " + t + ": the broker refused it (reason code " +
                           std::to_string(static_cast<int>(c)) + "; not authorized by its ACL?)";
        } catch (const ::mqtt::exception& e) {
            return "subscribe to " + t + ": " + describe(e, s_.mqtt5) +
                   " (the broker refused it; not authorized by its ACL?)";
        }
        if (std::find(subscribed_.begin(), subscribed_.end(), t) == subscribed_.end()) subscribed_.push_back(t);
    }
    subscribed_qos_ = qos;
    return "";
}

std::string Client::publish(const std::string& topic, const std::string& payload, int qos, int timeout_ms,
                            const std::string& response_topic, const std::string& correlation) {
    try {
        auto msg = ::mqtt::make_message(topic, payload.data(), payload.size(), qos, false);
        if (s_.mqtt5 && !response_topic.empty()) {
            ::mqtt::properties props;
            props.add(::mqtt::property(::mqtt::property::RESPONSE_TOPIC, response_topic));
            props.add(::mqtt::property(::mqtt::property::CORRELATION_DATA, correlation));
            msg->set_properties(props);
        }
        auto tok = client_->publish(msg);
        if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)))
            return "publish to " + topic + ": the broker did not acknowledge it within " +
                   std::to_string(timeout_ms) + " ms";
        return "";
    } catch (const ::mqtt::exception& e) {
        return "publish to " + topic + ": " + describe(e, s_.mqtt5);
    }
}

std::optional<Incoming> Client::next(std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, wait, [this] { return !queue_.empty(); })) return std::nullopt;
    Incoming in = std::move(queue_.front());
    queue_.pop_front();
    if (in.kind == Incoming::Kind::reconnected && !subscribed_.empty()) {
        // Clean start: the broker forgot our subscriptions; renew them (not from Paho's thread).
        const std::vector<std::string> topics = subscribed_;
        const int qos = subscribed_qos_;
        l.unlock();
        std::string err = subscribe(topics, qos, 5000);
        if (!err.empty()) in.cause = err;
    }
    return in;
}

void Client::disconnect(int timeout_ms) {
    try {
        if (client_ && client_->is_connected())
            client_->disconnect(std::chrono::milliseconds(timeout_ms))->wait_for(std::chrono::milliseconds(timeout_ms));
    } catch (...) {
    }
}

}  // namespace cpnctl
