// opencl_bench.hpp: the benchmark workloads of cpn_bench.h ("bench.*" kinds) on an OpenCL
// device. opencl_exec.cpp owns devices and the generic entry points and hands every kind that
// starts with "bench." to the functions here.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "cpn_backend.h"
#include "opencl_internal.hpp"

namespace cpn::opencl::bench {

/* What the bench code needs of an opened device. The context stays valid until device_close,
 * which the host calls only after releasing every prepared workload of the device. */
struct DeviceView {
    cl_device_id device = nullptr;
    cl_context context = nullptr;
    int platform_version = 0;  // 120, 300, ...: picks the queue constructor
    std::string label;         // "device 0 (pthread-...)", for messages
};

/* Programs built for one device, keyed by kind and build options; owned by the device. */
struct ProgramCache;
ProgramCache* new_program_cache();
void free_program_cache(ProgramCache* cache);

/* True for every kind in the "bench." namespace, known or not (unknown ones are answered with
 * a reason by query and CPN_E_UNSUPPORTED by prepare). */
bool is_bench_kind(const char* kind);

/* One prepared benchmark: kernels, buffers, host memory, its own in-order queue. */
struct Bench;

cpn_status query(const DeviceView& dev, const cpn_workload* w, cpn_query_result* out, cpn_msg* err);
cpn_status prepare(const DeviceView& dev, ProgramCache* cache, const cpn_workload* w, Bench** out,
                   cpn_msg* err);
cpn_status run(Bench* b, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err);
void release(Bench* b);

}  // namespace cpn::opencl::bench
