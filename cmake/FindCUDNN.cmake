# Finds cuDNN (headers and libcudnn) next to the CUDA toolkit or in the system paths.
#
#   find_package(CUDNN 9 MODULE)
#
# reads the version from cudnn_version.h (cudnn.h before cuDNN 8) and honours the version asked
# for: an older cuDNN is not found, and CUDNN_TOO_OLD says so. Defines
#   CUDNN_FOUND, CUDNN_INCLUDE_DIR, CUDNN_LIBRARY,
#   CUDNN_VERSION ("9.1.0"), CUDNN_VERSION_MAJOR, CUDNN_VERSION_MINOR, CUDNN_VERSION_PATCH
#     (whenever a header was found, even an unsuitable one),
#   CUDNN_TOO_OLD (TRUE when a header older than the version asked for was found),
# and the imported target CUDNN::cudnn.
find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
  PATH_SUFFIXES lib64 lib)

unset(CUDNN_VERSION)
unset(CUDNN_VERSION_MAJOR)
unset(CUDNN_VERSION_MINOR)
unset(CUDNN_VERSION_PATCH)
set(CUDNN_TOO_OLD FALSE)
if(CUDNN_INCLUDE_DIR)
  foreach(_cudnn_header cudnn_version.h cudnn.h)
    set(_cudnn_file "${CUDNN_INCLUDE_DIR}/${_cudnn_header}")
    if(NOT EXISTS "${_cudnn_file}")
      continue()
    endif()
    file(STRINGS "${_cudnn_file}" _cudnn_lines REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL)[ \t]+[0-9]+")
    foreach(_part MAJOR MINOR PATCHLEVEL)
      set(_cudnn_${_part} "")
      foreach(_line IN LISTS _cudnn_lines)
        if(_line MATCHES "^#define CUDNN_${_part}[ \t]+([0-9]+)")
          set(_cudnn_${_part} "${CMAKE_MATCH_1}")
        endif()
      endforeach()
    endforeach()
    if(NOT _cudnn_MAJOR STREQUAL "" AND NOT _cudnn_MINOR STREQUAL "" AND NOT _cudnn_PATCHLEVEL STREQUAL "")
      set(CUDNN_VERSION_MAJOR "${_cudnn_MAJOR}")
      set(CUDNN_VERSION_MINOR "${_cudnn_MINOR}")
      set(CUDNN_VERSION_PATCH "${_cudnn_PATCHLEVEL}")
      set(CUDNN_VERSION "${_cudnn_MAJOR}.${_cudnn_MINOR}.${_cudnn_PATCHLEVEL}")
      break()
    endif()
  endforeach()
  if(CUDNN_FIND_VERSION AND DEFINED CUDNN_VERSION AND CUDNN_VERSION VERSION_LESS CUDNN_FIND_VERSION)
    set(CUDNN_TOO_OLD TRUE)
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR CUDNN_VERSION
                                  VERSION_VAR CUDNN_VERSION)
if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn SHARED IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES IMPORTED_LOCATION "${CUDNN_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
