// Every replaceable form of operator new and operator delete.
//
// operator new follows [new.delete.single]: on failure it calls the installed
// new-handler and retries, and throws std::bad_alloc when there is none. The
// nothrow forms do the same but return nullptr where the throwing form would
// throw. Sized and aligned deletes pass the size and alignment to the engine,
// which then frees without looking the size up.
#include <cstddef>
#include <new>

#include "alloc/allocator.h"
#include "alloc/macros.h"

using namespace memward::alloc;

namespace {

void* AllocateForNew(std::size_t size, std::size_t alignment) {
  return alignment == 0 ? Allocate(size) : AllocateAligned(size, alignment);
}

// The failure path: runs new-handlers until one makes room or none is left.
MEMWARD_NOINLINE void* RetryWithNewHandler(std::size_t size, std::size_t alignment,
                                           bool nothrow) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (const std::bad_alloc&) {
        return nullptr;
      }
    } else {
      handler();
    }
    void* result = AllocateForNew(size, alignment);
    if (result != nullptr) return result;
  }
}

MEMWARD_ALWAYS_INLINE void* New(std::size_t size, std::size_t alignment = 0) {
  void* result = AllocateForNew(size, alignment);
  if (MEMWARD_LIKELY(result != nullptr)) return result;
  return RetryWithNewHandler(size, alignment, /*nothrow=*/false);
}

MEMWARD_ALWAYS_INLINE void* NewNothrow(std::size_t size, std::size_t alignment = 0) noexcept {
  void* result = AllocateForNew(size, alignment);
  if (MEMWARD_LIKELY(result != nullptr)) return result;
  return RetryWithNewHandler(size, alignment, /*nothrow=*/true);
}

// A null pointer needs no test here: no memward arena owns it, and jemalloc's
// free ignores it.
MEMWARD_ALWAYS_INLINE void Delete(void* pointer) noexcept { Deallocate(pointer); }

MEMWARD_ALWAYS_INLINE void DeleteSized(void* pointer, std::size_t size) noexcept {
  DeallocateSized(pointer, size);
}

MEMWARD_ALWAYS_INLINE void DeleteSizedAligned(void* pointer, std::size_t size,
                                              std::align_val_t alignment) noexcept {
  if (pointer != nullptr) DeallocateSizedAligned(pointer, size, static_cast<std::size_t>(alignment));
}

std::size_t Alignment(std::align_val_t alignment) { return static_cast<std::size_t>(alignment); }

// The paths of the unaligned forms that memward serves itself: a crossed
// sampling countdown, which includes a thread's first call, and a call
// inside a scope that leaves the parked countdown positive.
MEMWARD_NOINLINE void* NewAfterCountdown(std::size_t size, bool nothrow) {
  void* result = AllocateAfterCountdown(size);
  if (MEMWARD_LIKELY(result != nullptr)) return result;
  return RetryWithNewHandler(size, 0, nothrow);
}

MEMWARD_NOINLINE void* NewOnSlowPath(std::size_t size, bool nothrow) {
  void* result = AllocateSlowMalloc(size);
  if (MEMWARD_LIKELY(result != nullptr)) return result;
  return RetryWithNewHandler(size, 0, nothrow);
}

// Untagged and unsampled, the unaligned forms jump to jemalloc's own
// operator, because its thread-cache path is inline, and calling mwje_malloc
// and testing the result would add a call frame. jemalloc's operator runs
// the new-handler loop itself when it fails.
// NOTE: that loop catches an exception of a class derived from
// std::bad_alloc that a handler throws and throws a plain std::bad_alloc,
// where memward's own paths let the handler's exception through.
#define MEMWARD_NEW_BODY(size, nothrow, engine_call)                               \
  do {                                                                             \
    if (SampleCountdownCrossed(size)) {                                            \
      if (TakeFromParkedCountdown(size)) return NewOnSlowPath(size, nothrow);      \
      return NewAfterCountdown(size, nothrow);                                     \
    }                                                                              \
    return engine_call;                                                            \
  } while (false)

}  // namespace

// jemalloc's operator new reads the new-handler, when an allocation fails,
// with set_new_handler(nullptr) followed by set_new_handler(old). In between,
// every other thread finds no handler installed, and a handler another
// thread installs meanwhile is undone. The embedded archive's calls to
// std::set_new_handler are renamed to this function, which returns the
// installed handler and changes nothing.
extern "C" __attribute__((visibility("hidden"))) std::new_handler mwje_set_new_handler(std::new_handler) noexcept {
  return std::get_new_handler();
}

MEMWARD_EXPORT void* operator new(std::size_t size) {
  MEMWARD_NEW_BODY(size, false, mwje_operator_new(size));
}
MEMWARD_EXPORT void* operator new[](std::size_t size) {
  MEMWARD_NEW_BODY(size, false, mwje_operator_new_array(size));
}
MEMWARD_EXPORT void* operator new(std::size_t size, const std::nothrow_t& tag) noexcept {
  MEMWARD_NEW_BODY(size, true, mwje_operator_new_nothrow(size, &tag));
}
MEMWARD_EXPORT void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  MEMWARD_NEW_BODY(size, true, mwje_operator_new_array_nothrow(size, &tag));
}
MEMWARD_EXPORT void* operator new(std::size_t size, std::align_val_t alignment) {
  return New(size, Alignment(alignment));
}
MEMWARD_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment) {
  return New(size, Alignment(alignment));
}
MEMWARD_EXPORT void* operator new(std::size_t size, std::align_val_t alignment,
                                  const std::nothrow_t&) noexcept {
  return NewNothrow(size, Alignment(alignment));
}
MEMWARD_EXPORT void* operator new[](std::size_t size, std::align_val_t alignment,
                                    const std::nothrow_t&) noexcept {
  return NewNothrow(size, Alignment(alignment));
}

MEMWARD_EXPORT void operator delete(void* pointer) noexcept { Delete(pointer); }
MEMWARD_EXPORT void operator delete[](void* pointer) noexcept { Delete(pointer); }
MEMWARD_EXPORT void operator delete(void* pointer, const std::nothrow_t&) noexcept {
  Delete(pointer);
}
MEMWARD_EXPORT void operator delete[](void* pointer, const std::nothrow_t&) noexcept {
  Delete(pointer);
}
MEMWARD_EXPORT void operator delete(void* pointer, std::size_t size) noexcept {
  DeleteSized(pointer, size);
}
MEMWARD_EXPORT void operator delete[](void* pointer, std::size_t size) noexcept {
  DeleteSized(pointer, size);
}
// An aligned pointer can be freed without its alignment: jemalloc finds the
// extent from the address.
MEMWARD_EXPORT void operator delete(void* pointer, std::align_val_t) noexcept { Delete(pointer); }
MEMWARD_EXPORT void operator delete[](void* pointer, std::align_val_t) noexcept {
  Delete(pointer);
}
MEMWARD_EXPORT void operator delete(void* pointer, std::align_val_t,
                                    const std::nothrow_t&) noexcept {
  Delete(pointer);
}
MEMWARD_EXPORT void operator delete[](void* pointer, std::align_val_t,
                                      const std::nothrow_t&) noexcept {
  Delete(pointer);
}
MEMWARD_EXPORT void operator delete(void* pointer, std::size_t size,
                                    std::align_val_t alignment) noexcept {
  DeleteSizedAligned(pointer, size, alignment);
}
MEMWARD_EXPORT void operator delete[](void* pointer, std::size_t size,
                                      std::align_val_t alignment) noexcept {
  DeleteSizedAligned(pointer, size, alignment);
}
