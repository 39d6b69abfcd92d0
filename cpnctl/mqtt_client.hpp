// mqtt_client.hpp: the small MQTT client cpnctl needs (Paho MQTT C++): connect to the first of
// the --broker URIs that answers, subscribe, publish with MQTT 5 request/response properties,
// and hand received messages to one consumer thread through a queue.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace mqtt {
class async_client;
}

namespace cpnctl {

struct ConnectSettings {
    std::vector<std::string> uris;
    bool mqtt5 = true;
    std::string client_id;
    std::string username;
    std::string password;
    std::string ca_file, cert_file, key_file;
    int connect_timeout_s = 10;
    bool auto_reconnect = false;  // watch: reconnect (and re-subscribe) after a lost connection
};

struct Incoming {
    enum class Kind { message, lost, reconnected };
    Kind kind = Kind::message;
    std::string topic;
    std::string payload;
    bool retained = false;
    std::string cause;  // lost: why
};

class Client {
public:
    explicit Client(ConnectSettings s);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /* Tries each URI in order; "" when connected, else one line per URI saying why not. */
    std::string connect();
    /* The URI connected to. */
    const std::string& server() const { return server_; }
    /* Subscribes (and remembers the topics, for re-subscribing after a reconnect); "" or why not. */
    std::string subscribe(const std::vector<std::string>& topics, int qos, int timeout_ms);
    /* Publishes and waits for the broker's acknowledgement (QoS 1); with MQTT 5 and a
     * response topic, sets the Response Topic and Correlation Data properties. */
    std::string publish(const std::string& topic, const std::string& payload, int qos, int timeout_ms,
                        const std::string& response_topic = "", const std::string& correlation = "");
    /* The next received message or connection event, waiting at most `wait`. */
    std::optional<Incoming> next(std::chrono::milliseconds wait);
    void disconnect(int timeout_ms = 1000);
    bool mqtt5() const { return s_.mqtt5; }

private:
    void push(Incoming in);

    ConnectSettings s_;
    std::unique_ptr<::mqtt::async_client> client_;
    std::string server_;
    std::vector<std::string> subscribed_;
    int subscribed_qos_ = 1;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Incoming> queue_;
};

}  // namespace cpnctl
