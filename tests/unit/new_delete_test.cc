// operator new and delete as memward defines them: new-handler, bad_alloc,
// nothrow, aligned and sized forms.
#include <stdint.h>

#include <cstdlib>
#include <new>

#include "gtest/gtest.h"

namespace {

size_t Opaque(size_t value) {
  volatile size_t copy = value;
  return copy;
}

int g_handler_calls = 0;

void CountingHandler() {
  g_handler_calls++;
  std::set_new_handler(nullptr);  // The next failure throws.
}

TEST(NewDelete, ThrowsBadAlloc) {
  EXPECT_THROW((void)::operator new(Opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_THROW((void)::operator new[](Opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_THROW((void)::operator new(Opaque(SIZE_MAX / 2), std::align_val_t{64}), std::bad_alloc);
}

TEST(NewDelete, CallsNewHandler) {
  g_handler_calls = 0;
  std::set_new_handler(CountingHandler);
  EXPECT_THROW((void)::operator new(Opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  std::set_new_handler(CountingHandler);
  EXPECT_EQ(::operator new(Opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 2);
  EXPECT_EQ(std::get_new_handler(), nullptr);
}

TEST(NewDelete, NothrowReturnsNull) {
  EXPECT_EQ(::operator new(Opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](Opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(::operator new(Opaque(SIZE_MAX / 2), std::align_val_t{128}, std::nothrow), nullptr);
}

TEST(NewDelete, AlignedAndSizedForms) {
  for (size_t alignment = 16; alignment <= (size_t{1} << 16); alignment <<= 1) {
    auto align = std::align_val_t{alignment};
    void* single = ::operator new(100, align);
    void* array = ::operator new[](300, align);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(single) % alignment, 0u);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(array) % alignment, 0u);
    ::operator delete(single, 100, align);
    ::operator delete[](array, 300, align);
  }
  void* plain = ::operator new(48);
  ::operator delete(plain, 48);
  void* array = ::operator new[](480);
  ::operator delete[](array, 480);
}

}  // namespace
