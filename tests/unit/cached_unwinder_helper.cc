// A shared library that the cached unwinder test loads with dlopen, so that
// captured stacks cross a library that was not loaded at start-up.
extern "C" __attribute__((visibility("default"), noinline)) int memward_test_call_through(
    int (*callback)(void*), void* argument, int depth) {
  if (depth <= 0) return callback(argument);
  int result = memward_test_call_through(callback, argument, depth - 1);
  asm volatile("" ::: "memory");  // keeps the recursive call from becoming a jump
  return result + 1;
}
