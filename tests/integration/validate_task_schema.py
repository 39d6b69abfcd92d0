#!/usr/bin/env python3
"""docs/schemas/task-submit.schema.json agrees with the admission code's fixtures: the submits
tests/unit/task_spec_test.cpp accepts validate, and the structurally bad ones it refuses do not
(limits that depend on the node, like sizes and allowed directories, are the code's alone)."""
import json
import sys

import jsonschema

GOOD = [
    {"schema_version": 1, "id": "t-1", "kind": "echo"},
    {"schema_version": 1, "id": "job:42.a", "kind": "bench", "params": {"mode": "quick"}, "priority": 7,
     "timeout_s": 60, "requirements": {"device_class": "gpu", "backend": "cuda", "min_memory_bytes": 1073741824,
                                       "precision": "fp16", "device_id": "PCI-0000:19:00.0"},
     "input": {"base64": "aGVsbG8AIHdvcmxk"}},
    {"schema_version": 1, "id": "f", "kind": "echo", "input": {"path": "/var/lib/cpn-agent/inputs/a.bin"}},
]
BAD = [
    [1],
    {"schema_version": 1, "kind": "echo"},
    {"schema_version": 1, "id": "../etc", "kind": "echo"},
    {"id": "t", "kind": "echo"},
    {"schema_version": 2, "id": "t", "kind": "echo"},
    {"schema_version": 1, "id": "t", "kind": "echo", "shell": "rm -rf /"},
    {"schema_version": 1, "id": "t"},
    {"schema_version": 1, "id": "t", "kind": "echo", "params": []},
    {"schema_version": 1, "id": "t", "kind": "echo", "priority": 1000},
    {"schema_version": 1, "id": "t", "kind": "echo", "timeout_s": 0},
    {"schema_version": 1, "id": "t", "kind": "echo", "requirements": {"device_class": "tpu"}},
    {"schema_version": 1, "id": "t", "kind": "echo", "requirements": {"precision": "fp8"}},
    {"schema_version": 1, "id": "t", "kind": "echo", "requirements": {"min_memory_bytes": -1}},
    {"schema_version": 1, "id": "t", "kind": "echo", "requirements": {"gpus": 2}},
    {"schema_version": 1, "id": "t", "kind": "echo", "input": {"base64": "", "path": "/x"}},
    {"schema_version": 1, "id": "t", "kind": "echo", "input": {"path": "relative/x"}},
]


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    for doc in GOOD:
        errors = [e.message for e in v.iter_errors(doc)]
        assert not errors, f"a submit the agent accepts does not validate: {doc}: {errors}"
    for doc in BAD:
        assert list(v.iter_errors(doc)), f"a submit the agent refuses validates: {doc}"
    print(f"task-submit schema: {len(GOOD)} good and {len(BAD)} bad submits agree with admission")


if __name__ == "__main__":
    main()
