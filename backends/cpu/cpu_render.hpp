// cpu_render.hpp: the render.pass kind on the CPU: the shared kernel (workloads/render/kernel)
// compiled as C++, run over the tile's rows by all cores.
#pragma once

#include "cpn_backend.h"

namespace cpn::cpurender {

struct Render;

bool is_render_kind(const char* kind);
cpn_status query(const cpn_workload* w, cpn_query_result* out, cpn_msg* err);
cpn_status prepare(const cpn_workload* w, unsigned threads, Render** out, cpn_msg* err);
cpn_status run(Render* r, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err);
void release(Render* r);

}  // namespace cpn::cpurender
