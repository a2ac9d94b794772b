// A host program for the unwinding test: throws C++ exceptions through
// several frames and on a second thread, calls backtrace(), and prints what
// it saw and which libraries serve the unwinding functions. Its output must
// be the same with and without memward loaded.
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <string.h>

#include <stdexcept>
#include <string>
#include <thread>

namespace {

__attribute__((noinline)) void ThrowAtDepth(int depth) {
  if (depth == 0) throw std::runtime_error("depth reached " + std::string(100, 'x'));
  ThrowAtDepth(depth - 1);
  asm volatile("");
}

int CatchMany(int rounds) {
  int caught = 0;
  for (int i = 0; i < rounds; i++) {
    try {
      ThrowAtDepth(i % 8);
    } catch (const std::runtime_error& error) {
      if (strncmp(error.what(), "depth reached", 13) == 0) caught++;
    }
  }
  return caught;
}

__attribute__((noinline)) int CountFramesHere() {
  void* frames[64];
  int depth = backtrace(frames, 64);
  asm volatile("");
  return depth;
}

// Prints the base name of the library that the global scope resolves
// `symbol` to, as later-loaded libraries would see it.
void PrintProvider(const char* symbol) {
  void* address = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info{};
  const char* name = "none";
  if (address != nullptr && dladdr(address, &info) != 0 && info.dli_fname != nullptr) {
    const char* slash = strrchr(info.dli_fname, '/');
    name = slash != nullptr ? slash + 1 : info.dli_fname;
  }
  printf("%s from %s\n", symbol, name);
}

}  // namespace

int main() {
  printf("caught %d of 2000\n", CatchMany(2000));
  int on_thread = 0;
  std::thread thread([&] { on_thread = CatchMany(500); });
  thread.join();
  printf("caught on thread %d of 500\n", on_thread);
  printf("backtrace depth %d\n", CountFramesHere());
  PrintProvider("_Unwind_RaiseException");
  PrintProvider("_Unwind_Backtrace");
  PrintProvider("_Unwind_Resume");
  PrintProvider("backtrace");
  return 0;
}
