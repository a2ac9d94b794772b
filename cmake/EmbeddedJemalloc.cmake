# Builds libmemward_jemalloc.a: Debian's position-independent jemalloc archive
# with its public names renamed to mwje_* (alloc/jemalloc_symbols.txt), so that
# memward can export the malloc family itself and call the engine directly.
# jemalloc's C++ operators are renamed too: memward defines the exported
# operators, and its operator new jumps to jemalloc's, whose fast path is
# inline, for untagged and unsampled allocations.
#
# Each of jemalloc's objects gets its code aligned to 64 bytes, so that the
# fast path's place within cache lines stays the same when memward's code
# linked before it changes size. Compiling memward's admin code for size
# moved jemalloc's code by 145,248 bytes (32 modulo 64) and made a 16-byte
# malloc/free pair about 8 % slower in malloc_micro; with the alignment it
# took the time it took before.

find_file(JEMALLOC_PIC_ARCHIVE libjemalloc_pic.a
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib /usr/local/lib
  REQUIRED)
find_path(JEMALLOC_INCLUDE_DIR jemalloc/jemalloc.h REQUIRED)
find_program(OBJCOPY_PROGRAM NAMES objcopy REQUIRED)

set(MEMWARD_JEMALLOC_DIR ${CMAKE_BINARY_DIR}/jemalloc)
set(MEMWARD_JEMALLOC_ARCHIVE ${MEMWARD_JEMALLOC_DIR}/libmemward_jemalloc.a)
set(_symbols ${CMAKE_SOURCE_DIR}/alloc/jemalloc_symbols.txt)

add_custom_command(
  OUTPUT ${MEMWARD_JEMALLOC_ARCHIVE}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${MEMWARD_JEMALLOC_DIR}
  COMMAND ${CMAKE_COMMAND} -E copy ${JEMALLOC_PIC_ARCHIVE} ${MEMWARD_JEMALLOC_DIR}/original.a
  COMMAND ${OBJCOPY_PROGRAM} --redefine-syms=${_symbols} --set-section-alignment .text=64
          ${MEMWARD_JEMALLOC_DIR}/original.a ${MEMWARD_JEMALLOC_ARCHIVE}
  DEPENDS ${JEMALLOC_PIC_ARCHIVE} ${_symbols}
  COMMENT "Renaming jemalloc's public symbols for embedding"
  VERBATIM)
add_custom_target(memward_jemalloc_archive DEPENDS ${MEMWARD_JEMALLOC_ARCHIVE})

add_library(memward_jemalloc STATIC IMPORTED GLOBAL)
set_target_properties(memward_jemalloc PROPERTIES IMPORTED_LOCATION ${MEMWARD_JEMALLOC_ARCHIVE})
target_include_directories(memward_jemalloc INTERFACE ${JEMALLOC_INCLUDE_DIR})
add_dependencies(memward_jemalloc memward_jemalloc_archive)
