# cpn_backend_option(NAME FOUND_VAR REASON): resolves the AUTO/ON/OFF option CPN_BACKEND_<NAME>
# into CPN_BUILD_<NAME>. A backend forced ON whose SDK is missing stops the configure step.
function(cpn_backend_option name found reason)
  set(mode "${CPN_BACKEND_${name}}")
  string(TOUPPER "${mode}" mode)
  if(mode STREQUAL "OFF")
    set(CPN_BUILD_${name} OFF PARENT_SCOPE)
    message(STATUS "backend ${name}: OFF (CPN_BACKEND_${name}=OFF)")
  elseif(${found})
    set(CPN_BUILD_${name} ON PARENT_SCOPE)
    message(STATUS "backend ${name}: building")
  elseif(mode STREQUAL "ON")
    message(FATAL_ERROR "CPN_BACKEND_${name}=ON but its SDK was not found: ${reason}. "
                        "Install it or configure with -DCPN_BACKEND_${name}=OFF.")
  elseif(mode STREQUAL "AUTO")
    set(CPN_BUILD_${name} OFF PARENT_SCOPE)
    message(STATUS "backend ${name}: skipped, SDK not found: ${reason}")
  else()
    message(FATAL_ERROR "CPN_BACKEND_${name} must be AUTO, ON or OFF, not '${mode}'")
  endif()
endfunction()

# cpn_add_backend(NAME SOURCES ... [LIBS ...]): one plugin, libcpn-backend-NAME.so, placed in the
# plugin directory of the build tree and installed into the one of the install tree.
function(cpn_add_backend name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;INCLUDES" ${ARGN})
  set(target cpn-backend-${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/backends/api ${ARG_INCLUDES})
  target_link_libraries(${target} PRIVATE ${ARG_LIBS})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX,C>:${CPN_WARNINGS}>)
  # A plugin must not leave undefined symbols for the host to resolve.
  target_link_options(${target} PRIVATE -Wl,--no-undefined -Wl,-z,defs)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib" OUTPUT_NAME "cpn-backend-${name}"
    LIBRARY_OUTPUT_DIRECTORY ${CPN_PLUGIN_OUTPUT_DIR})
  install(TARGETS ${target} LIBRARY DESTINATION ${CPN_PLUGIN_REL_DIR} COMPONENT backend-${name})
  set_property(GLOBAL APPEND PROPERTY CPN_BACKEND_TARGETS ${target})
endfunction()
