// The persisted bdSeq: created at 0, durable increments, strict parsing, survives kill -9.
#include "store/session_counter.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace cpn {
namespace {

using test::TempDir;

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(SessionCounter, CreatesAnAbsentFileWithZero) {
    TempDir dir;
    Result<SessionCounter> c = SessionCounter::open(dir.file("bdseq"));
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->current(), 0);
    EXPECT_EQ(read_all(dir.file("bdseq")), "0\n");
}

TEST(SessionCounter, NextIsPersistedBeforeItReturns) {
    TempDir dir;
    Result<SessionCounter> c = SessionCounter::open(dir.file("bdseq"));
    ASSERT_TRUE(c.ok());
    for (int64_t want = 1; want <= 3; ++want) {
        Result<int64_t> v = c->next();
        ASSERT_TRUE(v.ok()) << v.status().to_string();
        EXPECT_EQ(v.value(), want);
        EXPECT_EQ(c->current(), want);
        EXPECT_EQ(read_all(dir.file("bdseq")), std::to_string(want) + "\n");
    }
    EXPECT_FALSE(std::filesystem::exists(dir.file("bdseq.tmp")));
    Result<SessionCounter> again = SessionCounter::open(dir.file("bdseq"));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->current(), 3);
    ASSERT_TRUE(again->next().ok());
    EXPECT_EQ(again->current(), 4);
}

TEST(SessionCounter, ReadsAnExistingValueAndIgnoresAStaleTmp) {
    TempDir dir;
    dir.write("bdseq", "41\n");
    dir.write("bdseq.tmp", "garbage from a crash mid-write");
    Result<SessionCounter> c = SessionCounter::open(dir.file("bdseq"));
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->current(), 41);
    Result<int64_t> v = c->next();
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v.value(), 42);
    EXPECT_EQ(read_all(dir.file("bdseq")), "42\n");
}

TEST(SessionCounter, GarbageOrTruncatedFileIsAnErrorNotAReset) {
    struct Case {
        std::string content, says;
    };
    const Case cases[] = {
        {"", "empty"},
        {"12", "no newline"},
        {"abc\n", "expected a decimal number"},
        {"-5\n", "expected a decimal number"},
        {" 7\n", "expected a decimal number"},
        {"7\n8\n", "expected a decimal number"},
        {"99999999999999999999\n", "out of range"},
        {std::string("\0\0\0\0", 4), "no newline"},
        {std::string(100, '1') + "\n", "too long"},
    };
    for (const Case& c : cases) {
        TempDir dir;
        dir.write("bdseq", c.content);
        Result<SessionCounter> r = SessionCounter::open(dir.file("bdseq"));
        ASSERT_FALSE(r.ok()) << "accepted '" << c.content << "'";
        EXPECT_EQ(r.status().code(), Code::failed_precondition);
        EXPECT_NE(r.status().message().find(dir.file("bdseq")), std::string::npos) << r.status().message();
        EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
        EXPECT_EQ(read_all(dir.file("bdseq")), c.content) << "the file must be left as it was";
    }
}

TEST(SessionCounter, SurvivesKill9WhileIncrementing) {
    TempDir dir;
    const std::string path = dir.file("bdseq");
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        Result<SessionCounter> c = SessionCounter::open(path);
        if (!c.ok()) ::_exit(2);
        for (;;) {
            Result<int64_t> v = c->next();
            if (!v.ok()) ::_exit(3);
            int64_t n = v.value();
            if (::write(p[1], &n, sizeof n) != static_cast<ssize_t>(sizeof n)) ::_exit(4);
        }
    }
    ASSERT_GT(pid, 0);
    ::close(p[1]);
    auto read_one = [&](int64_t& v, int timeout_ms) {
        pollfd pfd{p[0], POLLIN, 0};
        if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
        return ::read(p[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v);
    };
    int64_t v = 0, last = 0;
    for (int i = 0; i < 200; ++i) {
        ASSERT_TRUE(read_one(v, 10000)) << "child stopped early";
        ASSERT_EQ(v, last + 1);
        last = v;
    }
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    while (read_one(v, 1000)) last = v;
    ::close(p[0]);

    Result<SessionCounter> c = SessionCounter::open(path);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_GE(c->current(), last);
    EXPECT_LE(c->current(), last + 1);
    Result<int64_t> n = c->next();
    ASSERT_TRUE(n.ok());
    EXPECT_GT(n.value(), last);
}

TEST(SessionCounter, UnwritableDirectoryIsAClearError) {
    TempDir dir;
    const std::string ro = dir.file("ro");
    ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
    ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
    const std::string path = ro + "/bdseq";
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        // root ignores permission bits: drop to "nobody" in this child.
        if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(5);
        Result<SessionCounter> c = SessionCounter::open(path);
        if (c.ok()) ::_exit(6);
        std::string m = c.status().to_string();
        if (::write(p[1], m.data(), m.size()) != static_cast<ssize_t>(m.size())) ::_exit(7);
        ::_exit(0);
    }
    ASSERT_GT(pid, 0);
    ::close(p[1]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0) << "5: cannot drop privileges, 6: open succeeded";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("permission_denied"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

}  // namespace
}  // namespace cpn
