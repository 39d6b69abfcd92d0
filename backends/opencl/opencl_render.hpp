// opencl_render.hpp: the render.pass kind on OpenCL: the shared render kernel
// (workloads/render/kernel) compiled as OpenCL C at run time, the scene uploaded once per
// prepare, one work item per tile pixel.
#pragma once

#include <mutex>
#include <string>

#include "cpn_backend.h"
#include "opencl_internal.hpp"

namespace cpn::opencl::render {

/* The opened device as render.pass sees it (opencl_internal.hpp). */
using DeviceView = opencl::DeviceView;

struct Render;

bool is_render_kind(const char* kind);
cpn_status query(const DeviceView& d, const cpn_workload* w, cpn_query_result* out, cpn_msg* err);
cpn_status prepare(const DeviceView& d, const cpn_workload* w, Render** out, cpn_msg* err);
cpn_status run(Render* r, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err);
void release(Render* r);

}  // namespace cpn::opencl::render
