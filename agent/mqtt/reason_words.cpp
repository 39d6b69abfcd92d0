#include "mqtt/reason_words.hpp"

#include <cstring>
#include <mutex>

#include <MQTTAsync.h>
#include <mqtt/exception.h>

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

}  // namespace

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
std::string describe_exception(const ::mqtt::exception& e, bool mqtt5) {
    std::string s = e.what();
    if (const char* w = connack_words(e.get_return_code(), mqtt5)) s += std::string(": the broker refused: ") + w;
    else if (const char* w2 = connack_words(e.get_reason_code(), true)) s += std::string(": the broker refused: ") + w2;
    return s;
}

}  // namespace cpn::mqtt
