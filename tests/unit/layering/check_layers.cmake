# cmake -DROOT=<source tree> -P check_layers.cmake
#
# Holds the libraries to the layer order in ROOT/src/layers.txt (one layer per line, lowest
# first): a library may include the headers of, and link, only itself and libraries of lower
# layers, never a library of its own layer or above. Checked:
#   - every #include "offload/<name>/..." in src/<lib>/ and include/offload/<lib>/;
#   - every offload_<name> in the library's CMakeLists.txt (its link lists);
#   - no #include climbs out of its directory with "..", which would get round the include paths;
#   - each library is named once (so the order is a well-defined, acyclic one), and every folder
#     of src/ and include/offload/ is named (so none escapes the check).
# `proto` is offload_proto: proto/CMakeLists.txt, headers "offload/v1/...".
# Prints every violation and fails when there is any.
cmake_minimum_required(VERSION 3.25)

if(NOT ROOT)
  message(FATAL_ERROR "usage: cmake -DROOT=<source tree> -P check_layers.cmake")
endif()

set(violations 0)
macro(violation text)
  message(NOTICE "layering violation: ${text}")
  math(EXPR violations "${violations} + 1")
endmacro()

# --- The order.
file(STRINGS ${ROOT}/src/layers.txt lines REGEX "^[a-z]")
set(libs "")
set(layer 0)
foreach(line ${lines})
  string(REGEX MATCHALL "[a-z0-9_]+" names "${line}")
  foreach(name ${names})
    if(name IN_LIST libs)
      violation("src/layers.txt names ${name} twice")
    endif()
    list(APPEND libs ${name})
    set(layer_of_${name} ${layer})
  endforeach()
  math(EXPR layer "${layer} + 1")
endforeach()
if(NOT libs)
  message(FATAL_ERROR "no libraries in ${ROOT}/src/layers.txt")
endif()

# The library a header directory under offload/ belongs to.
set(lib_of_header_dir_v1 proto)
foreach(lib ${libs})
  if(NOT lib STREQUAL "proto")
    set(lib_of_header_dir_${lib} ${lib})
  endif()
endforeach()

# --- Every library is in the order.
file(GLOB src_dirs LIST_DIRECTORIES true RELATIVE ${ROOT}/src ${ROOT}/src/*)
foreach(dir ${src_dirs})
  if(EXISTS ${ROOT}/src/${dir}/CMakeLists.txt AND NOT dir IN_LIST libs)
    violation("src/${dir} is not in src/layers.txt")
  endif()
endforeach()
file(GLOB include_dirs LIST_DIRECTORIES true RELATIVE ${ROOT}/include/offload
     ${ROOT}/include/offload/*)
foreach(dir ${include_dirs})
  if(IS_DIRECTORY ${ROOT}/include/offload/${dir} AND NOT DEFINED lib_of_header_dir_${dir})
    violation("include/offload/${dir} is no library of src/layers.txt")
  endif()
endforeach()

# True in `out` when `lib` may use `other`.
function(may_use lib other out)
  if(lib STREQUAL other OR layer_of_${other} LESS layer_of_${lib})
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# --- Includes and link lists.
set(files_checked 0)
foreach(lib ${libs})
  if(lib STREQUAL "proto")
    set(code_dirs "")
    set(cmake_file ${ROOT}/proto/CMakeLists.txt)
  else()
    set(code_dirs src/${lib} include/offload/${lib})
    set(cmake_file ${ROOT}/src/${lib}/CMakeLists.txt)
  endif()

  foreach(dir ${code_dirs})
    file(GLOB_RECURSE files RELATIVE ${ROOT} ${ROOT}/${dir}/*.h ${ROOT}/${dir}/*.hpp
         ${ROOT}/${dir}/*.cpp ${ROOT}/${dir}/*.cc ${ROOT}/${dir}/*.ipp)
    foreach(file ${files})
      math(EXPR files_checked "${files_checked} + 1")
      file(STRINGS ${ROOT}/${file} includes REGEX "^[ \t]*#[ \t]*include")
      foreach(include ${includes})
        if(include MATCHES "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]*)[>\"]")
          set(path "${CMAKE_MATCH_1}")
        else()
          continue()
        endif()
        if(path MATCHES "(^|/)\\.\\.(/|$)")
          violation("${file} includes \"${path}\": no climbing out with ..")
        elseif(path MATCHES "^offload/([^/]+)/")
          set(dir_name ${CMAKE_MATCH_1})
          if(NOT DEFINED lib_of_header_dir_${dir_name})
            violation("${file} includes ${path}: offload/${dir_name}/ is no library of src/layers.txt")
            continue()
          endif()
          set(other ${lib_of_header_dir_${dir_name}})
          may_use(${lib} ${other} ok)
          if(NOT ok)
            violation("${file} includes ${path}: ${lib} may not use ${other} (layer ${layer_of_${lib}} -> ${layer_of_${other}})")
          endif()
        endif()
      endforeach()
    endforeach()
  endforeach()

  if(EXISTS ${cmake_file})
    file(RELATIVE_PATH cmake_rel ${ROOT} ${cmake_file})
    file(READ ${cmake_file} text)
    string(REGEX REPLACE "#[^\n]*" "" text "${text}")
    string(REGEX MATCHALL "offload_[a-z0-9_]+" targets "${text}")
    list(REMOVE_DUPLICATES targets)
    foreach(target ${targets})
      string(REGEX REPLACE "^offload_" "" other ${target})
      if(NOT other IN_LIST libs)
        continue()  # offload_library() and the like
      endif()
      may_use(${lib} ${other} ok)
      if(NOT ok)
        violation("${cmake_rel} links ${target}: ${lib} may not use ${other} (layer ${layer_of_${lib}} -> ${layer_of_${other}})")
      endif()
    endforeach()
  endif()
endforeach()

list(LENGTH libs lib_count)
if(violations GREATER 0)
  message(FATAL_ERROR "${violations} layering violation(s) (the order is src/layers.txt)")
endif()
message(STATUS "layering: ${lib_count} libraries, ${files_checked} files: every include and link goes down")
