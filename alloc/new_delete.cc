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

}  // namespace

MEMWARD_EXPORT void* operator new(std::size_t size) { return New(size); }
MEMWARD_EXPORT void* operator new[](std::size_t size) { return New(size); }
MEMWARD_EXPORT void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return NewNothrow(size);
}
MEMWARD_EXPORT void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return NewNothrow(size);
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
