// cpu_bench.hpp: the "bench.*" kinds of cpn_bench.h on the host CPU: parameters, the pinned
// worker pool, one timed sample per run(), verification against the host, and result JSON.
#pragma once

#include "cpn_backend.h"

namespace cpn::cpubench {

struct Bench;  // one prepared benchmark (kind, parameters, data, worker pool)

/* True for every kind starting with "bench.", known or not (an unknown one is answered
 * "unsupported" with a reason, never passed on to another workload family). */
bool is_bench_kind(const char* kind);

/* Whether this CPU runs the kind as given; CPN_E_INVALID_ARGUMENT for malformed params. */
cpn_status query(const cpn_workload* workload, cpn_query_result* out, cpn_msg* err);
cpn_status prepare(const cpn_workload* workload, Bench** out, cpn_msg* err);
cpn_status run(Bench* bench, cpn_run_io* io, const cpn_run_control* control, cpn_msg* err);
void release(Bench* bench);

/* Adds the precisions the bench kernels can exercise here and the "cpu.bench_isa" attribute. */
void describe_device(cpn_device_desc* desc);

}  // namespace cpn::cpubench
