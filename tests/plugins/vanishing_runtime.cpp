// vanishing_runtime.cpp: stands in for a vendor runtime library that a node does not have.
extern "C" __attribute__((visibility("default"))) int cpn_vanishing_runtime_version(void) { return 1; }
