# Uses samoyeds as another project would; run by CTest (tests/CMakeLists.txt).
#   MODE=package: installs this build into a fresh prefix, checks the files and
#     the SONAME, compiles every installed header on its own, then builds and
#     runs examples/consumer twice: through find_package(samoyeds CONFIG) and
#     through `pkg-config --cflags --libs samoyeds`.
#   MODE=subdirectory: configures examples/consumer with the source tree as an
#     add_subdirectory() and dry-runs its build (building the whole library
#     again would take minutes on a small machine).
# Inputs: MODE SOURCE_DIR BUILD_DIR WORK_DIR GENERATOR MAKE_PROGRAM CXX
# CUDA_ROOT VERSION SOVERSION LIBDIR INCLUDEDIR BINDIR READELF PKG_CONFIG.
# Every problem is a FATAL_ERROR, so the test fails.
cmake_minimum_required(VERSION 3.22)

# step(<what> <command>...): runs it; on failure stops with its output. The
# output (stdout and stderr merged) is left in step_output.
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

function(expect_contains what text needle)
  string(FIND "${text}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${what}: expected '${needle}' in:\n${text}")
  endif()
endfunction()

function(expect_lacks what text needle)
  string(FIND "${text}" "${needle}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "${what}: '${needle}' must not appear in:\n${text}")
  endif()
endfunction()

set(consumer_src ${SOURCE_DIR}/examples/consumer)
set(generator_args -G ${GENERATOR} -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM} -DCMAKE_CXX_COMPILER=${CXX}
                   -DCMAKE_BUILD_TYPE=Release)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

if(MODE STREQUAL "package")
  foreach(tool READELF PKG_CONFIG)
    if(NOT ${tool} OR NOT EXISTS "${${tool}}")
      message(FATAL_ERROR "${tool} not found ('${${tool}}'): install binutils and pkg-config (scripts/setup.sh does)")
    endif()
  endforeach()
  set(prefix ${WORK_DIR}/prefix)
  step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

  # The files a user of the package relies on.
  set(lib ${prefix}/${LIBDIR})
  set(cmake_dir ${lib}/cmake/samoyeds)
  foreach(f ${lib}/libsamoyeds.so.${VERSION} ${lib}/libsamoyeds.so.${SOVERSION} ${lib}/libsamoyeds.so
            ${prefix}/${BINDIR}/samoyeds ${cmake_dir}/samoyedsConfig.cmake ${cmake_dir}/samoyedsConfigVersion.cmake
            ${cmake_dir}/samoyedsTargets.cmake ${lib}/pkgconfig/samoyeds.pc)
    if(NOT EXISTS ${f})
      message(FATAL_ERROR "not installed: ${f}")
    endif()
  endforeach()
  file(GLOB_RECURSE source_headers RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/*)
  file(GLOB_RECURSE installed_headers RELATIVE ${prefix}/${INCLUDEDIR} ${prefix}/${INCLUDEDIR}/*)
  list(SORT source_headers)
  list(SORT installed_headers)
  if(NOT source_headers STREQUAL installed_headers)
    message(FATAL_ERROR "installed headers\n  ${installed_headers}\ndiffer from include/\n  ${source_headers}")
  endif()
  step("readelf" ${READELF} -d ${lib}/libsamoyeds.so.${VERSION})
  expect_contains("SONAME" "${step_output}" "Library soname: [libsamoyeds.so.${SOVERSION}]")

  # Nothing installed may point back into the source or build tree.
  file(GLOB package_files ${cmake_dir}/*.cmake ${lib}/pkgconfig/samoyeds.pc)
  foreach(f ${package_files})
    file(READ ${f} text)
    expect_lacks("${f}" "${text}" "${SOURCE_DIR}")
    expect_lacks("${f}" "${text}" "${BUILD_DIR}")
  endforeach()

  # The installed CLI finds the installed library (RUNPATH $ORIGIN/../lib).
  step("installed samoyeds --help" ${prefix}/${BINDIR}/samoyeds --help)

  # Each public header compiles alone against the prefix (no source tree, no
  # CUDA headers), warnings as errors; samoyeds.h also as C.
  set(tus "")
  foreach(h ${installed_headers})
    string(MAKE_C_IDENTIFIER ${h} name)
    file(WRITE ${WORK_DIR}/headers/${name}.cpp "#include <${h}>\n")
    list(APPEND tus ${WORK_DIR}/headers/${name}.cpp)
  endforeach()
  step("public headers compile alone" ${CXX} -std=c++17 -Wall -Wextra -Werror -fsyntax-only
       -I${prefix}/${INCLUDEDIR} ${tus})
  file(WRITE ${WORK_DIR}/headers/c_abi.c "#include <samoyeds/samoyeds.h>\n")
  step("samoyeds.h compiles as C" ${CXX} -x c -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only
       -I${prefix}/${INCLUDEDIR} ${WORK_DIR}/headers/c_abi.c)

  # find_package(samoyeds CONFIG) + samoyeds::samoyeds.
  set(consumer ${WORK_DIR}/consumer)
  step("configure the find_package consumer" ${CMAKE_COMMAND} -S ${consumer_src} -B ${consumer} ${generator_args}
       -DCMAKE_PREFIX_PATH=${prefix})
  file(STRINGS ${consumer}/CMakeCache.txt found REGEX "^samoyeds_DIR:")
  expect_contains("find_package(samoyeds)" "${found}" "=${cmake_dir}")
  step("build the find_package consumer" ${CMAKE_COMMAND} --build ${consumer})
  step("run the find_package consumer" ${consumer}/app)
  message(STATUS "find_package consumer: ${step_output}")
  expect_contains("find_package consumer" "${step_output}" "samoyeds ${VERSION}:")

  # pkg-config, with only this prefix's .pc files visible.
  set(pc_env ${CMAKE_COMMAND} -E env PKG_CONFIG_LIBDIR=${lib}/pkgconfig PKG_CONFIG_PATH=)
  step("pkg-config --modversion" ${pc_env} ${PKG_CONFIG} --modversion samoyeds)
  string(STRIP "${step_output}" pc_version)
  if(NOT pc_version STREQUAL VERSION)
    message(FATAL_ERROR "samoyeds.pc says version '${pc_version}', the project ${VERSION}")
  endif()
  step("pkg-config --cflags --libs" ${pc_env} ${PKG_CONFIG} --cflags --libs samoyeds)
  string(STRIP "${step_output}" pc_flags)
  message(STATUS "pkg-config --cflags --libs samoyeds: ${pc_flags}")
  separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
  step("compile the pkg-config consumer" ${CXX} -std=c++17 -O1 "-DSAMOYEDS_EXPECTED_VERSION=\"${pc_version}\""
       ${consumer_src}/main.cpp ${pc_flags} -o ${WORK_DIR}/app_pkg_config)
  step("run the pkg-config consumer" ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${lib} ${WORK_DIR}/app_pkg_config)
  message(STATUS "pkg-config consumer: ${step_output}")
  expect_contains("pkg-config consumer" "${step_output}" "samoyeds ${VERSION}:")

elseif(MODE STREQUAL "subdirectory")
  set(consumer ${WORK_DIR}/consumer)
  step("configure the add_subdirectory consumer" ${CMAKE_COMMAND} -S ${consumer_src} -B ${consumer} ${generator_args}
       -DSAMOYEDS_SOURCE_DIR=${SOURCE_DIR} -DCUDAToolkit_ROOT=${CUDA_ROOT})
  file(READ ${consumer}/CMakeCache.txt cache)
  foreach(off SAMOYEDS_BUILD_TESTS SAMOYEDS_BUILD_BENCH SAMOYEDS_INSTALL)
    expect_contains("a subproject's default" "${cache}" "${off}:BOOL=OFF")
  endforeach()
  # Dry run: every rule to build app (the library, its embedded files) exists,
  # and the generated sources land in the subproject's binary directory.
  if(GENERATOR MATCHES "Ninja")
    # Every command app needs; `ninja -n` would stop at the glob check.
    step("list the add_subdirectory consumer's build" ${MAKE_PROGRAM} -C ${consumer} -t commands app)
  else()
    step("dry-run build of the add_subdirectory consumer" ${MAKE_PROGRAM} -C ${consumer} -n app)
  endif()
  expect_contains("dry run" "${step_output}" "samoyeds/generated/embedded_templates.cpp")
  expect_lacks("dry run" "${step_output}" "${consumer}/generated/")
  expect_contains("dry run" "${step_output}" "libsamoyeds.so")

else()
  message(FATAL_ERROR "MODE must be package or subdirectory, not '${MODE}'")
endif()
