// The durable outbox: round trip, caps, persisted counters, and what survives kill -9, a torn or
// truncated WAL and a corrupt file.
#include "store/outbox.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace cpn {
namespace {

using test::TempDir;

std::unique_ptr<Outbox> open_store(const std::string& path, OutboxLimits limits = {}) {
    Result<std::unique_ptr<Outbox>> r = Outbox::open(path, limits);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? std::move(r).value() : nullptr;
}

std::vector<OutboxMessage> all(Outbox& ob) {
    Result<std::vector<OutboxMessage>> r = ob.peek(1000000);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r.value() : std::vector<OutboxMessage>{};
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> files_starting_with(const std::string& dir, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) == 0) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

// A telemetry payload of exactly `size` bytes that starts with its number.
std::string numbered(int n, size_t size) {
    std::string s = std::to_string(n) + ":";
    s.resize(size, 'x');
    return s;
}

int number_of(const std::string& payload) { return std::stoi(payload.substr(0, payload.find(':'))); }

/* A forked child that reports int64 values through a pipe, for the kill -9 tests. The child
 * runs `body` (which must only use the store and write(2)) and _exits: no gtest, no atexit. */
struct Reporter {
    pid_t pid = -1;
    int fd = -1;
    bool eof = false;

    template <typename Body>
    static Reporter start(Body body) {
        Reporter r;
        int p[2];
        if (::pipe(p) != 0) return r;
        r.pid = ::fork();
        if (r.pid == 0) {
            ::close(p[0]);
            int code = body(p[1]);
            ::_exit(code);
        }
        ::close(p[1]);
        r.fd = p[0];
        return r;
    }
    /* Reads one reported value; false at EOF or after timeout_ms without one. */
    bool read(int64_t& v, int timeout_ms = 10000) {
        size_t have = 0;
        char* b = reinterpret_cast<char*>(&v);
        while (have < sizeof v) {
            pollfd pfd{fd, POLLIN, 0};
            if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
            ssize_t n = ::read(fd, b + have, sizeof v - have);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                eof = true;
                return false;
            }
            have += static_cast<size_t>(n);
        }
        return true;
    }
    /* SIGKILL, reap; returns the wait status. */
    int kill() {
        ::kill(pid, SIGKILL);
        int st = 0;
        ::waitpid(pid, &st, 0);
        return st;
    }
    ~Reporter() {
        if (fd >= 0) ::close(fd);
    }
};

bool report(int fd, int64_t v) { return ::write(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v); }

TEST(Outbox, RoundTripKeepsBytesAndOrder) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    EXPECT_EQ(ob->count(), 0u);

    const std::string binary("a\0b\xff\0\x01z", 7);
    Result<int64_t> a = ob->append("telemetry", "cpn/v1/n1/telemetry", "{\"seq\":1}", 1, 1000);
    Result<int64_t> b = ob->append("ack", "cpn/v1/n1/cmd/ack", binary, 0, 1001);
    Result<int64_t> c = ob->append("telemetry", "cpn/v1/n1/telemetry", "", 2, 1002);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_LT(a.value(), b.value());
    EXPECT_LT(b.value(), c.value());
    EXPECT_EQ(ob->count(), 3u);
    EXPECT_EQ(ob->bytes(), std::string("cpn/v1/n1/telemetry{\"seq\":1}").size() +
                               std::string("cpn/v1/n1/cmd/ack").size() + binary.size() +
                               std::string("cpn/v1/n1/telemetry").size());

    std::vector<OutboxMessage> got = all(*ob);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].id, a.value());
    EXPECT_EQ(got[0].kind, "telemetry");
    EXPECT_EQ(got[0].topic, "cpn/v1/n1/telemetry");
    EXPECT_EQ(got[0].payload, "{\"seq\":1}");
    EXPECT_EQ(got[0].qos, 1);
    EXPECT_EQ(got[0].created_ms, 1000);
    EXPECT_EQ(got[1].kind, "ack");
    EXPECT_EQ(got[1].payload, binary);
    EXPECT_EQ(got[1].payload.size(), 7u);
    EXPECT_EQ(got[1].qos, 0);
    EXPECT_EQ(got[2].payload, "");
    EXPECT_EQ(got[2].qos, 2);

    // max_count and after_id page through in id order.
    Result<std::vector<OutboxMessage>> first = ob->peek(1);
    ASSERT_TRUE(first.ok());
    ASSERT_EQ(first->size(), 1u);
    EXPECT_EQ((*first)[0].id, a.value());
    Result<std::vector<OutboxMessage>> rest = ob->peek(10, a.value());
    ASSERT_TRUE(rest.ok());
    ASSERT_EQ(rest->size(), 2u);
    EXPECT_EQ((*rest)[0].id, b.value());
    EXPECT_EQ((*rest)[1].id, c.value());
    ASSERT_TRUE(ob->peek(0).ok());
    EXPECT_TRUE(ob->peek(0)->empty());

    // Removing is idempotent, and unknown ids are fine.
    EXPECT_TRUE(ob->remove(b.value()).ok());
    EXPECT_TRUE(ob->remove(b.value()).ok());
    EXPECT_TRUE(ob->remove(987654).ok());
    EXPECT_EQ(ob->count(), 2u);
    got = all(*ob);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].id, a.value());
    EXPECT_EQ(got[1].id, c.value());
    uint64_t bytes = ob->bytes();

    // All of it is still there after a reopen, with the same totals.
    ob.reset();
    ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->count(), 2u);
    EXPECT_EQ(ob->bytes(), bytes);
    got = all(*ob);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].payload, "{\"seq\":1}");
}

// remove() commits without fsync and must leave every other commit FULL (the level is set by
// running the pragma fresh: a prepared PRAGMA synchronous stepped again can change nothing).
TEST(Outbox, RemoveLeavesTheStoreFullySynchronous) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->synchronous_mode(), 2);
    for (int i = 0; i < 3; ++i) {
        Result<int64_t> id = ob->append("ack", "cpn/v1/n1/ack", "{}", 1, 1000 + i);
        ASSERT_TRUE(id.ok());
        ASSERT_TRUE(ob->remove(id.value()).ok());
        EXPECT_EQ(ob->synchronous_mode(), 2) << "after remove #" << i + 1;
    }
    EXPECT_EQ(ob->count(), 0u);
}

TEST(Outbox, IdsAreNeverReused) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    Result<int64_t> a = ob->append("ack", "t", "1", 1, 1);
    Result<int64_t> b = ob->append("ack", "t", "2", 1, 2);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(ob->remove(b.value()).ok());
    ASSERT_TRUE(ob->remove(a.value()).ok());
    ob.reset();
    ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    Result<int64_t> c = ob->append("ack", "t", "3", 1, 3);
    ASSERT_TRUE(c.ok());
    EXPECT_GT(c.value(), b.value());
}

TEST(Outbox, RejectsBadArguments) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->append("", "t", "p", 1, 1).status().code(), Code::invalid_argument);
    EXPECT_EQ(ob->append("ack", "", "p", 1, 1).status().code(), Code::invalid_argument);
    EXPECT_EQ(ob->append("ack", "t", "p", 3, 1).status().code(), Code::invalid_argument);
    EXPECT_EQ(ob->next_sequence("").status().code(), Code::invalid_argument);
    EXPECT_EQ(ob->count(), 0u);
}

TEST(Outbox, ByteCapDropsOldestTelemetryAndCountsIt) {
    TempDir dir;
    const std::string topic = "cpn/v1/n1/telemetry";  // 19 bytes
    const size_t each = topic.size() + 1000;
    OutboxLimits limits{static_cast<int64_t>(10 * each), 0};
    auto ob = open_store(dir.file("outbox.db"), limits);
    ASSERT_NE(ob, nullptr);
    for (int i = 0; i < 25; ++i) ASSERT_TRUE(ob->append("telemetry", topic, numbered(i, 1000), 1, 1000 + i).ok());

    EXPECT_EQ(ob->count(), 10u);
    EXPECT_EQ(ob->bytes(), 10 * each);
    EXPECT_FALSE(ob->over_cap());
    std::vector<OutboxMessage> got = all(*ob);
    ASSERT_EQ(got.size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(number_of(got[i].payload), 15 + i);  // the newest kept
    EXPECT_EQ(ob->dropped_total(), 15u);
    EXPECT_EQ(ob->take_dropped_since_report(), 15u);
    EXPECT_EQ(ob->take_dropped_since_report(), 0u);

    // A drop not yet reported survives a restart; the total too.
    ASSERT_TRUE(ob->append("telemetry", topic, numbered(25, 1000), 1, 2000).ok());
    EXPECT_EQ(ob->dropped_total(), 16u);
    ob.reset();
    ob = open_store(dir.file("outbox.db"), limits);
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->count(), 10u);
    EXPECT_EQ(ob->bytes(), 10 * each);
    EXPECT_EQ(ob->dropped_total(), 16u);
    EXPECT_EQ(ob->take_dropped_since_report(), 1u);
    EXPECT_EQ(ob->take_dropped_since_report(), 0u);
    ob.reset();
    ob = open_store(dir.file("outbox.db"), limits);
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->take_dropped_since_report(), 0u);  // the reset was persisted too
    EXPECT_EQ(ob->dropped_total(), 16u);
}

TEST(Outbox, NonTelemetryIsNeverDropped) {
    TempDir dir;
    const std::string topic = "t";
    const size_t each = topic.size() + 999;
    OutboxLimits limits{static_cast<int64_t>(5 * each), 0};
    auto ob = open_store(dir.file("outbox.db"), limits);
    ASSERT_NE(ob, nullptr);
    // t0 a1 t2 a3 t4 a5 t6 a7 t8 a9: over the cap of 5 messages; only telemetry goes.
    for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(ob->append(i % 2 == 0 ? "telemetry" : "ack", topic, numbered(i, 999), 1, i).ok());
    std::vector<OutboxMessage> got = all(*ob);
    std::vector<int> numbers;
    for (const OutboxMessage& m : got) numbers.push_back(number_of(m.payload));
    // a9 pushed it over the cap once more and t8, the newest telemetry, was the only one left.
    EXPECT_EQ(numbers, (std::vector<int>{1, 3, 5, 7, 9})) << "acks kept, telemetry dropped oldest first";
    EXPECT_EQ(ob->dropped_total(), 5u);
    EXPECT_EQ(ob->bytes(), 5 * each);
    EXPECT_FALSE(ob->over_cap());

    // Acks alone beyond the cap: everything droppable goes, every ack stays.
    for (int i = 10; i < 20; ++i) ASSERT_TRUE(ob->append("ack", topic, numbered(i, 999), 1, i).ok());
    got = all(*ob);
    for (const OutboxMessage& m : got) EXPECT_EQ(m.kind, "ack") << number_of(m.payload);
    EXPECT_EQ(got.size(), 15u);  // a1 a3 a5 a7 a9 and a10..a19
    EXPECT_GT(ob->bytes(), static_cast<uint64_t>(limits.max_bytes));
    EXPECT_TRUE(ob->over_cap());
    // Telemetry appended now is dropped at once (counted), and the acks are untouched.
    uint64_t before = ob->dropped_total();
    ASSERT_TRUE(ob->append("telemetry", topic, numbered(99, 999), 1, 99).ok());
    EXPECT_EQ(ob->dropped_total(), before + 1);
    EXPECT_EQ(ob->count(), 15u);
    // Delivering acks brings it back under the cap.
    got = all(*ob);
    for (size_t i = 0; i < 11; ++i) ASSERT_TRUE(ob->remove(got[i].id).ok());
    EXPECT_FALSE(ob->over_cap());
    EXPECT_EQ(ob->count(), 4u);
}

TEST(Outbox, AgeCapDropsOldTelemetryOnly) {
    TempDir dir;
    OutboxLimits limits{0, 60};
    auto ob = open_store(dir.file("outbox.db"), limits);
    ASSERT_NE(ob, nullptr);
    const int64_t t0 = 1'700'000'000'000;
    ASSERT_TRUE(ob->append("telemetry", "t", "old", 1, t0).ok());
    ASSERT_TRUE(ob->append("ack", "t", "old-ack", 1, t0).ok());
    ASSERT_TRUE(ob->append("telemetry", "t", "mid", 1, t0 + 30'000).ok());
    EXPECT_EQ(ob->count(), 3u);
    // 70 s after the first: it is older than 60 s relative to the newest message.
    ASSERT_TRUE(ob->append("telemetry", "t", "new", 1, t0 + 70'000).ok());
    std::vector<OutboxMessage> got = all(*ob);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].payload, "old-ack");
    EXPECT_EQ(got[1].payload, "mid");
    EXPECT_EQ(got[2].payload, "new");
    EXPECT_EQ(ob->dropped_total(), 1u);

    // A reload with a shorter age applies at once, relative to the newest message.
    ob->set_limits(OutboxLimits{0, 10});
    got = all(*ob);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].payload, "old-ack");
    EXPECT_EQ(got[1].payload, "new");
    EXPECT_EQ(ob->dropped_total(), 2u);
    EXPECT_EQ(ob->take_dropped_since_report(), 2u);
}

TEST(Outbox, SetLimitsAppliesAByteCapAtOnceAndOnReopen) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(ob->append("telemetry", "t", numbered(i, 99), 1, i).ok());
    EXPECT_EQ(ob->bytes(), 1000u);
    ob->set_limits(OutboxLimits{500, 0});
    EXPECT_EQ(ob->count(), 5u);
    EXPECT_EQ(ob->bytes(), 500u);
    EXPECT_EQ(number_of(all(*ob).front().payload), 5);
    ob.reset();
    // Lowered again while the agent was down: applied by open.
    ob = open_store(dir.file("outbox.db"), OutboxLimits{300, 0});
    ASSERT_NE(ob, nullptr);
    EXPECT_EQ(ob->count(), 3u);
    EXPECT_EQ(ob->dropped_total(), 7u);
}

TEST(Outbox, SequencesIncreaseAcrossReopen) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    for (int64_t want = 1; want <= 3; ++want) {
        Result<int64_t> v = ob->next_sequence("telemetry_seq");
        ASSERT_TRUE(v.ok()) << v.status().to_string();
        EXPECT_EQ(v.value(), want);
    }
    Result<int64_t> other = ob->next_sequence("other");
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(other.value(), 1);
    ob.reset();
    ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    Result<int64_t> v = ob->next_sequence("telemetry_seq");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v.value(), 4);
}

TEST(Outbox, ConcurrentAppendAndDrain) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    constexpr int kN = 200;
    std::atomic<bool> failed{false};
    std::thread producer([&] {
        for (int i = 0; i < kN; ++i) {
            if (!ob->append(i % 5 == 0 ? "ack" : "telemetry", "t", numbered(i, 100), 1, i).ok()) failed = true;
        }
    });
    std::vector<int> delivered;
    int64_t last = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (static_cast<int>(delivered.size()) < kN && std::chrono::steady_clock::now() < deadline) {
        Result<std::vector<OutboxMessage>> batch = ob->peek(16, last);
        ASSERT_TRUE(batch.ok()) << batch.status().to_string();
        for (const OutboxMessage& m : batch.value()) {
            EXPECT_GT(m.id, last);
            last = m.id;
            delivered.push_back(number_of(m.payload));
            ASSERT_TRUE(ob->remove(m.id).ok());
        }
        if (batch->empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    producer.join();
    EXPECT_FALSE(failed);
    ASSERT_EQ(static_cast<int>(delivered.size()), kN);
    for (int i = 0; i < kN; ++i) EXPECT_EQ(delivered[i], i);
    EXPECT_EQ(ob->count(), 0u);
    EXPECT_EQ(ob->bytes(), 0u);
}

TEST(Outbox, AcknowledgedAppendsSurviveKill9) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
        if (!r.ok()) return 2;
        for (int64_t i = 0;; ++i) {
            if (!r.value()->append(i % 7 == 0 ? "ack" : "telemetry", "cpn/v1/n1/telemetry",
                                   numbered(static_cast<int>(i), 300), 1, 1000 + i).ok())
                return 3;
            if (!report(fd, i)) return 4;
        }
    });
    ASSERT_GT(child.pid, 0);
    int64_t v = -1, last = -1;
    for (int i = 0; i < 300; ++i) {
        ASSERT_TRUE(child.read(v)) << "child stopped early";
        ASSERT_EQ(v, last + 1);
        last = v;
    }
    int st = child.kill();
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    while (child.read(v, 1000)) last = v;  // what it reported before it died
    ASSERT_TRUE(child.eof);

    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    std::vector<OutboxMessage> got = all(*ob);
    // Every acknowledged message, in order, no gaps; at most the one being written beyond.
    ASSERT_GE(static_cast<int64_t>(got.size()), last + 1);
    ASSERT_LE(static_cast<int64_t>(got.size()), last + 2);
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(number_of(got[i].payload), static_cast<int>(i));
        if (i > 0) {
            EXPECT_GT(got[i].id, got[i - 1].id);
        }
    }
    EXPECT_EQ(ob->count(), got.size());
    // And the store is usable.
    Result<int64_t> id = ob->append("ack", "t", "after", 1, 1);
    ASSERT_TRUE(id.ok()) << id.status().to_string();
    EXPECT_GT(id.value(), got.back().id);
}

TEST(Outbox, SequenceSurvivesKill9) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
        if (!r.ok()) return 2;
        for (;;) {
            Result<int64_t> s = r.value()->next_sequence("telemetry_seq");
            if (!s.ok()) return 3;
            if (!report(fd, s.value())) return 4;
        }
    });
    ASSERT_GT(child.pid, 0);
    int64_t v = 0, last = 0;
    for (int i = 0; i < 200; ++i) {
        ASSERT_TRUE(child.read(v)) << "child stopped early";
        ASSERT_EQ(v, last + 1);
        last = v;
    }
    child.kill();
    while (child.read(v, 1000)) last = v;
    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    Result<int64_t> next = ob->next_sequence("telemetry_seq");
    ASSERT_TRUE(next.ok());
    EXPECT_GT(next.value(), last);
    EXPECT_LE(next.value(), last + 2);
}

/* Leaves a store whose last `n` appends live only in the WAL: a child appends and _exits
 * without closing (no checkpoint). Messages 0..base-1 were written by an earlier clean close,
 * so they are in the main file. */
void make_store_with_wal(const std::string& path, int base, int n) {
    {
        auto ob = open_store(path);
        ASSERT_NE(ob, nullptr);
        for (int i = 0; i < base; ++i) ASSERT_TRUE(ob->append("telemetry", "t", numbered(i, 200), 1, i).ok());
    }
    ASSERT_FALSE(std::filesystem::exists(path + "-wal")) << "a clean close checkpoints the WAL";
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
        if (!r.ok()) return 2;
        for (int i = base; i < base + n; ++i)
            if (!r.value()->append("telemetry", "t", numbered(i, 200), 1, i).ok()) return 3;
        report(fd, n);
        ::_exit(0);  // here, before r's destructor could close the connection (and checkpoint)
    });
    int64_t v = 0;
    ASSERT_TRUE(child.read(v));
    int st = 0;
    ::waitpid(child.pid, &st, 0);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_TRUE(std::filesystem::exists(path + "-wal"));
}

void expect_prefix(Outbox& ob, int at_least, int at_most) {
    std::vector<OutboxMessage> got = all(ob);
    EXPECT_GE(static_cast<int>(got.size()), at_least);
    EXPECT_LE(static_cast<int>(got.size()), at_most);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(number_of(got[i].payload), static_cast<int>(i));
    EXPECT_EQ(ob.count(), got.size());
}

TEST(Outbox, TornWalTailLosesNothingCommitted) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    make_store_with_wal(path, 10, 40);
    // A power cut in the middle of the next commit: half a frame of garbage after the last one.
    {
        std::ofstream wal(path + "-wal", std::ios::binary | std::ios::app);
        wal << std::string(2000, '\x5a');
    }
    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    expect_prefix(*ob, 50, 50);
    ASSERT_TRUE(ob->append("ack", "t", "after", 1, 1).ok());
}

TEST(Outbox, TruncatedWalKeepsCheckpointedDataAndAPrefix) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    make_store_with_wal(path, 10, 40);
    // Cut the WAL in the middle of a frame, a third of the way in: the transactions after the
    // cut are gone, everything before it and everything in the main file stays, and the store
    // opens as a healthy one (not treated as corrupt).
    const std::string wal = path + "-wal";
    auto size = std::filesystem::file_size(wal);
    std::filesystem::resize_file(wal, size / 3 + 1234);
    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    expect_prefix(*ob, 10, 49);
    ASSERT_TRUE(ob->append("ack", "t", "after", 1, 1).ok());
    ob.reset();

    // A WAL cut to nothing at all: the main file alone.
    make_store_with_wal(dir.file("b.db"), 10, 5);
    std::filesystem::resize_file(dir.file("b.db-wal"), 0);
    ob = open_store(dir.file("b.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    expect_prefix(*ob, 10, 10);
}

TEST(Outbox, CorruptFileIsMovedAsideAndAFreshStoreStarts) {
    TempDir dir;
    std::string garbage = "this is not an SQLite database\n";
    for (int i = 0; i < 5000; ++i) garbage += static_cast<char>((i * 7919) & 0xff);
    dir.write("outbox.db", garbage);
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_TRUE(ob->recovered_from_corruption());
    EXPECT_EQ(ob->count(), 0u);
    std::vector<std::string> aside = files_starting_with(dir.path(), "outbox.db.corrupt-");
    ASSERT_EQ(aside.size(), 1u);
    EXPECT_EQ(ob->moved_aside_to(), aside[0]);
    EXPECT_TRUE(read_all(aside[0]) == garbage) << "the corrupt file must be kept as it was";
    ASSERT_TRUE(ob->append("ack", "t", "p", 1, 1).ok());
    ob.reset();
    ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    EXPECT_EQ(ob->count(), 1u);
}

TEST(Outbox, DamagedPagesAreDetectedByQuickCheck) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    {
        auto ob = open_store(path);
        ASSERT_NE(ob, nullptr);
        for (int i = 0; i < 200; ++i) ASSERT_TRUE(ob->append("telemetry", "t", numbered(i, 300), 1, i).ok());
    }
    // Valid header, garbage in every page after the first: the b-trees are broken.
    std::string db = read_all(path);
    ASSERT_GT(db.size(), 3 * 4096u);
    for (size_t i = 4096; i < db.size(); ++i) db[i] = static_cast<char>((i * 31) & 0xff);
    dir.write("outbox.db", db);
    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    EXPECT_TRUE(ob->recovered_from_corruption());
    EXPECT_EQ(files_starting_with(dir.path(), "outbox.db.corrupt-").size(), 1u);
    EXPECT_TRUE(ob->append("ack", "t", "p", 1, 1).ok());
}

TEST(Outbox, ForeignSqliteFileIsLeftAlone) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE other(x); INSERT INTO other VALUES (1);", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    std::string before = read_all(path);
    Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::failed_precondition);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    EXPECT_TRUE(read_all(path) == before) << "the file was changed";
    EXPECT_TRUE(files_starting_with(dir.path(), "outbox.db.corrupt-").empty());
}

TEST(Outbox, SecondOpenOfTheSameFileIsRefused) {
    TempDir dir;
    auto ob = open_store(dir.file("outbox.db"));
    ASSERT_NE(ob, nullptr);
    ASSERT_TRUE(ob->append("ack", "t", "p", 1, 1).ok());
    Result<std::unique_ptr<Outbox>> second = Outbox::open(dir.file("outbox.db"), OutboxLimits{});
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Code::unavailable);
    EXPECT_NE(second.status().message().find(dir.file("outbox.db")), std::string::npos)
        << second.status().message();
    EXPECT_FALSE(ob->recovered_from_corruption());
    EXPECT_EQ(ob->count(), 1u);  // and the first is unharmed
    EXPECT_TRUE(files_starting_with(dir.path(), "outbox.db.corrupt-").empty());
}

TEST(Outbox, MissingParentDirectoryIsAClearError) {
    TempDir dir;
    const std::string path = dir.file("no/such/dir/outbox.db");
    Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::not_found);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
}

TEST(Outbox, UnwritableDirectoryIsAClearError) {
    TempDir dir;
    const std::string ro = dir.file("ro");
    ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
    ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
    const std::string path = ro + "/outbox.db";
    // root ignores permission bits: try as "nobody" in a child then.
    Reporter child = Reporter::start([&](int fd) {
        if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 5;
        Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
        if (r.ok()) return 6;
        std::string m = r.status().to_string();
        if (::write(fd, m.data(), m.size()) != static_cast<ssize_t>(m.size())) return 7;
        return 0;
    });
    int st = 0;
    ::waitpid(child.pid, &st, 0);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0) << "5: cannot drop privileges, 6: open succeeded";
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(child.fd, buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("permission_denied"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

TEST(Outbox, FullDiskFailsTheAppendAndKeepsTheStoreConsistent) {
    TempDir dir;
    const std::string path = dir.file("outbox.db");
    // A child whose files may not grow past 200 KB: the WAL hits it after a few appends.
    Reporter child = Reporter::start([&](int fd) {
        Result<std::unique_ptr<Outbox>> r = Outbox::open(path, OutboxLimits{});
        if (!r.ok()) return 2;
        Outbox& ob = *r.value();
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit lim{200 << 10, 200 << 10};
        if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 3;
        int64_t ok = 0;
        Status failure;
        for (int i = 0; i < 1000; ++i) {
            Result<int64_t> id = ob.append("ack", "t", numbered(i, 1000), 1, i);
            if (!id.ok()) {
                failure = id.status();
                break;
            }
            ++ok;
        }
        if (failure.ok()) return 4;
        report(fd, ok);
        report(fd, static_cast<int64_t>(ob.count()));
        report(fd, static_cast<int64_t>(ob.bytes()));
        std::string m = failure.to_string();
        if (::write(fd, m.data(), m.size()) != static_cast<ssize_t>(m.size())) return 5;
        ::_exit(0);
    });
    int64_t appended = -1, count = -1, bytes = -1;
    ASSERT_TRUE(child.read(appended)) << "child failed before the disk was full";
    ASSERT_TRUE(child.read(count));
    ASSERT_TRUE(child.read(bytes));
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(child.fd, buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
    int st = 0;
    ::waitpid(child.pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_GT(appended, 0);
    EXPECT_EQ(count, appended) << "the in-memory totals follow what was committed";
    EXPECT_EQ(bytes, appended * 1001);
    EXPECT_NE(msg.find(path + ": append: "), std::string::npos) << msg;

    auto ob = open_store(path);
    ASSERT_NE(ob, nullptr);
    EXPECT_FALSE(ob->recovered_from_corruption());
    expect_prefix(*ob, static_cast<int>(appended), static_cast<int>(appended));
    ASSERT_TRUE(ob->append("ack", "t", numbered(static_cast<int>(appended), 1000), 1, 1).ok());
}

}  // namespace
}  // namespace cpn
