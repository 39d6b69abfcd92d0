// opencl_render.hpp: the render.pass kind on OpenCL: the shared render kernel
// (workloads/render/kernel) compiled as OpenCL C at run time, the scene uploaded once per
// prepare, one work item per tile pixel.
#pragma once

#include <mutex>
#include <string>

#include "cpn_backend.h"
#include "opencl_internal.hpp"

namespace cpn::opencl::render {

/* What the render code needs of an opened device. The program is built once per device and
 * kept in *program (guarded by *mu). */
struct DeviceView {
    cl_device_id device = nullptr;
    cl_context context = nullptr;
    cl_command_queue queue = nullptr;
    cl_ulong max_alloc = 0;
    std::string label;
    std::mutex* mu = nullptr;
    cl_program* program = nullptr;
};

struct Render;

bool is_render_kind(const char* kind);
cpn_status query(const DeviceView& d, const cpn_workload* w, cpn_query_result* out, cpn_msg* err);
cpn_status prepare(const DeviceView& d, const cpn_workload* w, Render** out, cpn_msg* err);
cpn_status run(Render* r, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err);
void release(Render* r);

}  // namespace cpn::opencl::render
