// hwmon.cpp: finding and reading hwmon temperature and power sensors.
#include "hwmon.hpp"

#include "file_values.hpp"

#include <array>
#include <string_view>

namespace cpn::telemetry {
namespace {

constexpr std::array<std::string_view, 3> kCpuTempDrivers = {"coretemp", "k10temp", "zenpower"};

/* "temp12_input": "temp", digits, "_input". */
bool is_temp_input(const std::string& name) {
    constexpr std::string_view prefix = "temp", suffix = "_input";
    if (name.size() <= prefix.size() + suffix.size()) return false;
    if (name.compare(0, prefix.size(), prefix) != 0) return false;
    if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    for (size_t i = prefix.size(); i < name.size() - suffix.size(); ++i) {
        if (name[i] < '0' || name[i] > '9') return false;
    }
    return true;
}

bool is_hwmon_dir_name(const std::string& name) {
    return name.size() > 5 && name.compare(0, 5, "hwmon") == 0 &&
           name.find_first_not_of("0123456789", 5) == std::string::npos;
}

}  // namespace

std::vector<std::string> find_cpu_temp_inputs(const std::string& sysfs_root) {
    std::vector<std::string> inputs;
    const std::string class_dir = sysfs_root + "/class/hwmon";
    for (const std::string& chip : list_dir(class_dir)) {
        if (!is_hwmon_dir_name(chip)) continue;
        const std::string dir = class_dir + "/" + chip;
        const std::string name = read_line_file(dir + "/name");
        bool cpu = false;
        for (std::string_view d : kCpuTempDrivers) cpu = cpu || name == d;
        if (!cpu) continue;
        for (const std::string& f : list_dir(dir)) {
            if (is_temp_input(f)) inputs.push_back(dir + "/" + f);
        }
    }
    return inputs;
}

std::optional<double> millidegrees_to_c(int64_t milli) {
    if (milli < -100000 || milli > 200000) return std::nullopt;
    return static_cast<double>(milli) / 1000.0;
}

std::optional<double> microwatts_to_w(int64_t micro) {
    if (micro < 0 || micro > int64_t{10000} * 1000000) return std::nullopt;
    return static_cast<double>(micro) / 1e6;
}

std::optional<double> read_max_temperature_c(const std::vector<std::string>& inputs) {
    std::optional<double> hottest;
    for (const std::string& path : inputs) {
        std::optional<int64_t> milli = read_int_file(path);
        if (!milli) continue;
        std::optional<double> c = millidegrees_to_c(*milli);
        if (c && (!hottest || *c > *hottest)) hottest = c;
    }
    return hottest;
}

std::vector<DeviceHwmon> find_device_hwmon(const std::string& device_dir) {
    std::vector<DeviceHwmon> chips;
    const std::string hwmon_dir = device_dir + "/hwmon";
    for (const std::string& chip : list_dir(hwmon_dir)) {
        if (!is_hwmon_dir_name(chip)) continue;
        const std::string dir = hwmon_dir + "/" + chip;
        chips.push_back({dir + "/temp1_input", dir + "/power1_average", dir + "/power1_input"});
    }
    return chips;
}

HwmonReading read_device_hwmon(const std::vector<DeviceHwmon>& chips) {
    HwmonReading r;
    for (const DeviceHwmon& chip : chips) {
        if (!r.temperature_c) {
            if (std::optional<int64_t> milli = read_int_file(chip.temp_input)) {
                r.temperature_c = millidegrees_to_c(*milli);
            }
        }
        if (!r.power_w) {
            std::optional<int64_t> micro = read_int_file(chip.power_average);
            std::optional<double> w = micro ? microwatts_to_w(*micro) : std::nullopt;
            if (!w) {
                micro = read_int_file(chip.power_input);
                w = micro ? microwatts_to_w(*micro) : std::nullopt;
            }
            r.power_w = w;
        }
    }
    return r;
}

}  // namespace cpn::telemetry
