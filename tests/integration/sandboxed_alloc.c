// Installs a seccomp filter that allows only a minimal set of system calls,
// then allocates heavily on one thread and prints a checksum of the data it
// read back. Run under LD_PRELOAD, it shows whether the allocator needs any
// system call beyond that set once the program is running (opening a file,
// creating a socket or a thread, ...).
//
// Usage: memward_sandboxed_alloc MODE LIBRARY_NAME LINGER_MS
//   MODE errno: calls outside the set fail with EPERM, in every thread.
//   MODE kill:  no_new_privs, and a call outside the set kills the process
//               with SIGSYS.
//   MODE trap:  like kill, but a SIGSYS handler prints "blocked syscall N in
//               the main thread" (or "in another thread") and exits with
//               code 90, to name the call and the thread that made it.
//   LIBRARY_NAME: file name of the preloaded library; each loaded object
//               with that name is printed as "library=PATH".
//   LINGER_MS:  time to sleep after the workload, so that a background
//               thread started by the allocator gets to make its next call.
//
// Output on success: "filter=MODE", "threads_before_filter=N",
// "library=PATH" lines, and "checksum=HEX operations=N". Exit codes: 0 on
// success, 2 for bad usage or a failed filter set-up, 3 when the allocator
// returned NULL or corrupted data, 90 in trap mode when a call was blocked.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// jemalloc's control interface, exported by memward. It is absent under
// glibc's malloc, where the weak reference stays NULL.
extern int mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
                   size_t new_length) __attribute__((weak));

enum { kSlotCount = 1024, kOperationCount = 60000 };

struct slot {
  unsigned char* data;
  size_t size;
  uint64_t tag;
};

static struct slot slots[kSlotCount];
static uint64_t random_state = 0x9e3779b97f4a7c15ull;
static uint64_t checksum = 0xcbf29ce484222325ull;

// Writes a whole line with write(2): stdio may call fstat on first use,
// which the filter does not allow.
static void print_line(const char* text) {
  size_t length = strlen(text);
  while (length > 0) {
    ssize_t written = write(STDOUT_FILENO, text, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;
    text += written;
    length -= (size_t)written;
  }
}

static void fail(const char* message, size_t size) {
  char line[256];
  snprintf(line, sizeof line, "error: %s (size %zu)\n", message, size);
  print_line(line);
  _exit(3);
}

static uint64_t next_random(void) {
  random_state ^= random_state >> 12;
  random_state ^= random_state << 25;
  random_state ^= random_state >> 27;
  return random_state * 0x2545f4914f6cdd1dull;
}

static void add_to_checksum(uint64_t value) {
  checksum ^= value;
  checksum *= 0x100000001b3ull;
}

static unsigned char pattern_byte(uint64_t tag, size_t offset) {
  uint64_t mixed = (tag + offset) * 0x9e3779b97f4a7c15ull;
  return (unsigned char)(mixed >> 56);
}

// Returns the next offset of a block that carries the pattern. A block of up
// to 8 KiB carries it in every byte. A larger block carries it in its first
// and last 512 bytes and in one byte of every 4 KiB page, so that each page
// is touched without writing gigabytes.
static size_t next_checked_offset(size_t size, size_t offset) {
  if (size <= 8192 || offset + 1 < 512 || offset + 1 >= size - 512) return offset + 1;
  size_t next_page = (offset / 4096 + 1) * 4096;
  return next_page < size - 512 ? next_page : size - 512;
}

static void fill_block(unsigned char* data, size_t size, uint64_t tag) {
  for (size_t offset = 0; offset < size; offset = next_checked_offset(size, offset)) {
    data[offset] = pattern_byte(tag, offset);
  }
}

// Checks the pattern of `tag` in the first `length` bytes of a block that
// was filled at `filled_size`, and folds the bytes into the checksum.
static void verify_block(const unsigned char* data, size_t filled_size, size_t length,
                         uint64_t tag) {
  uint64_t byte_sum = 0;
  for (size_t offset = 0; offset < length; offset = next_checked_offset(filled_size, offset)) {
    if (data[offset] != pattern_byte(tag, offset)) fail("block content changed", filled_size);
    byte_sum += data[offset];
  }
  add_to_checksum(tag ^ (uint64_t)length);
  add_to_checksum(byte_sum);
}

static size_t random_size(void) {
  uint64_t choice = next_random() % 1000;
  if (choice < 700) return 1 + next_random() % 1024;                      // small
  if (choice < 950) return 1024 + next_random() % (128 * 1024);           // medium
  if (choice < 998) return 128 * 1024 + next_random() % (4 << 20);        // large
  return (4 << 20) + next_random() % (12 << 20);                          // huge, 4-16 MiB
}

static void release_slot(struct slot* slot) {
  if (slot->data == NULL) return;
  verify_block(slot->data, slot->size, slot->size, slot->tag);
  free(slot->data);
  slot->data = NULL;
}

static void allocate_slot(struct slot* slot, uint64_t tag) {
  size_t size = random_size();
  uint64_t kind = next_random() % 10;
  unsigned char* data = NULL;
  if (kind < 6) {
    data = malloc(size);
  } else if (kind < 8) {
    data = calloc(1, size);
    if (data == NULL) fail("calloc returned NULL", size);
    for (size_t offset = 0; offset < size; offset = next_checked_offset(size, offset)) {
      if (data[offset] != 0) fail("calloc memory is not zero", size);
    }
  } else {
    size_t alignment = (size_t)16 << (next_random() % 9);  // 16 B to 4 KiB
    void* aligned = NULL;
    if (kind == 8) {
      if (posix_memalign(&aligned, alignment, size) != 0) aligned = NULL;
    } else {
      aligned = aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    }
    data = aligned;
    if (data != NULL && (uintptr_t)data % alignment != 0) fail("block is misaligned", size);
  }
  if (data == NULL) fail("allocation returned NULL", size);
  if (malloc_usable_size(data) < size) fail("malloc_usable_size is below the request", size);
  fill_block(data, size, tag);
  slot->data = data;
  slot->size = size;
  slot->tag = tag;
}

static void reallocate_slot(struct slot* slot) {
  size_t new_size = random_size();
  size_t kept_size = new_size < slot->size ? new_size : slot->size;
  unsigned char* data = realloc(slot->data, new_size);
  if (data == NULL) fail("realloc returned NULL", new_size);
  verify_block(data, slot->size, kept_size, slot->tag);
  // The pattern depends only on the tag and the offset, so refilling at the
  // new size leaves the kept bytes as they were.
  fill_block(data, new_size, slot->tag);
  slot->data = data;
  slot->size = new_size;
}

// Reads the allocator's statistics and purges its unused pages through
// mallctl, as a service would from a timer.
static void exercise_mallctl(void) {
  if (mallctl == NULL) return;
  uint64_t epoch = 1;
  size_t epoch_length = sizeof epoch;
  if (mallctl("epoch", &epoch, &epoch_length, &epoch, epoch_length) != 0) {
    fail("mallctl epoch failed", 0);
  }
  size_t allocated = 0;
  size_t allocated_length = sizeof allocated;
  if (mallctl("stats.allocated", &allocated, &allocated_length, NULL, 0) != 0 || allocated == 0) {
    fail("mallctl stats.allocated failed or is zero", allocated);
  }
  // 4096 is MALLCTL_ARENAS_ALL in jemalloc 5.
  if (mallctl("arena.4096.purge", NULL, NULL, NULL, 0) != 0) fail("mallctl purge failed", 0);
}

static void run_workload(void) {
  for (uint64_t operation = 0; operation < kOperationCount; ++operation) {
    struct slot* slot = &slots[next_random() % kSlotCount];
    uint64_t action = next_random() % 10;
    if (slot->data == NULL) {
      allocate_slot(slot, operation);
    } else if (action < 5) {
      release_slot(slot);
    } else if (action < 8) {
      reallocate_slot(slot);
    } else {
      release_slot(slot);
      allocate_slot(slot, operation);
    }
    if (operation % 10000 == 9999) {
      malloc_trim(0);
      exercise_mallctl();
    }
  }
  for (int index = 0; index < kSlotCount; ++index) release_slot(&slots[index]);
}

static void report_blocked_syscall(int signal_number, siginfo_t* info, void* context) {
  (void)signal_number;
  (void)context;
  char line[96];
  // The handler runs on the thread that made the call. snprintf of an int
  // and a string does not allocate.
  const char* thread = syscall(SYS_gettid) == getpid() ? "the main" : "another";
  int length = snprintf(line, sizeof line, "blocked syscall %d in %s thread\n",
                        info->si_syscall, thread);
  (void)!write(STDOUT_FILENO, line, (size_t)length);
  _exit(90);
}

static int count_threads(void) {
  FILE* status = fopen("/proc/self/status", "r");
  if (status == NULL) return -1;
  char line[256];
  int threads = -1;
  while (fgets(line, sizeof line, status) != NULL) {
    if (sscanf(line, "Threads: %d", &threads) == 1) break;
  }
  fclose(status);
  return threads;
}

// writev is here only so that glibc's fatal error messages reach stderr.
// mincore is the one call memward adds to a running program's allocations:
// libunwind checks each frame address with it while a sampled allocation's
// stack is captured. A sandbox without it must set sample_frame_pointers=true
// or sample_interval=0.
static const int allowed_syscalls[] = {
    SCMP_SYS(mincore),
    SCMP_SYS(read),          SCMP_SYS(write),        SCMP_SYS(writev),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),    SCMP_SYS(brk),          SCMP_SYS(mmap),
    SCMP_SYS(munmap),        SCMP_SYS(mremap),       SCMP_SYS(madvise),
    SCMP_SYS(mprotect),      SCMP_SYS(futex),        SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),  SCMP_SYS(rt_sigaction), SCMP_SYS(clock_gettime),
    SCMP_SYS(nanosleep),     SCMP_SYS(clock_nanosleep), SCMP_SYS(sched_yield),
    SCMP_SYS(getpid),        SCMP_SYS(gettid),       SCMP_SYS(tgkill),
};

static int install_filter(const char* mode) {
  uint32_t default_action;
  if (strcmp(mode, "errno") == 0) {
    default_action = SCMP_ACT_ERRNO(EPERM);
  } else if (strcmp(mode, "kill") == 0) {
    default_action = SCMP_ACT_KILL_PROCESS;
  } else if (strcmp(mode, "trap") == 0) {
    default_action = SCMP_ACT_TRAP;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = report_blocked_syscall;
    action.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSYS, &action, NULL) != 0) return -1;
  } else {
    return -1;
  }
  if (strcmp(mode, "errno") != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;

  scmp_filter_ctx context = seccomp_init(default_action);
  if (context == NULL) return -1;
  int result = 0;
  // Filter every thread, including any that a preloaded library started
  // before main.
  result |= seccomp_attr_set(context, SCMP_FLTATR_CTL_TSYNC, 1);
  for (size_t index = 0; index < sizeof allowed_syscalls / sizeof allowed_syscalls[0]; ++index) {
    result |= seccomp_rule_add(context, SCMP_ACT_ALLOW, allowed_syscalls[index], 0);
  }
  if (result == 0) result = seccomp_load(context);
  seccomp_release(context);
  return result;
}

struct library_search {
  const char* name;
  char lines[2048];
};

static int collect_library(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  struct library_search* search = data;
  const char* slash = strrchr(info->dlpi_name, '/');
  const char* file_name = slash != NULL ? slash + 1 : info->dlpi_name;
  if (strcmp(file_name, search->name) == 0) {
    size_t used = strlen(search->lines);
    snprintf(search->lines + used, sizeof search->lines - used, "library=%s\n", info->dlpi_name);
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s errno|kill|trap LIBRARY_NAME LINGER_MS\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  long linger_ms = strtol(argv[3], NULL, 10);
  int threads = count_threads();

  if (install_filter(mode) != 0) {
    fprintf(stderr, "failed to install the seccomp filter in mode '%s': %s\n", mode,
            strerror(errno));
    return 2;
  }
  char line[256];
  snprintf(line, sizeof line, "filter=%s\nthreads_before_filter=%d\n", mode, threads);
  print_line(line);

  if (strcmp(mode, "errno") == 0) {
    // The filter must really be in force for the run to mean anything.
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0 || errno != EPERM) {
      print_line("error: open(\"/dev/null\") was not rejected with EPERM\n");
      return 2;
    }
  }

  run_workload();

  struct timespec linger = {linger_ms / 1000, (linger_ms % 1000) * 1000000};
  while (nanosleep(&linger, &linger) != 0 && errno == EINTR) {
  }

  struct library_search search = {argv[2], ""};
  dl_iterate_phdr(collect_library, &search);
  print_line(search.lines);
  snprintf(line, sizeof line, "checksum=%016llx operations=%d\n", (unsigned long long)checksum,
           (int)kOperationCount);
  print_line(line);
  return 0;
}
