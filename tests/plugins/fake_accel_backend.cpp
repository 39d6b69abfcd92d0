// fake_accel_backend.cpp: a backend for hardware no machine here has (FPGA, NPU), behind the same
// ABI as the real ones. What it reports comes from CPN_FAKE_ACCEL_DEVICES, a ';'-separated list
// of "class,pci_address,model[,unhealthy reason]" entries, so a test can pair it with a recorded
// sysfs tree and check that discovery joins both views of one device.
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "cpn_backend.h"
#include "cpn_backend_util.hpp"

using namespace cpn::plugin;

namespace {

struct Fake {
    cpn_device_class cls = CPN_CLASS_OTHER;
    std::string pci, model, unhealthy;
};

std::vector<Fake> devices() {
    std::vector<Fake> out;
    const char* env = std::getenv("CPN_FAKE_ACCEL_DEVICES");
    std::stringstream all(env ? env : "");
    std::string item;
    while (std::getline(all, item, ';')) {
        std::stringstream f(item);
        std::string cls;
        Fake d;
        std::getline(f, cls, ',');
        std::getline(f, d.pci, ',');
        std::getline(f, d.model, ',');
        std::getline(f, d.unhealthy);
        d.cls = cls == "fpga" ? CPN_CLASS_FPGA : cls == "npu" ? CPN_CLASS_NPU : cls == "gpu" ? CPN_CLASS_GPU
                                                                                          : CPN_CLASS_OTHER;
        out.push_back(d);
    }
    return out;
}

cpn_status probe(cpn_probe_info* out, cpn_msg*) {
    out->usable = devices().empty() ? 0 : 1;
    copy_str(out->reason, "no fake accelerators configured (CPN_FAKE_ACCEL_DEVICES is empty)");
    copy_str(out->runtime_name, "fake accelerator runtime");
    copy_str(out->runtime_version, "1.0");
    return CPN_OK;
}
cpn_status device_count(uint32_t* n, cpn_msg*) {
    *n = static_cast<uint32_t>(devices().size());
    return CPN_OK;
}
cpn_status device_info(uint32_t i, cpn_device_desc* d, cpn_msg* err) {
    auto all = devices();
    if (i >= all.size()) return fail(err, CPN_E_INVALID_ARGUMENT, "fakeaccel: no device %u", i);
    const Fake& f = all[i];
    d->device_class = f.cls;
    copy_str(d->vendor, "Fake Vendor");
    copy_str(d->model, f.model);
    copy_str(d->native_name, f.model);
    copy_str(d->pci_address, f.pci);
    d->memory_bytes = 8ull << 30;
    d->compute_units = 16;
    d->precisions = CPN_PREC_INT8 | CPN_PREC_FP16;
    d->healthy = f.unhealthy.empty() ? 1 : 0;
    copy_str(d->health_reason, f.unhealthy);
    attr_str(d, "fake.firmware", "1.2.3");
    attr_int(d, "fake.tiles", 4);
    return CPN_OK;
}

const cpn_backend kBackend = {CPN_BACKEND_ABI_VERSION, sizeof(cpn_backend), "fakeaccel", "0",
                              probe, device_count, device_info, nullptr, nullptr, nullptr,
                              nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace

extern "C" CPN_BACKEND_EXPORT uint32_t cpn_backend_abi_version(void) { return CPN_BACKEND_ABI_VERSION; }
extern "C" CPN_BACKEND_EXPORT const cpn_backend* cpn_backend_entry(const cpn_host*) { return &kBackend; }
