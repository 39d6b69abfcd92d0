/* cpn_infer.h: the inference extension of the backend ABI (through get_proc).
 *
 * The agent's core imports an ONNX model, optimises the graph (folding, fusion) and splits it
 * into segments, one per device run: the nodes a backend supports run there, the others fall
 * back to the CPU backend (docs/inference.md). A segment reaches a backend as a serialized
 * ONNX ModelProto (opset as the model's; fused activations as the node attributes
 * "cpn_fused_activation" (string), "cpn_fused_alpha", "cpn_fused_beta" (floats)).
 *
 * Tensor shapes are known only at run time (a dynamic batch, shape arithmetic in the graph),
 * so the backend allocates nothing the host sees: it asks the host for each output's memory
 * through `alloc`, once it knows the output's type and shape.
 *
 * The host never runs one prepared segment from two threads at once; different prepared
 * segments (other models, other devices) may run at the same time.
 *
 * Element types are ONNX TensorProto.DataType codes (1 float32, 7 int64, ...). Dims are int64,
 * C order. Everything is host memory; a device backend copies in and out itself and counts it.
 */
#ifndef CPN_INFER_H
#define CPN_INFER_H

#include "cpn_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CPN_INFER_PROC "cpn_infer_v1"

typedef struct cpn_tensor {
    const char* name;
    int32_t dtype;
    uint32_t rank;
    const int64_t* dims;
    void* data;
    uint64_t bytes;
} cpn_tensor;

/* Returns host memory of `bytes` for output `name`, or NULL (the run then fails). */
typedef void* (*cpn_tensor_alloc_fn)(void* user, const char* name, int32_t dtype, uint32_t rank,
                                     const int64_t* dims, uint64_t bytes);

typedef struct cpn_infer_api {
    uint32_t struct_size;
    /* Whether the device runs this operator (opset, the input element types as codes, 0 when
     * unknown). 1 yes, 0 no (reason filled). Called per node while the host splits the graph. */
    int32_t (*supports)(cpn_device_handle* device, const char* op_type, int32_t opset,
                        const int32_t* input_types, uint32_t input_count, char* reason, uint32_t reason_len);
    /* Loads a segment (a serialized ONNX ModelProto) on the device. options_json:
     * {"threads": N, "max_tensor_elements": N, "precision": "fp32" | "fp16"}; a backend ignores
     * what it does not use. A run reports the precision its products ran at in result_json
     * ("precision", and "precision_note" when it could not honour the one asked for). */
    cpn_status (*prepare)(cpn_device_handle* device, const void* model, uint64_t model_size,
                          const char* options_json, cpn_prepared** out, cpn_msg* err);
    /* Runs it. `inputs` by the segment's input names; outputs through `alloc`. result_json gets
     * metrics as a JSON object ({"seconds":..,"copies_in":..,"copies_out":..,"peak_bytes":..}). */
    cpn_status (*run)(cpn_prepared* prepared, const cpn_tensor* inputs, uint32_t input_count,
                      cpn_tensor_alloc_fn alloc, void* alloc_user, const cpn_run_control* control,
                      char* result_json, uint64_t result_json_capacity, cpn_msg* err);
    void (*release)(cpn_prepared* prepared);
} cpn_infer_api;

#ifdef __cplusplus
}
#endif

#endif /* CPN_INFER_H */
