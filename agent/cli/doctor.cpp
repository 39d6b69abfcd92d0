#include "cli/doctor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <regex>
#include <thread>

#include <MQTTAsync.h>
#include <mqtt/async_client.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/paths.hpp"
#include "inventory/discovery.hpp"
#include "inventory/render.hpp"
#include "mqtt/mqtt_session.hpp"
#include "mqtt/reason_words.hpp"
#include "plugin/plugin_library.hpp"

namespace cpn::doctor {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> g_abandoned{false};

std::string current_user() {
    const uid_t uid = ::geteuid();
    // getpwuid_r: the broker and plugin checks run on other threads at the same time.
    std::vector<char> buf(16384);
    passwd pw{}, *res = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res != nullptr && res->pw_name != nullptr)
        return res->pw_name;
    return "uid " + std::to_string(uid);
}

std::string owner_name(uid_t uid) {
    std::vector<char> buf(16384);
    passwd pw{}, *res = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res != nullptr && res->pw_name != nullptr)
        return res->pw_name;
    return "uid " + std::to_string(uid);
}

std::string mode_text(mode_t m) {
    char s[8];
    std::snprintf(s, sizeof s, "%04o", static_cast<unsigned>(m & 07777));
    return s;
}

std::string errno_text(int err) { return std::strerror(err); }

void add_problem(std::string& to, const std::string& what) { to += (to.empty() ? "" : "; ") + what; }

/* A Status about a secret file, less the "<what> <path>" the finding's subject already says and
 * the remedy its fix line gives. */
std::string secret_message(const Status& s, const std::string& what, const std::string& path) {
    std::string m = s.message();
    const std::string head = what + " " + path;
    if (m.rfind(head, 0) == 0) {
        m = m.substr(head.size());
        if (m.rfind(": ", 0) == 0) m = m.substr(2);
        else if (m.rfind(" ", 0) == 0) m = m.substr(1);
    }
    if (auto cut = m.find("; refusing to use it"); cut != std::string::npos)
        m = m.substr(0, cut) + "; the agent refuses to use it";
    return m.empty() ? s.message() : m;
}

std::string days_text(long long d) { return std::to_string(d) + (d == 1 ? " day" : " days"); }

std::string join(const std::vector<std::string>& v, const std::string& sep) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
    return s;
}

bool contains(const std::string& hay, const char* needle) { return hay.find(needle) != std::string::npos; }

std::string lower(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

bool is_tls_scheme(const std::string& scheme) { return scheme == "ssl" || scheme == "mqtts" || scheme == "wss"; }

bool any_tls_uri(const Config& c) {
    for (const std::string& u : c.broker.uris)
        if (auto a = parse_broker_uri(u); a && a->tls) return true;
    return false;
}

// --- OpenSSL helpers ---------------------------------------------------------------------------

struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
    void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct AsnTimeFree {
    void operator()(ASN1_TIME* t) const { ASN1_TIME_free(t); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

/* Why a file cannot be opened, in words, with the remedy. */
struct OpenError {
    std::string message, fix;
};

OpenError open_error(int err, const std::string& what, const std::string& path, bool secret) {
    const std::string user = current_user();
    if (err == ENOENT || err == ENOTDIR)
        return {"no such file", "correct " + what + " in the configuration, or put the file there"};
    if (err == EACCES)
        return {"cannot be read by " + user + " (" + errno_text(err) + ")",
                secret ? "make the agent's user its owner, keeping it private: chown " + user + " " + path +
                             " && chmod 600 " + path
                       : "make it readable (a certificate is public): chmod 644 " + path +
                             ", and check that " + user + " may enter its directories (namei -l " + path + ")"};
    if (err == EISDIR) return {"is a directory", "point " + what + " at the file itself"};
    return {"cannot be read: " + errno_text(err), "check the file and its directories"};
}

std::unique_ptr<BIO, BioFree> open_bio(const std::string& path, int& err) {
    // BIO_new_file would open a directory without complaint; stat first so the error is clear.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        err = errno;
        return nullptr;
    }
    if (S_ISDIR(st.st_mode)) {
        err = EISDIR;
        return nullptr;
    }
    errno = 0;
    std::unique_ptr<BIO, BioFree> b(BIO_new_file(path.c_str(), "r"));
    if (!b) err = errno != 0 ? errno : EACCES;
    ERR_clear_error();
    return b;
}

std::vector<X509Ptr> read_certificates(BIO* b) {
    std::vector<X509Ptr> out;
    while (out.size() < 10000) {
        X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
        if (x == nullptr) break;
        out.emplace_back(x);
    }
    ERR_clear_error();  // the end of the file reads as "no start line"
    return out;
}

std::string subject_of(X509* x) {
    char buf[512];
    if (X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf) == nullptr) return "(no subject)";
    return buf;
}

std::string date_of(const ASN1_TIME* t) {
    std::tm tm{};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "(unreadable date)";
    char s[64];
    std::strftime(s, sizeof s, "%Y-%m-%d %H:%M UTC", &tm);
    return s;
}

/* Seconds from `now` to `t` (negative: in the past); false when the time cannot be read. */
bool seconds_until(const ASN1_TIME* t, std::time_t now, long long& out) {
    std::unique_ptr<ASN1_TIME, AsnTimeFree> n(ASN1_TIME_set(nullptr, now));
    int days = 0, secs = 0;
    if (!n || t == nullptr || ASN1_TIME_diff(&days, &secs, n.get(), t) != 1) return false;
    out = static_cast<long long>(days) * 86400 + secs;
    return true;
}

struct Validity {
    enum Kind { ok, soon, expired, not_yet, unreadable } kind = ok;
    long long days_left = 0;
    std::string not_before, not_after;
};

Validity validity(X509* x, std::time_t now, int warn_days) {
    Validity v;
    v.not_before = date_of(X509_get0_notBefore(x));
    v.not_after = date_of(X509_get0_notAfter(x));
    long long to_start = 0, to_end = 0;
    if (!seconds_until(X509_get0_notBefore(x), now, to_start) || !seconds_until(X509_get0_notAfter(x), now, to_end)) {
        v.kind = Validity::unreadable;
        return v;
    }
    v.days_left = to_end / 86400;
    if (to_start > 0) v.kind = Validity::not_yet;
    else if (to_end <= 0) v.kind = Validity::expired;
    else if (to_end < static_cast<long long>(warn_days) * 86400) v.kind = Validity::soon;
    return v;
}

/* The private key in a PEM file; `encrypted` is set when it asked for a passphrase. */
int no_passphrase(char*, int, int, void* u) {
    *static_cast<bool*>(u) = true;
    return -1;
}

PkeyPtr read_private_key(BIO* b, bool& encrypted) {
    encrypted = false;
    PkeyPtr k(PEM_read_bio_PrivateKey(b, nullptr, no_passphrase, &encrypted));
    ERR_clear_error();
    return k;
}

const char* key_type(EVP_PKEY* k) {
    switch (EVP_PKEY_base_id(k)) {
        case EVP_PKEY_RSA: return "an RSA key";
        case EVP_PKEY_EC: return "an EC key";
        case EVP_PKEY_ED25519: return "an Ed25519 key";
        case EVP_PKEY_ED448: return "an Ed448 key";
        default: return "a private key";
    }
}

// --- network helpers ---------------------------------------------------------------------------

struct Resolved {
    bool done = false;
    int gai = 0;
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
};

/* getaddrinfo on a detached thread: the resolver has no timeout of its own an operator can
 * count on (resolv.conf's attempts x timeout per server). */
Resolved resolve(const std::string& host, int port, int timeout_ms) {
    struct Shared {
        std::mutex mu;
        std::condition_variable cv;
        Resolved r;
    };
    auto sh = std::make_shared<Shared>();
    auto work = [sh, host, port] {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        Resolved r;
        r.gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
        for (addrinfo* a = res; r.gai == 0 && a != nullptr && r.addrs.size() < 16; a = a->ai_next) {
            sockaddr_storage ss{};
            std::memcpy(&ss, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof ss));
            r.addrs.push_back(ss);
            r.lens.push_back(a->ai_addrlen);
        }
        if (res != nullptr) ::freeaddrinfo(res);
        r.done = true;
        std::lock_guard<std::mutex> g(sh->mu);
        sh->r = std::move(r);
        sh->cv.notify_all();
    };
    try {
        std::thread(work).detach();
    } catch (const std::system_error&) {
        work();
    }
    std::unique_lock<std::mutex> l(sh->mu);
    sh->cv.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return sh->r.done; });
    return sh->r;  // a copy: done == false when it did not finish
}

std::string address_text(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET)
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET6)
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
    return buf;
}

struct TcpResult {
    bool ok = false;
    bool timed_out = false;
    int err = 0;
    double ms = 0;
};

TcpResult tcp_connect(const sockaddr_storage& ss, socklen_t len, int timeout_ms) {
    TcpResult r;
    const auto t0 = Clock::now();
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r.err = errno;
        return r;
    }
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len);
    if (rc != 0 && errno != EINPROGRESS) {
        r.err = errno;
    } else if (rc != 0) {
        pollfd p{fd, POLLOUT, 0};
        int n;
        do {
            const int left = timeout_ms - static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                               Clock::now() - t0)
                                                               .count());
            n = left > 0 ? ::poll(&p, 1, left) : 0;
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            r.timed_out = true;
        } else if (n < 0) {
            r.err = errno;
        } else {
            int so = 0;
            socklen_t sl = sizeof so;
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0) so = errno;
            r.err = so;
            r.ok = so == 0;
        }
    } else {
        r.ok = true;
    }
    ::close(fd);
    r.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return r;
}

struct MqttResult {
    bool ok = false;
    bool timed_out = false;
    std::string words;  // Paho's failure, with the broker's refusal in words
    std::string tls;    // the TLS alert or socket error Paho's trace carried
    bool session_present = false;
};

MqttResult mqtt_connect(const Config& c, const std::string& uri, bool tls, const std::string& client_id,
                        const std::string& password) {
    MqttResult r;
    const bool v5 = c.broker.protocol == "5";
    try {
        cpn::mqtt::install_trace_once();
        ::mqtt::create_options copts(v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
        // No persistence and no Will: the check leaves nothing behind on the broker, and a
        // check that dies publishes nothing on the node's topics.
        ::mqtt::async_client cli(uri, client_id, copts, static_cast<::mqtt::iclient_persistence*>(nullptr));
        auto b = ::mqtt::connect_options_builder();
        if (v5) b.mqtt_version(MQTTVERSION_5).clean_start(true);
        else b.mqtt_version(MQTTVERSION_3_1_1).clean_session(true);
        b.keep_alive_interval(std::chrono::seconds(c.broker.keepalive_s))
            .connect_timeout(std::chrono::seconds(c.broker.connect_timeout_s))
            .automatic_reconnect(false);
        if (!c.broker.username.empty()) b.user_name(c.broker.username);
        if (!password.empty()) b.password(password);
        if (tls) {
            // The same TLS settings as the agent's session (mqtt_session.cpp).
            const auto& t = c.broker.tls;
            auto sb = ::mqtt::ssl_options_builder();
            if (!t.ca_file.empty()) sb.trust_store(t.ca_file);
            else sb.ca_path("/etc/ssl/certs");
            if (!t.cert_file.empty()) sb.key_store(t.cert_file);
            if (!t.key_file.empty()) sb.private_key(t.key_file);
            sb.enable_server_cert_auth(t.verify).verify(t.verify);
            b.ssl(sb.finalize());
        }
        (void)cpn::mqtt::take_tls_error();
        auto tok = cli.connect(b.finalize());
        if (!tok->wait_for(std::chrono::seconds(c.broker.connect_timeout_s + 2))) {
            r.timed_out = true;
            r.tls = cpn::mqtt::take_tls_error();
            try {
                cli.disconnect(0);
            } catch (...) {
            }
            return r;
        }
        r.session_present = tok->get_connect_response().is_session_present();
        r.ok = true;
        try {
            cli.disconnect(std::chrono::milliseconds(1000))->wait_for(std::chrono::milliseconds(1500));
        } catch (...) {
        }
    } catch (const ::mqtt::exception& e) {
        r.words = cpn::mqtt::describe_exception(e, v5);
        r.tls = cpn::mqtt::take_tls_error();
    } catch (const std::exception& e) {
        r.words = e.what();
        r.tls = cpn::mqtt::take_tls_error();
    }
    return r;
}

/* The remedy for a refused or failed MQTT connect. */
std::string mqtt_fix(const Config& c, const BrokerAddress& a, const MqttResult& m) {
    const std::string w = lower(m.words), t = lower(m.tls);
    const std::string user = c.broker.username;
    if (contains(w, "bad user name or password")) {
        if (user.empty())
            return "the broker requires a user name and password: set broker.username and put the password in "
                   "broker.password_file";
        return "the broker rejected user '" + user + "' with the password in " +
               (c.broker.password_file.empty() ? std::string("(no broker.password_file set)")
                                               : c.broker.password_file) +
               ": check both against the broker's accounts (mosquitto: mosquitto_passwd)";
    }
    if (contains(w, "not authorized")) {
        if (user.empty())
            return "the broker does not accept anonymous clients: set broker.username and broker.password_file";
        // Mosquitto answers a wrong password with "not authorized" too.
        return "the broker does not let user '" + user + "' connect: check the password in " +
               (c.broker.password_file.empty() ? std::string("broker.password_file (not set)")
                                               : c.broker.password_file) +
               " against the broker's account (mosquitto: mosquitto_passwd), and its ACL and client-id rules (the "
               "agent connects as '" + c.node.id + "', the check as '" + c.node.id + "-check-<pid>')";
    }
    if (contains(w, "protocol version"))
        return "the broker does not speak MQTT " + c.broker.protocol + ": set broker.protocol to " +
               (c.broker.protocol == "5" ? "3.1.1" : "5") + ", or upgrade the broker";
    if (contains(w, "client identifier"))
        return "the broker refuses the client id: check its client-id rules (the agent connects as '" + c.node.id + "')";
    if (contains(w, "the broker refused"))
        return "see the broker's log for why it refused the connection";
    if (!t.empty()) {
        const bool peer_alert = contains(t, "alert read");  // the broker ended the handshake
        if (contains(t, "certificate required") || (peer_alert && contains(t, "handshake failure") &&
                                                     c.broker.tls.cert_file.empty()))
            return "the broker requires a client certificate: set broker.tls.cert_file and broker.tls.key_file";
        if (peer_alert && (contains(t, "unknown ca") || contains(t, "bad certificate") ||
                           contains(t, "certificate unknown") || contains(t, "unsupported certificate") ||
                           contains(t, "certificate expired") || contains(t, "decrypt error")))
            return "the broker does not accept the client certificate " + c.broker.tls.cert_file +
                   ": it must be issued by a CA the broker trusts (its cafile), be valid, and match broker.tls.key_file";
        if (contains(t, "verify") || contains(t, "certificate") || contains(t, "unknown ca"))
            return "set broker.tls.ca_file to the CA that signed the broker's certificate, and make sure that "
                   "certificate names '" + a.host + "' (its subjectAltName) and has not expired (check with: "
                   "openssl s_client -connect " + a.host + ":" + std::to_string(a.port) +
                   (c.broker.tls.ca_file.empty() ? std::string() : " -CAfile " + c.broker.tls.ca_file) +
                   " -verify_hostname " + a.host + ")";
        return "check that port " + std::to_string(a.port) + " is the broker's TLS listener and that both sides "
               "share a TLS version and cipher";
    }
    if (a.tls && m.timed_out)
        return "nothing answered the TLS handshake and CONNECT: check that port " + std::to_string(a.port) +
               " is the broker's TLS listener (not a plain one, or another service), or raise "
               "broker.connect_timeout_s for a slow link";
    if (!a.tls)
        return "the port answered TCP but not MQTT: if the broker listens with TLS on port " +
               std::to_string(a.port) + ", use ssl://" + a.host + ":" + std::to_string(a.port) +
               "; else check that it is the broker's MQTT port (and the broker's log)";
    return "check the broker's log for why it closed the connection";
}

std::string tcp_fix(const BrokerAddress& a, const TcpResult& t) {
    const std::string hp = a.host + " " + std::to_string(a.port);
    if (t.timed_out)
        return "nothing answered: the host is down, or a firewall drops the traffic; check the route and that port " +
               std::to_string(a.port) + "/tcp is open from this node to " + a.host + " (nc -vz " + hp + ")";
    if (t.err == ECONNREFUSED)
        return "nothing listens on " + a.host + ":" + std::to_string(a.port) +
               ": start the broker (systemctl status mosquitto), or correct the port in broker.uris";
    if (t.err == EHOSTUNREACH || t.err == ENETUNREACH)
        return "this node has no route to " + a.host + ": check its network configuration and routes (ip route get " +
               a.host + ")";
    return "check the network between this node and " + a.host + " (nc -vz " + hp + ")";
}

std::string tcp_words(const TcpResult& t, int timeout_s) {
    if (t.timed_out) return "timed out after " + std::to_string(timeout_s) + " s";
    if (t.err == ECONNREFUSED) return "connection refused";
    if (t.err == EHOSTUNREACH) return "no route to host";
    if (t.err == ENETUNREACH) return "network unreachable";
    return errno_text(t.err);
}

Finding check_one_broker(const Config& c, const std::string& uri, const Credentials& creds,
                         const std::string& client_id) {
    Finding f{"broker", uri, Level::fail, "", ""};
    std::optional<BrokerAddress> a = parse_broker_uri(uri);
    if (!a) {
        f.message = "not a broker URI (scheme://host[:port], the port 1 to 65535)";
        f.fix = "write it as scheme://host[:port] with scheme tcp, ssl, mqtt, mqtts, ws or wss";
        return f;
    }
    const int timeout_s = c.broker.connect_timeout_s;

    // 1. Name resolution.
    const auto tr = Clock::now();
    Resolved res = resolve(a->host, a->port, timeout_s * 1000);
    if (!res.done) {
        f.message = "name resolution of '" + a->host + "' did not finish within " + std::to_string(timeout_s) + " s";
        f.fix = "the DNS server does not answer: check /etc/resolv.conf and that this node reaches its DNS server";
        return f;
    }
    if (res.gai != 0 || res.addrs.empty()) {
        if (res.gai == EAI_NONAME
#ifdef EAI_NODATA
            || res.gai == EAI_NODATA
#endif
            || res.gai == 0) {
            f.message = "no such host: '" + a->host + "' is not known to DNS or /etc/hosts";
            f.fix = "check the host name in broker.uris; 'getent hosts " + a->host + "' must print its address";
        } else if (res.gai == EAI_AGAIN) {
            f.message = "name resolution of '" + a->host + "' failed for now: " + ::gai_strerror(res.gai);
            f.fix = "the DNS server did not answer: check /etc/resolv.conf and the network path to it";
        } else {
            f.message = "cannot resolve '" + a->host + "': " + std::string(::gai_strerror(res.gai));
            f.fix = "check the host name in broker.uris and the node's resolver (/etc/nsswitch.conf, /etc/resolv.conf)";
        }
        return f;
    }
    const double resolve_ms = std::chrono::duration<double, std::milli>(Clock::now() - tr).count();

    // 2. TCP, each address in turn within the connect timeout, as a client would.
    const auto tc = Clock::now();
    std::vector<std::string> failures;
    TcpResult first_failure;
    bool have_failure = false;
    std::string connected_addr;
    TcpResult tcp;
    for (size_t i = 0; i < res.addrs.size(); ++i) {
        const int left = timeout_s * 1000 -
                         static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - tc).count());
        TcpResult t = left > 0 ? tcp_connect(res.addrs[i], res.lens[i], left) : TcpResult{false, true, 0, 0};
        if (t.ok) {
            connected_addr = address_text(res.addrs[i]);
            tcp = t;
            break;
        }
        failures.push_back(address_text(res.addrs[i]) + " port " + std::to_string(a->port) + ": " +
                           tcp_words(t, timeout_s));
        if (!have_failure) first_failure = t;
        have_failure = true;
    }
    if (connected_addr.empty()) {
        f.message = "cannot connect: " + join(failures, "; ");
        f.fix = tcp_fix(*a, first_failure);
        return f;
    }
    char timing[192];
    std::snprintf(timing, sizeof timing, "resolved in %.0f ms, TCP to %s in %.1f ms", resolve_ms,
                  connected_addr.c_str(), tcp.ms);

    // 3. MQTT, as the agent would connect (protocol, credentials, TLS), under its own client id.
    if (std::string why = creds.unusable(a->tls); !why.empty()) {
        f.level = Level::warn;
        f.message = std::string(timing) + "; MQTT connect not tried: " + why;
        f.fix = "fix the secrets reported above, then run 'cpn-agent check' again";
        return f;
    }
    const std::string proto = "MQTT " + c.broker.protocol;
    MqttResult m = mqtt_connect(c, uri, a->tls, client_id, creds.password);
    if (m.ok) {
        f.level = Level::ok;
        std::string how = "client id '" + client_id + "'";
        if (!c.broker.username.empty()) how += ", user '" + c.broker.username + "'";
        if (a->tls) how += c.broker.tls.verify ? ", TLS with the broker's certificate verified" : ", TLS unverified";
        f.message = std::string(timing) + "; " + proto + " connect accepted (" + how + "); disconnected";
        return f;
    }
    if (m.timed_out) {
        f.message = std::string(timing) + "; " + proto + ": no answer to CONNECT within " +
                    std::to_string(timeout_s + 2) + " s" + (m.tls.empty() ? "" : " (TLS: " + m.tls + ")");
        f.fix = mqtt_fix(c, *a, m);
        return f;
    }
    f.message = std::string(timing) + "; " + proto + " connect failed: " + m.words;
    const std::string w = lower(m.words);
    if (contains(w, "bad user name or password") || contains(w, "not authorized"))
        f.message += c.broker.username.empty()
                         ? " (no credentials were sent: broker.username is empty)"
                         : " (bad credentials for user '" + c.broker.username +
                               "', or an ACL that refuses this client)";
    if (!m.tls.empty()) {
        f.message += "; TLS: " + m.tls;
        const std::string t = lower(m.tls);
        if (contains(t, "alert write")) f.message += " (this node rejected the broker's certificate)";
        else if (contains(t, "alert read")) f.message += " (the broker ended the TLS handshake)";
    }
    f.fix = mqtt_fix(c, *a, m);
    return f;
}

/* The Debian package that provides a runtime library a plugin needs, by its soname. */
struct RuntimePackage {
    const char* soname_prefix;
    const char* install;
};
const RuntimePackage kRuntimePackages[] = {
    {"libOpenCL.so", "install the OpenCL loader and a driver (ICD) for the device: apt install ocl-icd-libopencl1 "
                     "plus mesa-opencl-icd, intel-opencl-icd, pocl-opencl-icd or the vendor's ICD"},
    {"libcuda.so", "install the NVIDIA driver (libcuda1, from Debian's non-free section, or NVIDIA's packages)"},
    {"libnvidia-ml.so", "install NVML with the NVIDIA driver (libnvidia-ml1, from Debian's non-free section)"},
    {"libze_loader.so", "install the oneAPI Level Zero loader and the device's driver: apt install libze1, plus "
                        "Intel's compute runtime (intel-level-zero-gpu) for the GPU or NPU"},
    {"libxrt", "install the Xilinx Runtime: apt install libxrt1 (or AMD/Xilinx's xrt package), plus the card's "
               "platform/shell packages"},
};

/* The package that ships a backend's plugin; "" for a name no cpn-agent package uses. */
std::string package_of(const std::string& backend) {
    if (backend == "cpu") return "cpn-agent";
    if (backend == "xrt") return "cpn-agent-backend-fpga";
    if (backend == "opencl" || backend == "cuda" || backend == "levelzero") return "cpn-agent-backend-" + backend;
    return "";
}

}  // namespace

// --- findings ----------------------------------------------------------------------------------

const char* level_name(Level l) {
    switch (l) {
        case Level::ok: return "ok";
        case Level::warn: return "warn";
        case Level::fail: return "fail";
    }
    return "fail";
}

std::string render_text(const std::vector<Finding>& findings) {
    std::string s;
    int ok = 0, warn = 0, fail = 0;
    for (const Finding& f : findings) {
        const char* tag = f.level == Level::ok ? "[ OK ] " : f.level == Level::warn ? "[WARN] " : "[FAIL] ";
        (f.level == Level::ok ? ok : f.level == Level::warn ? warn : fail)++;
        s += tag + f.check + (f.subject.empty() ? "" : " " + f.subject) + ": " + f.message + "\n";
        if (f.level != Level::ok && !f.fix.empty()) s += "       fix: " + f.fix + "\n";
    }
    s += std::to_string(ok) + " ok, " + std::to_string(warn) + (warn == 1 ? " warning, " : " warnings, ") +
         std::to_string(fail) + (fail == 1 ? " failure\n" : " failures\n");
    return s;
}

nlohmann::ordered_json to_json(const std::vector<Finding>& findings) {
    nlohmann::ordered_json a = nlohmann::ordered_json::array();
    for (const Finding& f : findings)
        a.push_back({{"check", f.check},
                     {"subject", f.subject},
                     {"status", level_name(f.level)},
                     {"message", f.message},
                     {"fix", f.fix.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(f.fix)}});
    return a;
}

// --- configuration -----------------------------------------------------------------------------

ConfigOutcome check_configuration(const std::string& path, bool explicit_path) {
    ConfigOutcome out;
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    const bool directory = fs::is_directory(path, ec);
    Result<Config> loaded = load_config(path, explicit_path);
    if (loaded.ok()) {
        out.config = loaded.value();
        if (!exists) {
            out.findings.push_back(
                {"configuration", "(built-in defaults)", Level::warn,
                 path + " does not exist: the built-in defaults are used (broker " + join(out.config.broker.uris, ", ") +
                     ", state_dir " + out.config.state_dir + ")",
                 "install the configuration (the cpn-agent package puts one at " + path +
                     "), or name one with --config FILE"});
        } else {
            out.findings.push_back({"configuration", path, Level::ok, "loaded and valid", ""});
        }
        finalise_config(out.config);
        return out;
    }

    // Invalid: every problem as the loader words it, and which sections they are in, so the
    // checks that do not read those sections can still run.
    const Status& st = loaded.status();
    std::string fix = "correct " + path + " at the line and column shown (the keys, their types and ranges: "
                      "config/agent.yaml, man cpn-agent.yaml)";
    if (st.code() == Code::not_found) fix = "check the path given to --config (ls -l " + path + ")";
    else if (st.code() == Code::permission_denied)
        fix = "make it readable by " + current_user() + " (it holds no secrets: chmod 644 " + path + ")";
    else if (directory)
        fix = "name the configuration file itself with --config (e.g. " + path + "/agent.yaml)";
    size_t start = 0;
    const std::string& msg = st.message();
    while (start <= msg.size()) {
        size_t nl = msg.find('\n', start);
        std::string line = msg.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (!line.empty()) out.findings.push_back({"configuration", path, Level::fail, line, fix});
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
    if (out.findings.empty()) out.findings.push_back({"configuration", path, Level::fail, "cannot be loaded", fix});

    out.bad_sections = {"(file)"};
    if (st.code() == Code::invalid_argument && exists && !directory) {
        std::string text = read_text_file(path, (1u << 20) + 1);
        if (text.size() <= (1u << 20)) {
            ConfigReport rep = check_config(text, path);
            if (!rep.errors.empty()) {
                out.bad_sections.clear();
                for (const std::string& s : rep.sections)
                    if (std::find(out.bad_sections.begin(), out.bad_sections.end(), s) == out.bad_sections.end())
                        out.bad_sections.push_back(s);
                out.config = rep.config;
            }
        }
    }
    finalise_config(out.config);
    return out;
}

std::string blocked_by(const ConfigOutcome& cfg, std::initializer_list<const char*> sections) {
    std::vector<std::string> hit;
    for (const std::string& s : cfg.bad_sections) {
        if (s == "(file)" || s == "(top level)") return "not checked: the configuration cannot be used";
        for (const char* want : sections)
            if (s == want && std::find(hit.begin(), hit.end(), s) == hit.end()) hit.push_back(s);
    }
    if (hit.empty()) return "";
    return "not checked: the configuration has errors in " + join(hit, ", ");
}

Finding skipped(const std::string& check, const std::string& why) {
    return {check, "", Level::warn, why, "fix the configuration errors above, then run 'cpn-agent check' again"};
}

// --- state directory ---------------------------------------------------------------------------

std::vector<Finding> check_state_dir(const Config& c) {
    const std::string dir = c.state_dir;
    const std::string user = current_user();
    std::vector<Finding> out;
    auto add = [&](Level l, std::string m, std::string fix) {
        out.push_back({"state_dir", dir, l, std::move(m), std::move(fix)});
    };
    const std::string create_fix = "create it for the agent's user: sudo install -d -m 750 -o " + user + " " + dir;

    // A directory the system shares: the agent would mix its files into it, and the remedies
    // below (chmod 750, chown -R) would damage the system.
    std::string norm = fs::path(dir).lexically_normal().string();
    while (norm.size() > 1 && norm.back() == '/') norm.pop_back();
    static const char* kShared[] = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                                    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
                                    "/usr/lib", "/usr/local", "/var", "/var/lib", "/var/tmp"};
    for (const char* shared : kShared) {
        if (norm == shared) {
            add(Level::fail, "is a system directory, not one of the agent's own",
                "set state_dir to a directory of its own, e.g. /var/lib/cpn-agent");
            return out;
        }
    }

    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        const int err = errno;
        if (err != ENOENT) {
            add(Level::fail, "cannot be examined: " + errno_text(err),
                "check the path and the permissions of its parents (namei -l " + dir + ")");
            return out;
        }
        // The agent creates it at start: possible when the nearest existing parent is writable.
        fs::path p = fs::path(dir).parent_path();
        std::error_code ec;
        while (!p.empty() && p != p.root_path() && !fs::exists(p, ec)) p = p.parent_path();
        if (p.empty()) p = "/";
        if (::access(p.c_str(), W_OK | X_OK) == 0)
            add(Level::ok, "does not exist yet; the agent creates it at start (" + p.string() + " is writable by " +
                               user + ")", "");
        else
            add(Level::fail, "does not exist, and " + user + " cannot create it: " + p.string() + " is not writable",
                create_fix);
        return out;
    }
    if (!S_ISDIR(st.st_mode)) {
        add(Level::fail, "exists but is not a directory",
            "move it away, or set state_dir to a directory of its own");
        return out;
    }

    // Writable: a file is created and removed, which also catches read-only mounts and ACLs.
    std::string probe = dir + "/.cpn-check-XXXXXX";
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) {
        const int err = errno;
        std::string fix = "give it to the agent's user: sudo chown -R " + user + " " + dir + " && sudo chmod 750 " + dir;
        if (err == EROFS) fix = "its file system is mounted read-only: remount it read-write, or set state_dir to a "
                                "writable file system";
        else if (err == ENOSPC || err == EDQUOT) fix = "free space (or inodes) on its file system, or move state_dir";
        add(Level::fail, "not writable by " + user + ": " + errno_text(err) + " (owner " + owner_name(st.st_uid) +
                             ", mode " + mode_text(st.st_mode) + ")",
            fix);
    } else {
        ::close(fd);
        ::unlink(probe.c_str());
    }

    if (st.st_mode & S_IWOTH)
        add(Level::fail, "writable by every user (mode " + mode_text(st.st_mode) +
                             "): anyone can replace the task journal and the session counter",
            "chmod 750 " + dir);
    else if (st.st_mode & (S_IROTH | S_IXOTH))
        add(Level::warn, "open to every user (mode " + mode_text(st.st_mode) +
                             "): task inputs, results and the journal are readable by all",
            "chmod 750 " + dir);

    // Files the agent must update, left behind by a run as another user (often root).
    std::vector<std::string> stuck;
    size_t n_stuck = 0, seen = 0;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end && seen < 4096; it.increment(ec), ++seen) {
        const std::string p = it->path().string();
        if (::access(p.c_str(), W_OK) == 0) continue;
        struct stat fst {};
        std::string who = ::lstat(p.c_str(), &fst) == 0 ? owner_name(fst.st_uid) : "?";
        if (++n_stuck <= 5) stuck.push_back(it->path().filename().string() + " (owner " + who + ")");
    }
    if (n_stuck > 0)
        add(Level::fail,
            std::to_string(n_stuck) + " entr" + (n_stuck == 1 ? "y" : "ies") + " not writable by " + user + ": " +
                join(stuck, ", ") + (n_stuck > stuck.size() ? ", ..." : "") +
                "; the agent cannot update them (was it run once as another user?)",
            "sudo chown -R " + user + " " + dir);

    // Room: the store alone may grow to store.max_bytes; results and the journal need more.
    struct statvfs vs {};
    std::string space;
    if (::statvfs(dir.c_str(), &vs) == 0) {
        const double avail = static_cast<double>(vs.f_bavail) * static_cast<double>(vs.f_frsize);
        const double need = std::max<double>(256.0 * 1024 * 1024, 2.0 * static_cast<double>(c.store.max_bytes));
        space = human_bytes(avail) + " free";
        if (avail < need)
            add(Level::warn, "only " + human_bytes(avail) + " free on its file system; the store alone may grow to " +
                                 human_bytes(static_cast<double>(c.store.max_bytes)) +
                                 " (store.max_bytes), and task results and the journal need room too (want " +
                                 human_bytes(need) + ")",
                "free space on that file system, lower store.max_bytes, or move state_dir to a larger one");
        else if (vs.f_files > 0 && vs.f_favail < 1000)
            add(Level::warn, "only " + std::to_string(vs.f_favail) + " free inodes on its file system",
                "remove files on that file system, or move state_dir");
    }
    if (out.empty())
        add(Level::ok, "writable by " + user + ", owner " + owner_name(st.st_uid) + ", mode " + mode_text(st.st_mode) +
                           (space.empty() ? "" : ", " + space),
            "");
    return out;
}

// --- secrets and certificates ------------------------------------------------------------------

std::vector<Finding> check_certificate_file(const std::string& path, const std::string& what, bool ca,
                                            std::time_t now, int warn_days) {
    std::vector<Finding> out;
    const std::string subject = what + " " + path;
    int err = 0;
    auto bio = open_bio(path, err);
    if (!bio) {
        OpenError oe = open_error(err, what, path, false);
        out.push_back({"secrets", subject, Level::fail, oe.message, oe.fix});
        return out;
    }
    std::vector<X509Ptr> certs = read_certificates(bio.get());
    if (certs.empty()) {
        out.push_back({"secrets", subject, Level::fail, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                       "point " + what + " at the PEM file; a DER file converts with: openssl x509 -inform der -in " +
                           path + " -out " + path + ".pem"});
        return out;
    }
    const std::string renew = ca ? "replace " + path + " with the CA's current certificate"
                                 : "renew the client certificate (from the fleet's CA) and replace " + path;

    if (!ca) {
        X509* leaf = certs.front().get();
        Validity v = validity(leaf, now, warn_days);
        const std::string who = subject_of(leaf);
        switch (v.kind) {
            case Validity::unreadable:
                out.push_back({"secrets", subject, Level::fail, who + ": its validity dates cannot be read", renew});
                break;
            case Validity::not_yet:
                out.push_back({"secrets", subject, Level::fail,
                               who + " is not valid before " + v.not_before + ": is this node's clock right?",
                               "set the clock (timedatectl; enable NTP), or use a certificate valid now"});
                break;
            case Validity::expired:
                out.push_back({"secrets", subject, Level::fail, who + " expired on " + v.not_after, renew});
                break;
            case Validity::soon:
                out.push_back({"secrets", subject, Level::warn,
                               who + " expires on " + v.not_after + " (in " + days_text(v.days_left) + ")",
                               renew + " before then"});
                break;
            case Validity::ok:
                out.push_back({"secrets", subject, Level::ok, who + ", valid until " + v.not_after, ""});
                break;
        }
        return out;
    }

    // A CA bundle: an expired certificate among valid ones does not stop verification.
    size_t expired = 0, not_yet = 0, soon = 0, any_ca = 0;
    std::string first_expired, first_soon, first_not_yet, leaf_subject;
    long long soon_days = 0;
    for (const X509Ptr& x : certs) {
        Validity v = validity(x.get(), now, warn_days);
        if (v.kind == Validity::expired || v.kind == Validity::unreadable) {
            if (expired++ == 0) first_expired = subject_of(x.get()) + " (expired " + v.not_after + ")";
        } else if (v.kind == Validity::not_yet) {
            if (not_yet++ == 0) first_not_yet = subject_of(x.get()) + " (valid from " + v.not_before + ")";
        } else if (v.kind == Validity::soon) {
            if (soon++ == 0) {
                first_soon = subject_of(x.get()) + " expires on " + v.not_after;
                soon_days = v.days_left;
            }
        }
        // A self-signed certificate can be its own trust anchor; a leaf issued by someone else
        // cannot (the usual mistake: the broker's certificate where its CA belongs).
        if (X509_check_ca(x.get()) > 0 || X509_check_issued(x.get(), x.get()) == X509_V_OK) ++any_ca;
        else if (leaf_subject.empty()) leaf_subject = subject_of(x.get());
    }
    ERR_clear_error();
    const size_t n = certs.size();
    const std::string count = std::to_string(n) + " certificate" + (n == 1 ? "" : "s");
    if (expired + not_yet == n) {
        out.push_back({"secrets", subject, Level::fail,
                       n == 1 ? (expired ? first_expired : first_not_yet + ": is this node's clock right?")
                              : "all " + count + " are outside their validity (" +
                                    (expired ? first_expired : first_not_yet) + ", ...)",
                       not_yet && !expired ? "set the clock (timedatectl; enable NTP)" : renew});
        return out;
    }
    if (any_ca == 0) {
        out.push_back({"secrets", subject, Level::fail,
                       "holds no CA certificate (" + leaf_subject +
                           " is not a CA): it must hold the CA that signed the broker's certificate",
                       "put the issuing CA's certificate in " + path + " (openssl x509 -noout -issuer -in " + path +
                           " names it)"});
        return out;
    }
    if (expired > 0 || not_yet > 0)
        out.push_back({"secrets", subject, Level::warn,
                       std::to_string(expired + not_yet) + " of " + count + " outside their validity: " +
                           (expired ? first_expired : first_not_yet),
                       "remove them from " + path + ", or replace them with current ones"});
    if (soon > 0)
        out.push_back({"secrets", subject, Level::warn,
                       (n == 1 ? first_soon : std::to_string(soon) + " of " + count + " expire within " +
                                                  std::to_string(warn_days) + " days: " + first_soon) +
                           " (in " + days_text(soon_days) + ")",
                       renew + " before then"});
    if (out.empty()) {
        Validity v = validity(certs.front().get(), now, warn_days);
        out.push_back({"secrets", subject, Level::ok,
                       n == 1 ? subject_of(certs.front().get()) + ", valid until " + v.not_after
                              : count + ", all valid now",
                       ""});
    }
    return out;
}

std::vector<Finding> check_secrets(const Config& c, Credentials& creds, std::time_t now, int warn_days) {
    std::vector<Finding> out;
    const auto& t = c.broker.tls;
    const bool tls_uri = any_tls_uri(c);
    const std::string user = current_user();

    auto private_file_fix = [&](const Status& s, const std::string& path) {
        if (s.code() == Code::not_found)
            return "correct the path in the configuration, or create the file (owner-only: install -m 600 -o " + user +
                   " /dev/null " + path + ", then write into it)";
        if (contains(s.message(), "group or others")) return "chmod 600 " + path;
        if (s.code() == Code::invalid_argument) return "write the broker password into " + path + " (one line)";
        return "make the agent's user its owner, keeping it private: chown " + user + " " + path + " && chmod 600 " + path;
    };
    auto mode_of = [](const std::string& path) {
        struct stat st {};
        return ::stat(path.c_str(), &st) == 0 ? mode_text(st.st_mode) : std::string("?");
    };

    // The password: the daemon reads it with read_secret_file and refuses to start without it.
    if (!c.broker.password_file.empty()) {
        const std::string& p = c.broker.password_file;
        const std::string subject = "broker.password_file " + p;
        Result<std::string> pw = cpn::mqtt::read_secret_file(p, "broker.password_file");
        if (pw.ok()) {
            creds.password = pw.value();
            out.push_back({"secrets", subject, Level::ok, "owner-only (mode " + mode_of(p) + "), readable, not empty", ""});
            if (c.broker.username.empty())
                out.push_back({"secrets", "broker.username", Level::warn,
                               "empty, but broker.password_file is set: a password without a user name is refused "
                               "by MQTT 3.1.1 and by most brokers",
                               "set broker.username to the account the password belongs to"});
        } else {
            out.push_back({"secrets", subject, Level::fail, secret_message(pw.status(), "broker.password_file", p),
                           private_file_fix(pw.status(), p)});
            creds.password_problem = "broker.password_file cannot be used";
        }
    }

    // The client key: Paho reads it; the daemon refuses a key others can read.
    PkeyPtr key;
    if (!t.key_file.empty()) {
        const std::string subject = "broker.tls.key_file " + t.key_file;
        Status s = cpn::mqtt::check_private_file(t.key_file, "broker.tls.key_file");
        if (!s.ok()) {
            out.push_back({"secrets", subject, Level::fail, secret_message(s, "broker.tls.key_file", t.key_file),
                           private_file_fix(s, t.key_file)});
            add_problem(creds.tls_problem, "broker.tls.key_file cannot be used");
        } else {
            int err = 0;
            auto bio = open_bio(t.key_file, err);
            if (!bio) {
                OpenError oe = open_error(err, "broker.tls.key_file", t.key_file, true);
                out.push_back({"secrets", subject, Level::fail, oe.message, oe.fix});
                add_problem(creds.tls_problem, "broker.tls.key_file cannot be read");
            } else {
                bool encrypted = false;
                key = read_private_key(bio.get(), encrypted);
                if (!key && encrypted)
                    out.push_back({"secrets", subject, Level::fail,
                                   "the key is encrypted with a passphrase, which the agent has no way to supply",
                                   "store it unencrypted, owner-only: openssl pkey -in " + t.key_file + " -out " +
                                       t.key_file + ".new && chmod 600 " + t.key_file + ".new && mv " + t.key_file +
                                       ".new " + t.key_file});
                else if (!key)
                    out.push_back({"secrets", subject, Level::fail, "holds no PEM private key",
                                   "point broker.tls.key_file at the PEM key (-----BEGIN PRIVATE KEY-----) issued "
                                   "with the client certificate"});
                else
                    out.push_back({"secrets", subject, Level::ok,
                                   std::string("owner-only (mode ") + mode_of(t.key_file) + "), " + key_type(key.get()),
                                   ""});
            }
        }
    }

    // The daemon refuses to start when a CA or certificate file is missing.
    auto missing = [](const std::vector<Finding>& f) {
        return !f.empty() && f.front().level == Level::fail && contains(f.front().message, "no such file");
    };
    if (!t.ca_file.empty()) {
        std::vector<Finding> f = check_certificate_file(t.ca_file, "broker.tls.ca_file", true, now, warn_days);
        if (missing(f)) add_problem(creds.tls_problem, "broker.tls.ca_file is missing");
        out.insert(out.end(), f.begin(), f.end());
    } else if (tls_uri) {
        out.push_back({"secrets", "broker.tls.ca_file", Level::ok,
                       "not set: the broker's certificate is verified against the system trust store (/etc/ssl/certs)",
                       ""});
    }
    if (!t.cert_file.empty()) {
        std::vector<Finding> f = check_certificate_file(t.cert_file, "broker.tls.cert_file", false, now, warn_days);
        if (missing(f)) add_problem(creds.tls_problem, "broker.tls.cert_file is missing");
        out.insert(out.end(), f.begin(), f.end());
        // The key must be the certificate's: else every TLS handshake fails.
        int err = 0;
        auto bio = open_bio(t.cert_file, err);
        std::vector<X509Ptr> certs;
        if (bio) certs = read_certificates(bio.get());
        if (key && !certs.empty()) {
            const bool match = X509_check_private_key(certs.front().get(), key.get()) == 1;
            ERR_clear_error();
            if (match)
                out.push_back({"secrets", "broker.tls.key_file " + t.key_file, Level::ok,
                               "matches the client certificate " + t.cert_file, ""});
            else
                out.push_back({"secrets", "broker.tls.key_file " + t.key_file, Level::fail,
                               "does not belong to the client certificate " + t.cert_file +
                                   " (" + subject_of(certs.front().get()) + ")",
                               "set broker.tls.key_file to the key the certificate was issued for (compare 'openssl "
                               "x509 -noout -pubkey -in " + t.cert_file + "' with 'openssl pkey -pubout -in " +
                                   t.key_file + "')"});
        }
    }

    if (tls_uri && !t.verify)
        out.push_back({"secrets", "broker.tls.verify", Level::warn,
                       "false: the broker's identity is not checked, so anyone on the path can pose as it (lab use only)",
                       "set broker.tls.verify: true, with broker.tls.ca_file the CA of the broker's certificate"});
    if (!tls_uri && (!t.ca_file.empty() || !t.cert_file.empty() || !t.key_file.empty()))
        out.push_back({"secrets", "broker.tls", Level::warn,
                       "TLS files are set, but no broker URI uses TLS (ssl://, mqtts://, wss://): they are not used "
                       "and the connection is not encrypted",
                       "use the broker's TLS listener in broker.uris (e.g. ssl://host:8883), or remove the "
                       "broker.tls files"});
    if (out.empty())
        out.push_back({"secrets", "", Level::ok,
                       "no password file, TLS certificate or key configured (the broker is reached without them)", ""});
    return out;
}

// --- brokers -----------------------------------------------------------------------------------

std::string Credentials::unusable(bool tls) const {
    std::string why = password_problem;
    if (tls && !tls_problem.empty()) add_problem(why, tls_problem);
    return why;
}

std::optional<BrokerAddress> parse_broker_uri(const std::string& uri) {
    static const std::regex re("(tcp|ssl|mqtt|mqtts|ws|wss)://([^/:\\s]+)(:([0-9]{1,5}))?(/.*)?");
    std::smatch m;
    if (!std::regex_match(uri, m, re)) return std::nullopt;
    BrokerAddress a;
    a.scheme = m[1].str();
    a.host = m[2].str();
    a.tls = is_tls_scheme(a.scheme);
    if (m[4].matched) {
        a.port = std::stoi(m[4].str());
        if (a.port < 1 || a.port > 65535) return std::nullopt;
    } else {
        a.port = a.scheme == "ws" ? 80 : a.scheme == "wss" ? 443 : a.tls ? 8883 : 1883;
    }
    return a;
}

std::string check_client_id(const Config& c, long pid) { return c.node.id + "-check-" + std::to_string(pid); }

std::vector<Finding> check_brokers(const Config& c, const Credentials& creds, const std::string& client_id) {
    std::vector<Finding> out;
    // One URI after the other: Paho's TLS error reaches us through one process-wide trace hook.
    for (const std::string& uri : c.broker.uris) out.push_back(check_one_broker(c, uri, creds, client_id));
    if (out.empty())
        out.push_back({"broker", "", Level::fail, "broker.uris is empty", "set broker.uris to the broker's URI"});
    return out;
}

// --- plugins -----------------------------------------------------------------------------------

std::string plugin_fix(const PluginReport& r) {
    const std::string name = r.name.empty() ? "<name>" : r.name;
    const std::string known = package_of(r.name);
    // A plugin no cpn-agent package ships came from elsewhere: dpkg -S says from where.
    const std::string pkg = known.empty() ? "$(dpkg -S " + r.path + " | cut -d: -f1)" : known;
    const std::string disable = "add '" + name + "' to plugins.disable if this node has no such device";
    const std::string reason = r.reason;

    if (contains(reason, "plugins.enable names"))  // discover(): enabled, but no such file
        return known.empty() ? "no cpn-agent package ships a backend named '" + name + "': remove it from plugins.enable"
                             : "install " + known + ", or remove '" + name + "' from plugins.enable";
    if (r.status == "refused" || r.stage == "abi")
        return "the plugin and the agent come from different versions: install matching ones (apt install "
               "--reinstall cpn-agent " + pkg + "), or remove the stale " + r.path;
    if (r.status == "timeout")
        return "its vendor runtime hung while probing (a wedged driver?): check the driver (dmesg, the vendor's "
               "tools); raise discovery.probe_timeout_ms if the runtime is only slow; or " + disable;
    if (contains(reason, "killed by signal"))
        return "its vendor runtime crashed while probing: check the driver installation (dmesg); or " + disable;
    // A runtime library that is not installed: name the package.
    static const std::regex soname("(lib[A-Za-z0-9_+.-]*\\.so[.0-9]*)");
    std::smatch m;
    const bool missing_lib = contains(reason, "cannot open shared object file") || contains(reason, "runtime library missing");
    if (missing_lib && std::regex_search(reason, m, soname)) {
        const std::string lib = m[1].str();
        for (const RuntimePackage& p : kRuntimePackages)
            if (lib.rfind(p.soname_prefix, 0) == 0) return std::string(p.install) + "; or " + disable;
        return "install the package that provides " + lib + " (apt-file search " + lib + "); or " + disable;
    }
    if (contains(reason, "undefined symbol") || contains(reason, "version `"))
        return "the plugin was built against another version of its runtime or of the agent: install matching "
               "versions (apt install --reinstall cpn-agent " + pkg + ")";
    if (r.stage == "symbol")
        return r.path + " is not a cpn-agent backend: remove it (only the libcpn-backend-*.so files of the cpn-agent "
               "packages belong in the plugin directory)";
    if (r.stage == "dlopen")
        return known.empty() ? "the plugin file is damaged or built for another system, and no cpn-agent package "
                               "ships a backend named '" + name + "': remove " + r.path + ", or reinstall the package "
                               "it came from (dpkg -S " + r.path + ")"
                             : "the plugin file is damaged or built for another system: reinstall it (apt install "
                               "--reinstall " + known + "), or remove " + r.path;
    if (r.status == "skipped")
        return "if this node has such a device, install its driver and runtime; otherwise " + disable;
    if (r.status == "ok" && r.device_count == 0)
        return "if this node has such a device, check its driver (dmesg, the vendor's tools); otherwise " + disable;
    return "run 'cpn-agent discover --log-level debug' for the details; or " + disable;
}

Finding plugin_finding(const PluginReport& r) {
    Finding f{"plugins", r.name.empty() ? fs::path(r.path).filename().string() : r.name, Level::ok, "", ""};
    std::string runtime;
    if (!r.runtime_name.empty()) runtime = r.runtime_name + (r.runtime_version.empty() ? "" : " " + r.runtime_version);
    if (!r.driver_version.empty()) runtime += (runtime.empty() ? "driver " : ", driver ") + r.driver_version;
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.0f ms", r.total_ms);
    if (r.status == "ok") {
        f.message = "loaded" + (runtime.empty() ? std::string() : " (" + runtime + ")") + ": " +
                    std::to_string(r.device_count) + " device" + (r.device_count == 1 ? "" : "s") + ", probed in " + ms;
        if (r.device_count == 0) {
            f.level = Level::warn;
            f.message = "loaded" + (runtime.empty() ? std::string() : " (" + runtime + ")") + ", but found no device";
            f.fix = plugin_fix(r);
        }
        return f;
    }
    if (r.status == "skipped" && r.stage == "config") {
        f.message = "not loaded: " + r.reason;
        return f;
    }
    f.level = r.status == "skipped" ? Level::warn : Level::fail;
    f.message = r.status + (r.stage.empty() ? "" : " at " + r.stage) + ": " + (r.reason.empty() ? "no reason given" : r.reason);
    if (!r.path.empty() && r.stage != "config" && !contains(r.reason, r.path.c_str())) f.message += " (" + r.path + ")";
    f.fix = plugin_fix(r);
    return f;
}

std::vector<Finding> check_plugins(const Config& c, const std::string& helper) {
    std::vector<Finding> out;
    DiscoveryOptions opt = discovery_options(c);
    if (!helper.empty()) opt.helper = helper;
    std::error_code ec;
    if (!fs::is_directory(opt.plugin_dir, ec)) {
        out.push_back({"plugins", opt.plugin_dir, Level::fail,
                       fs::exists(opt.plugin_dir, ec) ? "the plugin directory is not a directory"
                                                      : "the plugin directory does not exist: no backend can be loaded",
                       c.plugins.dir.empty()
                           ? "reinstall cpn-agent (it puts the CPU backend there), or set plugins.dir to the "
                             "directory that holds the libcpn-backend-*.so files"
                           : "set plugins.dir to the directory that holds the libcpn-backend-*.so files (or leave it "
                             "empty for the one beside the binary)"});
        return out;
    }
    const std::vector<std::string> files = list_plugin_files(opt.plugin_dir);
    if (files.empty()) {
        out.push_back({"plugins", opt.plugin_dir, Level::warn,
                       "holds no backend plugin (libcpn-backend-*.so): only the host CPU and the PCI bus are scanned",
                       "install cpn-agent (the CPU backend) and the cpn-agent-backend-* packages of this node's "
                       "accelerators"});
    } else {
        out.push_back({"plugins", opt.plugin_dir, Level::ok,
                       std::to_string(files.size()) + " plugin file" + (files.size() == 1 ? "" : "s"), ""});
    }
    // The agent's own discovery: each plugin in an isolated child, within probe_timeout_ms.
    Inventory inv = discover(opt, nullptr);
    for (const PluginReport& r : inv.plugins) {
        if (r.name == "(plugin directory)") continue;  // reported above
        out.push_back(plugin_finding(r));
    }
    return out;
}

// --- misc --------------------------------------------------------------------------------------

Finding check_pci_ids(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        return {"misc", path, Level::ok, "present (devices are named by vendor and model)", ""};
    return {"misc", path, Level::warn,
            "missing: devices are reported by PCI ids (e.g. 10de:2330) instead of vendor and model names",
            "apt install pci.ids"};
}

// --- time boxes --------------------------------------------------------------------------------

struct Boxed::State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::vector<Finding> result;
    std::string error;  // the check threw
};

Boxed::Boxed(std::function<std::vector<Finding>()> fn, std::chrono::milliseconds limit)
    : state_(std::make_shared<State>()), deadline_(Clock::now() + limit) {
    auto work = [st = state_, fn = std::move(fn)] {
        std::vector<Finding> r;
        std::string error;
        try {
            r = fn();
        } catch (const std::exception& e) {
            error = e.what();
        } catch (...) {
            error = "unknown exception";
        }
        std::lock_guard<std::mutex> g(st->mu);
        st->result = std::move(r);
        st->error = std::move(error);
        st->done = true;
        st->cv.notify_all();
    };
    try {
        std::thread(work).detach();
    } catch (const std::system_error&) {
        work();  // no thread to be had: run it here, unboxed rather than not at all
    }
}

std::vector<Finding> Boxed::get(const Finding& on_timeout) {
    std::unique_lock<std::mutex> l(state_->mu);
    if (!state_->cv.wait_until(l, deadline_, [this] { return state_->done; })) {
        g_abandoned = true;
        timed_out_ = true;
        return {on_timeout};
    }
    if (!state_->error.empty())
        return {{on_timeout.check, on_timeout.subject, Level::fail, "the check itself failed: " + state_->error,
                 "run it again with --log-level debug, and report this as a bug with its output"}};
    return std::move(state_->result);
}

bool any_abandoned() { return g_abandoned; }

}  // namespace cpn::doctor
