// mqtt_session.hpp: one MQTT connection to the brain's broker (Paho MQTT C++), with its
// exceptions converted to Status at this edge. It does not reconnect by itself: the daemon owns
// reconnection, because every connect needs a new session counter in the Will and a new birth.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace mqtt {
class async_client;
}

namespace cpn::mqtt {

struct TlsSettings {
    std::string ca_file, cert_file, key_file;
    bool verify = true;
};

struct SessionSettings {
    std::vector<std::string> uris;  // tried in order (fail-over)
    std::string client_id;
    bool mqtt5 = true;
    int keepalive_s = 30;
    int connect_timeout_s = 10;
    std::string username, password;
    TlsSettings tls;
};

struct OutgoingMessage {
    OutgoingMessage() = default;
    OutgoingMessage(std::string t, std::string p, int q = 1, bool r = false, std::string c = {})
        : topic(std::move(t)), payload(std::move(p)), qos(q), retained(r), correlation(std::move(c)) {}
    std::string topic, payload;
    int qos = 1;
    bool retained = false;
    std::string correlation;  // MQTT 5 Correlation Data property ("" = none; ignored on 3.1.1)
};

/* A message from the broker, with the MQTT 5 request/response properties ("" when absent or on
 * 3.1.1). */
struct IncomingMessage {
    std::string topic, payload;
    std::string response_topic, correlation;
};

class Session {
public:
    using MessageHandler = std::function<void(IncomingMessage m)>;
    using LostHandler = std::function<void(const std::string& cause)>;
    /* Called once per publish when the broker acknowledged it (ok) or it failed; tag is the
     * caller's (an outbox id). Runs on a Paho thread. */
    using DeliveryHandler = std::function<void(int64_t tag, bool ok)>;

    explicit Session(SessionSettings settings);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void on_message(MessageHandler h);
    void on_connection_lost(LostHandler h);
    void on_delivery(DeliveryHandler h);
    /* Called (on a Paho thread) when a connect attempt finished, either way; the caller then
     * reads the outcome with wait_connected(0). Saves polling. */
    void on_connect_done(std::function<void()> h);

    /* Starts connecting with `will` as the Will message; returns at once. wait_connected() then
     * polls. The returned Status is an error when the attempt could not even start. */
    Status start_connect(const OutgoingMessage& will);
    /* Waits up to timeout_ms for the attempt started by start_connect. Returns ok when connected,
     * unavailable with the reason when it failed ("not authorized", the TLS verification error),
     * or deadline_exceeded when it is still in progress. */
    Status wait_connected(int timeout_ms);

    bool connected() const;
    /* The broker URI of the live connection ("" when none). */
    std::string server_uri() const;

    /* Publishes and waits for the broker's acknowledgement (QoS 1) or timeout_ms. */
    Status publish_sync(const OutgoingMessage& m, int timeout_ms);
    /* Publishes without waiting; the delivery handler gets `tag` back. */
    Status publish_async(const OutgoingMessage& m, int64_t tag);
    Status subscribe(const std::string& topic, int qos, int timeout_ms);
    /* Disconnects cleanly (no Will) within timeout_ms. */
    void disconnect(int timeout_ms);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/* Reads a secret (password, key) file after checking nobody but its owner can read it. The error
 * names the file and says how to fix it. */
Result<std::string> read_secret_file(const std::string& path, const std::string& what);
/* Only checks the permissions (for key files Paho reads itself). */
Status check_private_file(const std::string& path, const std::string& what);

}  // namespace cpn::mqtt
