// pci_scan.cpp: the PCI / accel sysfs scanner (see pci_scan.hpp).
//
// What it reads, per PCI function under <root>/bus/pci/devices/<address> (a symlink into
// <root>/devices/pci.../ on a real system, a plain directory in some fixtures):
//   vendor, device, class            always (the keep decision needs them)
//   subsystem_vendor, subsystem_device, numa_node, driver (symlink)
//                                    only for the devices that are kept
// and every <root>/class/accel/<node>/device link, which names the PCI function behind an
// accel node (NPUs, Gaudi, Cloud AI 100 ...). Names come from a pci.ids file read once, only for
// the kept devices, and parsing stops as soon as every name asked for has been found.
//
// Nothing here throws: filesystem calls use the error_code overloads, every malformed entry is
// skipped (or kept partially filled) with a warning "<path>: <problem>".
#include "inventory/pci_scan.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <utility>

namespace cpn {
namespace {

namespace fs = std::filesystem;

constexpr uint16_t kVendorIntel = 0x8086;
constexpr uint16_t kVendorXilinx = 0x10ee;  // Xilinx, now AMD; Alveo/Versal cards keep it
constexpr uint16_t kVendorAltera = 0x1172;  // Altera, Intel PSG
constexpr uint16_t kVendorHuawei = 0x19e5;
constexpr uint16_t kVendorQualcomm = 0x17cb;

// Vendors whose PCI functions are AI accelerators whatever class code they report (some report
// 0x1200, others "other system peripheral" 0x0880 or "unclassified").
constexpr uint16_t kNpuVendors[] = {
    0xcabc,  // Cambricon (MLU)
    0x1e60,  // Hailo
    0x1da3,  // Habana Labs (Gaudi)
    0x1ac1,  // Global Unichip Corp., the PCI vendor of Google's Coral Edge TPU
    0x1e52,  // Tenstorrent
    0x1d95,  // Graphcore (pci.ids: "1d95 Graphcore Ltd"; 0x1e26 is Fujitsu Client Computing)
};
// Vendors that make NPUs among many other things: kept only with a processing-accelerator class.
constexpr uint16_t kNpuVendorsByClass[] = {kVendorHuawei /* Ascend */, kVendorQualcomm /* AI 100 */};

// Intel FPGA Programmable Acceleration Cards, which carry Intel's vendor id, not Altera's: the
// physical and virtual functions the Linux DFL driver (drivers/fpga/dfl-pci.c) binds.
constexpr std::pair<uint16_t, uint16_t> kIntelFpgaPac[] = {
    {kVendorIntel, 0x09c4}, {kVendorIntel, 0x09c5},  // PAC with Arria 10 GX (PF, VF)
    {kVendorIntel, 0x0b2b}, {kVendorIntel, 0x0b2c},  // PAC D5005, Stratix 10 SX (PF, VF)
    {kVendorIntel, 0x0b30}, {kVendorIntel, 0x0b31},  // PAC N3000 (PF, VF)
    {kVendorIntel, 0xbcce}, {kVendorIntel, 0xbccf},  // OFS / DFL cards, e.g. N6000 (PF, VF)
};

// Display controllers that are not compute devices: they are VGA chips for a server console,
// either inside the baseboard management controller or emulated by a hypervisor. They report
// class 0x03 like a GPU, sit on nearly every server, and no compute runtime can use them, so
// keeping them would put a phantom "GPU without runtime" into every inventory.
//   ASPEED AST2x00 BMC VGA (0x1a03, all devices), Matrox G200e*/G200eR/G200eH server VGA
//   (0x102b, all devices), Huawei Hi171x iBMC VGA (0x19e5:0x1711), and the emulated VGA of
//   QEMU/Bochs (0x1234:0x1111), Cirrus GD5446 (0x1013:0x00b8), VMware SVGA II (0x15ad:0x0405),
//   QXL (0x1b36:0x0100) and Hyper-V synthetic video (0x1414:0x5353).
constexpr uint16_t kConsoleVgaVendors[] = {0x1a03 /* ASPEED */, 0x102b /* Matrox */};
constexpr std::pair<uint16_t, uint16_t> kConsoleVgaDevices[] = {
    {kVendorHuawei, 0x1711}, {0x1234, 0x1111}, {0x1013, 0x00b8},
    {0x15ad, 0x0405},        {0x1b36, 0x0100}, {0x1414, 0x5353},
};

template <typename T, size_t N>
bool contains(const T (&arr)[N], const T& v) {
    return std::find(std::begin(arr), std::end(arr), v) != std::end(arr);
}

bool is_fpga_vendor(const PciDevice& p) {
    return p.vendor_id == kVendorXilinx || p.vendor_id == kVendorAltera ||
           contains(kIntelFpgaPac, std::pair{p.vendor_id, p.device_id});
}

unsigned class_base(uint32_t c) { return (c >> 16) & 0xff; }
unsigned class_base_sub(uint32_t c) { return (c >> 8) & 0xffff; }

bool is_console_vga(const PciDevice& p) {
    return class_base(p.class_code) == 0x03 &&
           (contains(kConsoleVgaVendors, p.vendor_id) ||
            contains(kConsoleVgaDevices, std::pair{p.vendor_id, p.device_id}));
}

bool is_compute_relevant(const PciDevice& p) {
    if (!p.accel_nodes.empty()) return true;
    if (is_console_vga(p)) return false;
    const unsigned base = class_base(p.class_code);
    if (base == 0x03 || base == 0x12 || class_base_sub(p.class_code) == 0x0b40) return true;
    if (is_fpga_vendor(p)) return true;
    if (contains(kNpuVendors, p.vendor_id)) return true;
    if (contains(kNpuVendorsByClass, p.vendor_id) && base == 0x12) return true;  // (covered above)
    return false;
}

DeviceClass guess_class(const PciDevice& p) {
    if (!p.accel_nodes.empty()) return DeviceClass::npu;
    if (is_fpga_vendor(p)) return DeviceClass::fpga;
    const unsigned base = class_base(p.class_code);
    if (base == 0x03) return DeviceClass::gpu;
    if (base == 0x12 || class_base_sub(p.class_code) == 0x0b40) return DeviceClass::npu;
    if (contains(kNpuVendors, p.vendor_id)) return DeviceClass::npu;
    return DeviceClass::other;
}

// ---- small readers ----------------------------------------------------------------------------

enum class ReadResult { ok, missing, error };

/* Reads a small sysfs attribute (they are at most a page). */
ReadResult read_small(const fs::path& path, std::string& out, std::string& why) {
    out.clear();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return ReadResult::missing;
        why = std::strerror(errno);
        return ReadResult::error;
    }
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            why = std::strerror(errno);
            ::close(fd);
            return ReadResult::error;
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > 65536) break;  // not a sysfs attribute; the parse will reject it
    }
    ::close(fd);
    return ReadResult::ok;
}

std::string_view trim(std::string_view s) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "0x10de" (sysfs form) or "10de" -> value; false when malformed or wider than max_digits. */
bool parse_hex(std::string_view s, size_t max_digits, uint32_t& out) {
    s = trim(s);
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    if (s.empty() || s.size() > max_digits) return false;
    uint32_t v = 0;
    for (char c : s) {
        int d = hex_digit(c);
        if (d < 0) return false;
        v = v << 4 | static_cast<uint32_t>(d);
    }
    out = v;
    return true;
}

bool parse_int(std::string_view s, int& out) {
    s = trim(s);
    bool neg = !s.empty() && s[0] == '-';
    if (neg) s.remove_prefix(1);
    if (s.empty() || s.size() > 9) return false;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    out = neg ? -v : v;
    return true;
}

/* "dddd:bb:dd.f" (domain 4 to 8 hex digits: Intel VMD domains are 0x10000 and up) -> lower-case
 * copy; "" when the name is not a PCI address. */
std::string pci_address(std::string_view name) {
    size_t c1 = name.find(':');
    if (c1 == std::string_view::npos || c1 < 4 || c1 > 8) return "";
    if (name.size() != c1 + 8 || name[c1 + 3] != ':' || name[c1 + 6] != '.') return "";
    std::string out(name);
    for (size_t i = 0; i < out.size(); ++i) {
        if (i == c1 || i == c1 + 3 || i == c1 + 6) continue;
        if (hex_digit(out[i]) < 0) return "";
        out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[i])));
    }
    if (hex_digit(out[c1 + 4]) > 1 || hex_digit(out[c1 + 7]) > 7) return "";  // device <= 0x1f
    return out;
}

/* Orders addresses numerically: only the domain varies in width. */
bool address_less(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return a.size() < b.size();
    return a < b;
}

std::string hex4(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04x", v & 0xffff);
    return buf;
}

// ---- pci.ids --------------------------------------------------------------------------------

/* Fills vendor_name / device_name of `devs` from a pci.ids file. The file is read once; parsing
 * stops when every name asked for has been found, or past the last vendor asked for (pci.ids is
 * sorted by vendor id), or at the device-class section ("C xx"). */
void lookup_names(const std::string& pci_ids_path, std::vector<PciDevice>& devs,
                  std::vector<std::string>& warnings) {
    if (pci_ids_path.empty() || devs.empty()) return;
    std::string text, why;
    {
        int fd = ::open(pci_ids_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            // A machine without the pci.ids package is normal: names fall back, no warning.
            if (errno != ENOENT)
                warnings.push_back(pci_ids_path + ": cannot open (" + std::strerror(errno) +
                                   "), PCI names not looked up");
            return;
        }
        struct stat st {};
        if (::fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size < (64 << 20))
            text.reserve(static_cast<size_t>(st.st_size));
        char buf[1 << 16];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                warnings.push_back(pci_ids_path + ": read failed (" + std::strerror(errno) +
                                   "), PCI names not looked up");
                ::close(fd);
                return;
            }
            if (n == 0) break;
            text.append(buf, static_cast<size_t>(n));
        }
        ::close(fd);
    }

    // vendor -> (device -> name), names filled as found.
    std::map<uint16_t, std::string> vendor_names;
    std::map<uint16_t, std::map<uint16_t, std::string>> wanted;
    for (const auto& d : devs) wanted[d.vendor_id][d.device_id];
    size_t remaining = wanted.size();
    for (const auto& [v, ds] : wanted) remaining += ds.size();
    const uint16_t last_vendor = wanted.rbegin()->first;

    std::map<uint16_t, std::string>* cur = nullptr;  // device map of the current wanted vendor
    std::string_view all(text);
    size_t pos = 0;
    while (pos < all.size() && remaining > 0) {
        size_t nl = all.find('\n', pos);
        std::string_view line = all.substr(pos, nl == std::string_view::npos ? all.npos : nl - pos);
        pos = nl == std::string_view::npos ? all.size() : nl + 1;
        if (line.empty() || line[0] == '#') continue;
        if (line[0] != '\t') {
            if (line.size() >= 2 && line[0] == 'C' && line[1] == ' ') break;  // class section
            uint32_t vid = 0;
            cur = nullptr;
            if (line.size() < 6 || !parse_hex(line.substr(0, 4), 4, vid)) continue;
            if (vid > last_vendor) break;
            auto it = wanted.find(static_cast<uint16_t>(vid));
            if (it == wanted.end()) continue;
            vendor_names[it->first] = std::string(trim(line.substr(4)));
            --remaining;
            cur = &it->second;
        } else if (cur != nullptr && line.size() > 1 && line[1] != '\t') {
            uint32_t did = 0;
            if (line.size() < 7 || !parse_hex(line.substr(1, 4), 4, did)) continue;
            auto it = cur->find(static_cast<uint16_t>(did));
            if (it == cur->end() || !it->second.empty()) continue;
            it->second = std::string(trim(line.substr(5)));
            if (!it->second.empty()) --remaining;
        }
        // "\t\t" lines are subsystems: not looked up.
    }

    for (auto& d : devs) {
        if (auto v = vendor_names.find(d.vendor_id); v != vendor_names.end()) d.vendor_name = v->second;
        d.device_name = wanted[d.vendor_id][d.device_id];
    }
}

// ---- the scan -------------------------------------------------------------------------------

struct Entry {
    PciDevice dev;
    fs::path dir;  // <root>/bus/pci/devices/<address>
};

/* Reads a hex id file into `out`. Returns false (with a warning) when it is missing or bad. */
bool read_hex_attr(const fs::path& dir, const char* name, size_t digits, uint32_t& out,
                   std::vector<std::string>& warnings) {
    fs::path p = dir / name;
    std::string text, why;
    switch (read_small(p, text, why)) {
        case ReadResult::missing: warnings.push_back(p.string() + ": missing"); return false;
        case ReadResult::error: warnings.push_back(p.string() + ": unreadable (" + why + ")"); return false;
        case ReadResult::ok: break;
    }
    if (!parse_hex(text, digits, out)) {
        std::string shown(trim(text).substr(0, 40));
        warnings.push_back(p.string() + ": not a " + std::to_string(digits) +
                           "-digit hex value: '" + shown + "'");
        return false;
    }
    return true;
}

/* The kept-device details: subsystem ids, NUMA node, bound driver. */
void read_details(Entry& e, std::vector<std::string>& warnings) {
    PciDevice& d = e.dev;
    uint32_t v = 0;
    if (read_hex_attr(e.dir, "subsystem_vendor", 4, v, warnings)) d.subsystem_vendor_id = static_cast<uint16_t>(v);
    if (read_hex_attr(e.dir, "subsystem_device", 4, v, warnings)) d.subsystem_device_id = static_cast<uint16_t>(v);

    std::string text, why;
    fs::path numa = e.dir / "numa_node";
    switch (read_small(numa, text, why)) {
        case ReadResult::missing: break;  // kernels without CONFIG_NUMA have no numa_node
        case ReadResult::error: warnings.push_back(numa.string() + ": unreadable (" + why + ")"); break;
        case ReadResult::ok: {
            int n = -1;
            if (parse_int(text, n) && n >= -1)
                d.numa_node = n;
            else
                warnings.push_back(numa.string() + ": not a NUMA node number: '" +
                                   std::string(trim(text).substr(0, 40)) + "'");
        }
    }

    fs::path drv = e.dir / "driver";
    std::error_code ec;
    auto st = fs::symlink_status(drv, ec);
    if (ec || st.type() == fs::file_type::not_found) return;  // no driver bound
    if (st.type() != fs::file_type::symlink) {
        warnings.push_back(drv.string() + ": not a symlink, driver unknown");
        return;
    }
    fs::path target = fs::read_symlink(drv, ec);
    if (ec) {
        warnings.push_back(drv.string() + ": cannot read link (" + ec.message() + ")");
        return;
    }
    if (!fs::exists(drv, ec)) {
        warnings.push_back(drv.string() + ": dangling symlink to '" + target.string() +
                           "', driver ignored");
        return;
    }
    d.driver = target.filename().string();
}

}  // namespace

PciScanResult scan_pci(const std::string& sysfs_root, const std::string& pci_ids_path) {
    PciScanResult result;
    auto& warnings = result.warnings;
    try {
        const fs::path root(sysfs_root);
        const fs::path bus = root / "bus" / "pci" / "devices";
        std::error_code ec;

        // 1. Every PCI function: address, ids and class (enough to decide what to keep).
        std::vector<std::string> names;
        {
            fs::directory_iterator it(bus, ec), end;
            if (ec) {
                // No PCI bus at all (some SoCs, containers without /sys): nothing to report.
                if (ec != std::errc::no_such_file_or_directory)
                    warnings.push_back(bus.string() + ": cannot list (" + ec.message() + ")");
            }
            for (; !ec && it != end; it.increment(ec)) names.push_back(it->path().filename().string());
            if (ec && ec != std::errc::no_such_file_or_directory)
                warnings.push_back(bus.string() + ": listing stopped (" + ec.message() + ")");
        }
        std::sort(names.begin(), names.end());

        std::map<std::string, Entry> all;  // by address
        for (const auto& name : names) {
            fs::path dir = bus / name;
            std::string addr = pci_address(name);
            if (addr.empty()) {
                warnings.push_back(dir.string() + ": not a PCI address, skipped");
                continue;
            }
            std::error_code sec;
            if (!fs::is_directory(dir, sec)) {
                auto lst = fs::symlink_status(dir, sec);
                if (lst.type() == fs::file_type::symlink)
                    warnings.push_back(dir.string() + ": dangling symlink to '" +
                                       fs::read_symlink(dir, sec).string() + "', skipped");
                else
                    warnings.push_back(dir.string() + ": not a directory, skipped");
                continue;
            }
            Entry e;
            e.dir = dir;
            e.dev.address = addr;
            uint32_t v = 0;
            if (!read_hex_attr(dir, "vendor", 4, v, warnings)) continue;
            if (v == 0xffff) {  // config space reads all-ones: the function is gone or broken
                warnings.push_back((dir / "vendor").string() + ": 0xffff (device not responding), skipped");
                continue;
            }
            e.dev.vendor_id = static_cast<uint16_t>(v);
            if (!read_hex_attr(dir, "device", 4, v, warnings)) continue;
            e.dev.device_id = static_cast<uint16_t>(v);
            // A missing or bad class keeps the device with class 0 ("unknown"): it can still be
            // kept by vendor (FPGA, NPU) or by an accel node.
            if (read_hex_attr(dir, "class", 6, v, warnings)) e.dev.class_code = v;
            all.emplace(addr, std::move(e));
        }

        // 2. Accel nodes: each names the PCI function behind it.
        const fs::path accel = root / "class" / "accel";
        std::vector<std::string> nodes;
        {
            fs::directory_iterator it(accel, ec), end;
            if (ec && ec != std::errc::no_such_file_or_directory)
                warnings.push_back(accel.string() + ": cannot list (" + ec.message() + ")");
            for (; !ec && it != end; it.increment(ec)) nodes.push_back(it->path().filename().string());
        }
        std::sort(nodes.begin(), nodes.end(), [](const std::string& a, const std::string& b) {
            return a.size() != b.size() ? a.size() < b.size() : a < b;  // accel2 before accel10
        });
        for (const auto& node : nodes) {
            fs::path link = accel / node / "device";
            std::error_code lec;
            fs::path real = fs::canonical(link, lec);
            if (lec) {
                auto lst = fs::symlink_status(link, lec);
                if (lst.type() == fs::file_type::symlink)
                    warnings.push_back(link.string() + ": dangling symlink to '" +
                                       fs::read_symlink(link, lec).string() + "', accel node skipped");
                else
                    warnings.push_back(link.string() + ": missing, accel node skipped");
                continue;
            }
            std::string addr = pci_address(real.filename().string());
            if (addr.empty()) {
                // Platform NPUs of SoCs (not on PCI) have accel nodes too; they are not ours here.
                warnings.push_back(link.string() + ": points to '" + real.filename().string() +
                                   "', not a PCI device, accel node skipped");
                continue;
            }
            auto it = all.find(addr);
            if (it == all.end()) {
                warnings.push_back(link.string() + ": PCI device " + addr +
                                   " was not found on the PCI bus (or was malformed), accel node skipped");
                continue;
            }
            it->second.dev.accel_nodes.push_back(node);
        }

        // 3. Keep the compute-relevant ones and read the rest of their attributes.
        for (auto& [addr, e] : all) {
            if (!is_compute_relevant(e.dev)) continue;
            read_details(e, warnings);
            e.dev.device_class = guess_class(e.dev);
            result.devices.push_back(std::move(e.dev));
        }
        std::sort(result.devices.begin(), result.devices.end(),
                  [](const PciDevice& a, const PciDevice& b) { return address_less(a.address, b.address); });

        // 4. Names.
        lookup_names(pci_ids_path, result.devices, warnings);
    } catch (const std::exception& ex) {
        // Only allocation failure can get here; report what was found so far.
        warnings.push_back(sysfs_root + ": PCI scan aborted: " + ex.what());
    } catch (...) {
        warnings.push_back(sysfs_root + ": PCI scan aborted: unknown exception");
    }
    return result;
}

Device device_from_pci(const PciDevice& p) {
    Device d;
    d.device_class = p.device_class;
    d.vendor = !p.vendor_name.empty() ? p.vendor_name : "PCI vendor 0x" + hex4(p.vendor_id);
    d.model = !p.device_name.empty() ? p.device_name
                                     : "PCI device " + hex4(p.vendor_id) + ":" + hex4(p.device_id);
    d.pci_address = p.address;
    d.numa_node = p.numa_node;
    // Present on the bus but no backend has claimed it (yet): merge replaces this reason when a
    // runtime reports the same PCI address. Not unhealthy: nothing says the device is faulty.
    d.health.healthy = true;
    d.health.reason = "no runtime: no cpn-agent backend claimed this device; " +
                      (p.driver.empty() ? std::string("no kernel driver bound")
                                        : "kernel driver: " + p.driver);

    auto str = [&d](const char* key, std::string v) { d.attributes[key] = Attribute{std::move(v), ""}; };
    str("pci.vendor_id", hex4(p.vendor_id));
    str("pci.device_id", hex4(p.device_id));
    str("pci.subsystem_vendor_id", hex4(p.subsystem_vendor_id));
    str("pci.subsystem_device_id", hex4(p.subsystem_device_id));
    str("pci.class", hex4(p.class_code >> 8));  // base and sub-class, as NFD's "pci-0302_10de"
    if (!p.driver.empty()) str("pci.driver", p.driver);
    if (!p.accel_nodes.empty()) {
        std::string joined;
        for (const auto& n : p.accel_nodes) joined += (joined.empty() ? "" : ",") + n;
        str("accel.nodes", joined);
    }
    d.id = make_device_id(d);
    return d;
}

}  // namespace cpn
