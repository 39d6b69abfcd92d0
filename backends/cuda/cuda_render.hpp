// cuda_render.hpp: the render.pass kind on CUDA: the shared render kernel compiled by nvcc into
// an embedded fatbin (kernels/render.cu), the scene uploaded once per prepare.
#pragma once

#include "cpn_backend.h"
#include "cuda_exec.hpp"

namespace cpn::cuda {

struct RenderState;

bool is_render_kind(const char* kind);
cpn_status render_query(cpn_device_handle* d, const cpn_workload* w, cpn_query_result* out, cpn_msg* err);
cpn_status render_prepare(cpn_device_handle* d, const cpn_workload* w, cpn_prepared** out, cpn_msg* err);
cpn_status render_run(cpn_prepared* p, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err);
/* Frees the scene, the output buffer and the module of a render.pass prepared workload. */
void release_render_prepared(cpn_prepared* p);

}  // namespace cpn::cuda
