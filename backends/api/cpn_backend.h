/*
 * cpn_backend.h: the C ABI between the cpn-agent core and a backend plugin.
 *
 * This is the only header a backend must include. Nothing crosses the boundary but plain C
 * structs, integer status codes and NUL-terminated UTF-8 strings: no C++ objects, no
 * exceptions, no ownership of host memory by the plugin or of plugin memory by the host
 * beyond what each function documents.
 *
 * Lifecycle, as the host drives it:
 *   1. dlopen(plugin) and read `cpn_backend_abi_version()`; refuse the plugin when it differs
 *      from CPN_BACKEND_ABI_VERSION (both versions are named in the message).
 *   2. `cpn_backend_entry(&host)` returns the function table (its first fields are the ABI
 *      version and the struct size, checked again).
 *   3. `probe()` says whether the vendor runtime and driver are usable here and with which
 *      versions; a backend that is not usable says why and is reported as skipped.
 *   4. `device_count()` / `device_info()` enumerate devices in the uniform device shape.
 *   5. Execution: `device_open` -> `query` (pure) -> `prepare` (cacheable) -> `run` (cancel,
 *      progress) -> `release` -> `device_close`.
 *   6. `shutdown()` before the host drops its last reference to the library.
 *
 * Every call returns a cpn_status and, on failure, writes a message into the caller's cpn_msg
 * that says what failed and where, verbatim from the vendor runtime where it came from there.
 * A backend never aborts the process and never lets an exception escape.
 */
#ifndef CPN_BACKEND_H
#define CPN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to a struct layout or function table below. */
#define CPN_BACKEND_ABI_VERSION 1u

#if defined(__GNUC__)
#define CPN_BACKEND_EXPORT __attribute__((visibility("default")))
#else
#define CPN_BACKEND_EXPORT
#endif

typedef enum cpn_status {
    CPN_OK = 0,
    CPN_E_INVALID_ARGUMENT = 1, /* the caller passed something malformed */
    CPN_E_NOT_FOUND = 2,        /* runtime, driver or device not present (a quiet "nothing here") */
    CPN_E_UNAVAILABLE = 3,      /* present but unusable: driver error, device busy, lost */
    CPN_E_UNSUPPORTED = 4,      /* this device cannot run this workload */
    CPN_E_OUT_OF_MEMORY = 5,
    CPN_E_CANCELLED = 6,
    CPN_E_DEADLINE_EXCEEDED = 7,
    CPN_E_INTERNAL = 8,
    CPN_E_DEVICE_LOST = 9 /* the device faulted; the host marks it unhealthy and re-probes */
} cpn_status;

/* A message buffer owned by the caller; the callee writes a NUL-terminated string. */
#define CPN_MSG_LEN 1024
typedef struct cpn_msg {
    char text[CPN_MSG_LEN];
} cpn_msg;

typedef enum cpn_device_class {
    CPN_CLASS_OTHER = 0,
    CPN_CLASS_CPU = 1,
    CPN_CLASS_GPU = 2,
    CPN_CLASS_FPGA = 3,
    CPN_CLASS_NPU = 4
} cpn_device_class;

/* Precisions the device executes natively (bit mask). */
enum {
    CPN_PREC_FP64 = 1u << 0,
    CPN_PREC_FP32 = 1u << 1,
    CPN_PREC_FP16 = 1u << 2,
    CPN_PREC_BF16 = 1u << 3,
    CPN_PREC_INT8 = 1u << 4
};

typedef enum cpn_attr_type {
    CPN_ATTR_STRING = 0,
    CPN_ATTR_INT = 1,
    CPN_ATTR_FLOAT = 2,
    CPN_ATTR_BOOL = 3
} cpn_attr_type;

/* One typed backend-specific attribute ("nvidia.com/gpu.compute.major" = 9). */
typedef struct cpn_attr {
    char key[96];
    cpn_attr_type type;
    int64_t i;      /* CPN_ATTR_INT, CPN_ATTR_BOOL (0 or 1) */
    double f;       /* CPN_ATTR_FLOAT */
    char s[256];    /* CPN_ATTR_STRING */
    char unit[16];  /* optional: "bytes", "MHz", "W", ... */
} cpn_attr;

#define CPN_MAX_ATTRS 64

/* One device as the backend sees it. Unknown numbers are 0 (numa_node: -1); unknown strings "". */
typedef struct cpn_device_desc {
    uint32_t struct_size;       /* set by the host to sizeof(cpn_device_desc) */
    cpn_device_class device_class;
    char vendor[128];
    char model[256];
    char native_name[256];      /* the name the runtime itself reports */
    char pci_address[32];       /* "dddd:bb:dd.f", lower-case, or "" */
    char uuid[64];              /* lower-case hex with dashes, or "" */
    char driver_version[64];
    uint64_t memory_bytes;
    uint32_t compute_units;
    uint32_t max_clock_mhz;
    int32_t numa_node;
    uint32_t precisions;        /* CPN_PREC_* mask */
    int32_t healthy;            /* 1 healthy, 0 unhealthy */
    char health_reason[256];
    uint32_t attr_count;
    cpn_attr attrs[CPN_MAX_ATTRS];
} cpn_device_desc;

/* What probe() found: is the runtime usable, and which versions. */
typedef struct cpn_probe_info {
    uint32_t struct_size;
    int32_t usable;             /* 1: devices may be enumerated; 0: skipped, reason says why */
    char reason[512];
    char runtime_name[64];      /* "CUDA driver API", "OpenCL ICD loader", ... */
    char runtime_version[64];
    char driver_version[64];
} cpn_probe_info;

/* ---- execution half ---------------------------------------------------------------------- */

typedef struct cpn_device_handle cpn_device_handle; /* opaque, plugin-owned */
typedef struct cpn_prepared cpn_prepared;           /* opaque, plugin-owned */

/* A named byte buffer. Inputs are read-only to the plugin; outputs are allocated by the host
 * with the size the plugin announced in cpn_query_result (or by the workload's convention). */
typedef struct cpn_buffer {
    const char* name;
    void* data;
    uint64_t size;
} cpn_buffer;

/* A workload: a kind ("selftest.saxpy", "bench.fp32", "render", "infer"), parameters as a JSON
 * object in text, and an optional opaque blob (a model, a scene) whose meaning the kind defines. */
typedef struct cpn_workload {
    uint32_t struct_size;
    const char* kind;
    const char* params_json;    /* "{}" when there are none; never NULL */
    const void* blob;
    uint64_t blob_size;
} cpn_workload;

typedef struct cpn_query_result {
    uint32_t struct_size;
    int32_t supported;          /* 1 when the device can run the workload as given */
    char reason[512];           /* why not, naming what is unsupported */
    uint64_t device_memory_bytes; /* estimated device memory the workload needs */
} cpn_query_result;

/* Run control: a cancel flag the host may set at any time (the plugin checks it between
 * passes, tiles or layers), a progress callback, and an absolute deadline. */
typedef struct cpn_run_control {
    uint32_t struct_size;
    const volatile int32_t* cancel; /* non-zero: stop as soon as possible, return CPN_E_CANCELLED */
    void (*progress)(void* user, double fraction, const char* note);
    void* user;
    uint64_t deadline_ns;       /* CLOCK_MONOTONIC; 0 for none; past it: CPN_E_DEADLINE_EXCEEDED */
} cpn_run_control;

typedef struct cpn_run_io {
    uint32_t struct_size;
    const cpn_buffer* inputs;
    uint32_t input_count;
    cpn_buffer* outputs;
    uint32_t output_count;
    char* result_json;          /* host-owned; the plugin writes metrics as a JSON object */
    uint64_t result_json_capacity;
} cpn_run_io;

/* Services the host offers a plugin. */
typedef struct cpn_host {
    uint32_t abi_version;
    uint32_t struct_size;
    /* level: 0 trace, 1 debug, 2 info, 3 warn, 4 error */
    void (*log)(int level, const char* backend, const char* message);
} cpn_host;

/* The backend's function table. Optional entries may be NULL. */
typedef struct cpn_backend {
    uint32_t abi_version;       /* CPN_BACKEND_ABI_VERSION the plugin was built against */
    uint32_t struct_size;       /* sizeof(cpn_backend) as the plugin saw it */
    const char* name;           /* "cpu", "opencl", "cuda", "levelzero", "xrt", lower-case */
    const char* version;        /* plugin build version */

    cpn_status (*probe)(cpn_probe_info* out, cpn_msg* err);
    cpn_status (*device_count)(uint32_t* count, cpn_msg* err);
    cpn_status (*device_info)(uint32_t index, cpn_device_desc* out, cpn_msg* err);

    cpn_status (*device_open)(uint32_t index, cpn_device_handle** out, cpn_msg* err);
    void (*device_close)(cpn_device_handle* device);
    cpn_status (*query)(cpn_device_handle* device, const cpn_workload* workload,
                        cpn_query_result* out, cpn_msg* err);
    cpn_status (*prepare)(cpn_device_handle* device, const cpn_workload* workload,
                          cpn_prepared** out, cpn_msg* err);
    cpn_status (*run)(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                      cpn_msg* err);
    void (*release)(cpn_prepared* prepared);

    /* Named extras ("telemetry", ...); NULL when the name is unknown. Optional. */
    void* (*get_proc)(const char* name);
    /* Called once before the host unloads the library. Optional. */
    void (*shutdown)(void);
} cpn_backend;

/* The two symbols every plugin exports. */
typedef uint32_t (*cpn_backend_abi_version_fn)(void);
typedef const cpn_backend* (*cpn_backend_entry_fn)(const cpn_host* host);

#define CPN_BACKEND_ABI_VERSION_SYMBOL "cpn_backend_abi_version"
#define CPN_BACKEND_ENTRY_SYMBOL "cpn_backend_entry"

/* ---- extension: device telemetry (through get_proc) ------------------------------------- */

/* A backend that can sample its devices' live figures (utilisation, memory, temperature,
 * power) returns a cpn_device_telemetry_fn from get_proc(CPN_DEVICE_TELEMETRY_PROC). It is an
 * optional extra, so it needs no ABI version bump: a host that finds get_proc NULL, or the
 * name unknown, simply has no such source. */
#define CPN_DEVICE_TELEMETRY_PROC "cpn_device_telemetry_v1"

/* Which members of cpn_device_telemetry hold a reading (bit mask in `valid`). A figure the
 * device or driver cannot give has its bit clear: it is absent, never reported as zero. */
enum {
    CPN_TELEM_UTILIZATION = 1u << 0, /* utilization_pct */
    CPN_TELEM_MEMORY = 1u << 1,      /* memory_used_bytes and memory_total_bytes */
    CPN_TELEM_TEMPERATURE = 1u << 2, /* temperature_c */
    CPN_TELEM_POWER = 1u << 3        /* power_w */
};

typedef struct cpn_device_telemetry {
    uint32_t struct_size;       /* set by the host to sizeof(cpn_device_telemetry) */
    uint32_t valid;             /* CPN_TELEM_* mask of the members below that hold a reading */
    double utilization_pct;     /* 0..100 */
    uint64_t memory_used_bytes;
    uint64_t memory_total_bytes;
    double temperature_c;
    double power_w;
} cpn_device_telemetry;

/* Samples one device by PCI address ("dddd:bb:dd.f"); CPN_E_NOT_FOUND when this backend does
 * not know it. Must not initialise the compute runtime (no cuInit): telemetry runs in an idle
 * daemon. */
typedef cpn_status (*cpn_device_telemetry_fn)(const char* pci_address, cpn_device_telemetry* out,
                                              cpn_msg* err);

#ifdef __cplusplus
}
#endif

#endif /* CPN_BACKEND_H */
