// no_entry.cpp: a shared library in the plugin directory that is not a cpn-agent backend.
extern "C" __attribute__((visibility("default"))) int some_other_library_function(void) { return 7; }
