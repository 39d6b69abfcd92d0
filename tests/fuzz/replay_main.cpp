// replay_main.cpp: the driver that makes a fuzz target a CTest in every build (g++ included,
// no libFuzzer): it feeds the target every file of the given corpus paths, then seeded mutations
// of them (bit flips, interesting bytes and integers, cut, duplicated and inserted ranges, a
// splice of two inputs, truncation), the same every run. A finding aborts the process, naming
// the input (a mutation by its number and seed: the run is deterministic, so the same command
// reproduces it).
// Usage: cpn-fuzz-<target> [--mutations N] [--seed S] [--max-len BYTES] PATH...
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

// Which input is running: printed by the handler when the target aborts or crashes.
std::string g_label;

void on_fatal(int sig) {
    static const char kHead[] = "\nthe input that stopped the run: ";
    (void)!write(2, kHead, sizeof kHead - 1);
    (void)!write(2, g_label.data(), g_label.size());
    (void)!write(2, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

struct Rng {
    uint64_t s;
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

std::string read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void mutate(std::string& s, const std::vector<std::string>& corpus, Rng& rng, size_t max_len) {
    static const uint8_t kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '-', '0', '9', '"', '[', '{', ':', '\n', ' '};
    static const int64_t kInts[] = {0, 1, -1, 127, 128, 255, 256, 65535, 65536, INT32_MAX, INT32_MIN,
                                    int64_t{1} << 32, int64_t{1} << 40, INT64_MAX, INT64_MIN};
    const int steps = 1 + static_cast<int>(rng.below(4));
    for (int k = 0; k < steps; ++k) {
        switch (rng.below(9)) {
        case 0:  // flip a bit
            if (!s.empty()) s[rng.below(s.size())] ^= static_cast<char>(1u << rng.below(8));
            break;
        case 1:  // an interesting byte
            if (!s.empty()) s[rng.below(s.size())] = static_cast<char>(kBytes[rng.below(sizeof kBytes)]);
            break;
        case 2: {  // an interesting integer, 4 or 8 bytes little-endian
            const int64_t v = kInts[rng.below(sizeof kInts / sizeof kInts[0])];
            const size_t w = rng.below(2) ? 4 : 8;
            if (s.size() >= w) std::memcpy(s.data() + rng.below(s.size() - w + 1), &v, w);
            break;
        }
        case 3:  // an interesting number as text
            s.insert(rng.below(s.size() + 1), std::to_string(kInts[rng.below(sizeof kInts / sizeof kInts[0])]));
            break;
        case 4:  // delete a range
            if (!s.empty()) {
                const size_t at = rng.below(s.size());
                s.erase(at, 1 + rng.below(std::min<size_t>(64, s.size() - at)));
            }
            break;
        case 5:  // duplicate a range
            if (!s.empty()) {
                const size_t at = rng.below(s.size());
                const std::string piece = s.substr(at, 1 + rng.below(64));
                s.insert(rng.below(s.size() + 1), piece);
            }
            break;
        case 6:  // random bytes
            for (size_t i = 0, n = 1 + rng.below(8); i < n; ++i)
                s.insert(s.begin() + static_cast<std::ptrdiff_t>(rng.below(s.size() + 1)), static_cast<char>(rng.next()));
            break;
        case 7:  // truncate
            if (!s.empty()) s.resize(rng.below(s.size()));
            break;
        case 8: {  // splice in a range of another input
            const std::string& o = corpus[rng.below(corpus.size())];
            if (!o.empty()) {
                const size_t at = rng.below(o.size());
                s.insert(rng.below(s.size() + 1), o.substr(at, 1 + rng.below(256)));
            }
            break;
        }
        }
    }
    if (s.size() > max_len) s.resize(max_len);
}

}  // namespace

int main(int argc, char** argv) {
    long mutations = 1000;
    uint64_t seed = 1;
    size_t max_len = 1u << 20;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* opt) -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", opt);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--mutations") mutations = std::strtol(value("--mutations").c_str(), nullptr, 10);
        else if (a == "--seed") seed = std::strtoull(value("--seed").c_str(), nullptr, 10);
        else if (a == "--max-len") max_len = std::strtoull(value("--max-len").c_str(), nullptr, 10);
        else if (a.rfind("--", 0) == 0) {
            std::fprintf(stderr, "unknown option %s (--mutations N, --seed S, --max-len BYTES)\n", a.c_str());
            return 2;
        } else if (fs::is_directory(a)) {
            for (const auto& e : fs::recursive_directory_iterator(a))
                if (e.is_regular_file()) files.push_back(e.path());
        } else if (fs::is_regular_file(a)) {
            files.push_back(a);
        } else {
            std::fprintf(stderr, "corpus path %s: not a file or directory\n", a.c_str());
            return 2;
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::fprintf(stderr, "no corpus files given\n");
        return 2;
    }
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_fatal);
    std::vector<std::string> corpus;
    for (const auto& f : files) corpus.push_back(read_all(f));
    const auto t0 = std::chrono::steady_clock::now();
    auto feed = [&](const std::string& in, const std::string& label) {
        g_label = label;
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    };
    for (size_t i = 0; i < files.size(); ++i) feed(corpus[i], "corpus " + files[i].string());
    Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
    for (long m = 0; m < mutations; ++m) {
        const size_t from = rng.below(corpus.size());
        std::string in = corpus[from];
        mutate(in, corpus, rng, max_len);
        feed(in, "mutation " + std::to_string(m) + " of " + files[from].string() + " (seed " + std::to_string(seed) + ")");
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%zu corpus inputs and %ld mutations (seed %llu) ran without a finding in %.2f s\n", files.size(), mutations,
                static_cast<unsigned long long>(seed), s);
    return 0;
}
