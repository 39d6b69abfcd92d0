// reason_words.hpp: Paho failures in words an operator can act on (the agent's session and
// cpnctl share them).
#pragma once

#include <string>

namespace mqtt {
class exception;
}

namespace cpn::mqtt {

/* The words for a refused CONNECT: MQTT 5 reason codes and MQTT 3.1.1 return codes; nullptr
 * for a code that is not a refusal. */
const char* connack_words(int code, bool mqtt5);
/* e.what(), plus ": the broker refused: <words>" when the broker refused the connection. */
std::string describe_exception(const ::mqtt::exception& e, bool mqtt5 = true);

/* Paho C++ 1.2's per-connection TLS error handler keeps a pointer into options it copies and
 * crashes when OpenSSL reports an error (paho.mqtt.cpp #325); Paho C's global trace stream has
 * no such problem. install_trace_once() hooks it (once per process); take_tls_error() returns,
 * and clears, the last TLS alert or socket error it carried ("" when none). */
void install_trace_once();
std::string take_tls_error();

}  // namespace cpn::mqtt
