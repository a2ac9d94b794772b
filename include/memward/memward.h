/* memward's C API: tenants, scopes, requests, budgets and statistics.
 *
 * A stable C ABI (C types only, every name prefixed memward_). Every function
 * returns a memward_status (0 on success); memward_strerror describes it.
 *
 * The functions are declared weak, and each call goes through a macro of the
 * same name that checks the function is present: a program built with this
 * header but run without memward (not linked, not preloaded) still starts,
 * and each call returns MEMWARD_ERROR_NOT_LOADED (memward_version returns
 * NULL) instead of crashing. With memward linked or preloaded, the calls go
 * to it. Taking a function's address bypasses the check. A program built
 * without PIE resolves undefined weak functions to null at link time, so it
 * must link libmemward.so to reach memward (GNU ld 2.40 on x86-64).
 * When memward is loaded but another allocator serves malloc (a library that
 * preloads before it), the calls return MEMWARD_ERROR_NOT_ALLOCATOR.
 *
 * Thread safety: every function may be called from any thread. Scopes are per
 * thread: a scope entered on a thread must be exited on that thread, in
 * reverse order of entry. */
#ifndef MEMWARD_MEMWARD_H_
#define MEMWARD_MEMWARD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MEMWARD_BUILDING_LIBRARY)
#define MEMWARD_API __attribute__((visibility("default")))
#else
#define MEMWARD_API __attribute__((weak))
#endif

typedef enum memward_status {
  MEMWARD_OK = 0,
  MEMWARD_ERROR_NOT_LOADED = 1,    /* memward is not in this process */
  MEMWARD_ERROR_NOT_ALLOCATOR = 2, /* memward is loaded but another allocator serves malloc */
  MEMWARD_ERROR_INVALID = 3,       /* an argument is invalid (null, too long, out of range) */
  MEMWARD_ERROR_NOT_FOUND = 4,     /* no tenant by that name or id */
  MEMWARD_ERROR_EXISTS = 5,        /* a tenant by that name exists already */
  MEMWARD_ERROR_FULL = 6,          /* the tenant table or an arena pool is full */
  MEMWARD_ERROR_STALE = 7,         /* the request or scope handle is no longer valid */
  MEMWARD_ERROR_ARENA = 8,         /* jemalloc could not create an arena */
  MEMWARD_ERROR_BUSY = 9,          /* the request is still current on another thread */
  MEMWARD_ERROR_IO = 10            /* a file could not be written; errno gives the reason */
} memward_status;

/* Tenant id 0 is the process (untagged memory) and 1 is memward itself. */
typedef uint32_t memward_tenant_id;
#define MEMWARD_PROCESS_TENANT 0u
#define MEMWARD_MAX_TENANT_NAME 63

typedef struct memward_tenant_options {
  uint64_t soft_limit;    /* bytes; 0 for none. Admission returns "shed" above it. */
  uint64_t hard_limit;    /* bytes; 0 for none. Admission returns "reject" above it. */
  int enforce_hard_limit; /* non-zero: allocations past the hard limit fail with ENOMEM */
  int dedicated_arena;    /* non-zero: ask for an arena of the tenant's own */
} memward_tenant_options;

/* The saved state of a thread, returned by scope entry and passed back to
 * exit. Treat as opaque. */
typedef struct memward_scope {
  uint32_t tenant;
  uint32_t slot;
  uint32_t generation;
  uint32_t reserved;
} memward_scope;

/* An open request: where its memory comes from and the scope to restore when
 * it ends. Treat as opaque. */
typedef struct memward_request {
  memward_tenant_id tenant;
  uint32_t slot;       /* the request arena, 0 when the pool was exhausted */
  uint32_t generation; /* detects a handle used after its request ended */
  memward_scope saved;
} memward_request;

typedef struct memward_request_summary {
  uint64_t peak_bytes;      /* most live bytes at once during the request */
  uint64_t allocated_bytes; /* bytes allocated in the request (usable sizes) */
  uint64_t escaped_bytes;   /* bytes still live when it ended: caches or leaks */
  uint64_t allocations;
  uint64_t frees;
  int had_arena;            /* 0: the pool was exhausted and the request was
                               counted in its tenant's arena only, so escaped
                               bytes are not known */
} memward_request_summary;

typedef enum memward_admission {
  MEMWARD_ADMIT = 0,
  MEMWARD_SHED = 1,
  MEMWARD_REJECT = 2
} memward_admission;

typedef enum memward_admission_reason {
  MEMWARD_REASON_NONE = 0,
  MEMWARD_REASON_SOFT_LIMIT = 1,
  MEMWARD_REASON_HARD_LIMIT = 2,
  MEMWARD_REASON_PRESSURE = 3 /* the process is shedding or rejecting under memory pressure */
} memward_admission_reason;

/* A tenant's counters. For the process (tenant 0), whose untagged allocations
   go to jemalloc without being counted, live_bytes is what jemalloc's own
   arenas hold, and peak_bytes, allocated_bytes, freed_bytes, allocations and
   frees stay 0. */
typedef struct memward_tenant_stats {
  memward_tenant_id id;
  char name[MEMWARD_MAX_TENANT_NAME + 1];
  int64_t live_bytes;
  int64_t peak_bytes;
  uint64_t allocated_bytes;
  uint64_t freed_bytes;
  uint64_t allocations;
  uint64_t frees;
  uint64_t soft_limit;
  uint64_t hard_limit;
  int enforce_hard_limit;
  int dedicated_arena;
  uint64_t admitted;
  uint64_t shed;
  uint64_t rejected;
  uint64_t refused_allocations; /* allocations that failed on the hard limit */
} memward_tenant_stats;

/* memward's own memory: what it adds to the heap it accounts for. */
typedef struct memward_overhead {
  uint64_t table_bytes;         /* resident pages of the tenant, arena and owner tables */
  uint64_t thread_block_bytes;  /* per-thread blocks of slot caches */
  uint64_t explicit_caches;     /* jemalloc thread caches created for memward's arenas */
  uint64_t explicit_cache_bytes;/* their size, as jemalloc counted the first one */
  uint64_t total_bytes;
} memward_overhead;

/* The allocation sampler (leak tracking). */
typedef struct memward_sampler_stats {
  int64_t interval_bytes;         /* mean bytes between samples; 0 when off */
  uint64_t samples_taken;         /* since start, including freed samples */
  uint64_t samples_dropped;       /* not recorded: tables full or not set up */
  uint64_t live_samples;
  uint64_t table_bytes;           /* the sample tables' block in memward's arena */
  uint64_t table_resident_bytes;  /* of those, in resident pages */
  uint64_t unwinder_cache_bytes;  /* bytes the unwinders have mapped for their
                                     caches (the frame rule table and
                                     libunwind's), at most
                                     sample_unwinder_max_bytes */
  int64_t process_sampled_bytes;  /* untagged sampled blocks, which the sampler's
                                     arena holds instead of jemalloc's own */
} memward_sampler_stats;

MEMWARD_API const char* memward_version(void);
MEMWARD_API const char* memward_library_kind(void);
MEMWARD_API const char* memward_strerror(int status);

MEMWARD_API void memward_tenant_options_init(memward_tenant_options* options);
MEMWARD_API int memward_tenant_register(const char* name, const memward_tenant_options* options,
                                        memward_tenant_id* id);
MEMWARD_API int memward_tenant_find(const char* name, memward_tenant_id* id);
MEMWARD_API int memward_tenant_set_limits(memward_tenant_id id, uint64_t soft_limit,
                                          uint64_t hard_limit, int enforce_hard_limit);

MEMWARD_API int memward_scope_enter(memward_tenant_id id, memward_scope* saved);
MEMWARD_API int memward_scope_exit(const memward_scope* saved);

MEMWARD_API int memward_request_begin(memward_tenant_id id, memward_request* request);
/* Makes an open request current on the calling thread (for requests that
 * move between threads); exit with memward_scope_exit. */
MEMWARD_API int memward_request_enter(const memward_request* request, memward_scope* saved);
MEMWARD_API int memward_request_end(memward_request* request, memward_request_summary* summary);

MEMWARD_API int memward_admit(memward_tenant_id id, uint64_t expected_bytes,
                              memward_admission* answer, memward_admission_reason* reason);

MEMWARD_API int memward_tenant_stats_get(memward_tenant_id id, memward_tenant_stats* stats);
/* Writes up to `capacity` tenants (the process and memward first) and sets
 * *count to the number of tenants. */
MEMWARD_API int memward_tenant_stats_list(memward_tenant_stats* stats, size_t capacity,
                                          size_t* count);
/* Publishes the calling thread's unpublished counts and returns its cached
 * memory to the arenas. */
MEMWARD_API int memward_thread_flush(void);
MEMWARD_API int memward_overhead_get(memward_overhead* overhead);
MEMWARD_API int memward_sampler_stats_get(memward_sampler_stats* stats);
/* Sets the mean sampling interval in bytes (0 turns sampling off, at most
 * 1 GiB); MEMWARD_ERROR_INVALID for a value out of range. */
MEMWARD_API int memward_sample_interval_set(int64_t bytes);

/* Pressure and reclaim (the warden thread). */
typedef enum memward_pressure_level {
  MEMWARD_PRESSURE_NORMAL = 0,
  MEMWARD_PRESSURE_SOFT = 1,
  MEMWARD_PRESSURE_HIGH = 2,
  MEMWARD_PRESSURE_CRITICAL = 3
} memward_pressure_level;

/* A cache or pool that can give memory back. memward calls `count` and
 * `reclaim` on its warden thread only, never from inside malloc, and never
 * two calls of one reclaimer at once. */
typedef struct memward_reclaimer {
  const char* name;          /* copied at registration; at most 63 bytes */
  int priority;              /* lower values are asked first */
  uint32_t time_budget_us;   /* the time one reclaim call should take; 0 for the default */
  void* context;             /* passed to both callbacks */
  uint64_t (*count)(void* context);                          /* bytes it could free now */
  uint64_t (*reclaim)(void* context, uint64_t target_bytes); /* returns bytes freed */
} memward_reclaimer;
typedef uint32_t memward_reclaimer_id;

MEMWARD_API int memward_reclaimer_register(const memward_reclaimer* reclaimer,
                                           memward_reclaimer_id* id);
/* After it returns, memward makes no further call to the reclaimer. */
MEMWARD_API int memward_reclaimer_unregister(memward_reclaimer_id id);
MEMWARD_API int memward_pressure_get(memward_pressure_level* level);
/* Empties the calling thread's allocation caches, then returns the process's
   dirty allocator pages to the operating system now. */
MEMWARD_API int memward_purge(void);
/* Writes memward's metrics in Prometheus text format into `buffer` and sets
 * *length to the full length (without the NUL). When the text does not fit,
 * writes nothing and returns MEMWARD_ERROR_FULL with *length the size needed. */
MEMWARD_API int memward_metrics_text(char* buffer, size_t capacity, size_t* length);

/* Heap profiles and leak reports from the allocation sampler. */
typedef enum memward_profile_format {
  MEMWARD_PROFILE_PPROF = 0,  /* pprof's profile.proto, gzipped (go tool pprof reads it) */
  MEMWARD_PROFILE_FOLDED = 1, /* folded stacks for flame graphs, estimated in-use bytes */
  MEMWARD_PROFILE_JSON = 2    /* call sites with their estimates and stacks */
} memward_profile_format;

/* Writes a heap profile of the sampled allocations to a new file at `path`
 * (mode 0600, replacing a file there), symbolized in the calling thread.
 * Returns MEMWARD_ERROR_INVALID for a null path or an unknown format and
 * MEMWARD_ERROR_IO when the file cannot be written, or when a pprof profile
 * cannot be compressed (errno ENOMEM: libz.so.1 could not be loaded, which
 * memward logs once, or zlib ran out of memory). The call allocates as
 * memward (charged to memward's own tenant, never sampled). */
MEMWARD_API int memward_heap_profile_write(const char* path, int format);
/* Closes the leak detector's current window now, as the warden does every
 * leak_window: a program can align windows with its own work cycles. */
MEMWARD_API int memward_leak_window_close(void);
/* Writes the leak report of the last closed window (JSON) to `path`, like
 * memward_heap_profile_write. */
MEMWARD_API int memward_leak_report_write(const char* path);

#if !defined(MEMWARD_BUILDING_LIBRARY)
#define MEMWARD_CHECKED_CALL_(function, fallback, ...) \
  ((function) ? (function)(__VA_ARGS__) : (fallback))
#define memward_version() ((memward_version) ? (memward_version)() : (const char*)0)
#define memward_library_kind() ((memward_library_kind) ? (memward_library_kind)() : "none")
#define memward_strerror(...) \
  MEMWARD_CHECKED_CALL_(memward_strerror, "memward is not loaded in this process", __VA_ARGS__)
static inline void memward_tenant_options_clear_(memward_tenant_options* options) {
  if (options == 0) return;
  options->soft_limit = 0;
  options->hard_limit = 0;
  options->enforce_hard_limit = 0;
  options->dedicated_arena = 0;
}
#define memward_tenant_options_init(options)                                      \
  ((memward_tenant_options_init) ? (memward_tenant_options_init)(options)          \
                                 : memward_tenant_options_clear_(options))
#define memward_tenant_register(...) \
  MEMWARD_CHECKED_CALL_(memward_tenant_register, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_tenant_find(...) \
  MEMWARD_CHECKED_CALL_(memward_tenant_find, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_tenant_set_limits(...) \
  MEMWARD_CHECKED_CALL_(memward_tenant_set_limits, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_scope_enter(...) \
  MEMWARD_CHECKED_CALL_(memward_scope_enter, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_scope_exit(...) \
  MEMWARD_CHECKED_CALL_(memward_scope_exit, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_request_begin(...) \
  MEMWARD_CHECKED_CALL_(memward_request_begin, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_request_enter(...) \
  MEMWARD_CHECKED_CALL_(memward_request_enter, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_request_end(...) \
  MEMWARD_CHECKED_CALL_(memward_request_end, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_admit(...) \
  MEMWARD_CHECKED_CALL_(memward_admit, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_tenant_stats_get(...) \
  MEMWARD_CHECKED_CALL_(memward_tenant_stats_get, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_tenant_stats_list(...) \
  MEMWARD_CHECKED_CALL_(memward_tenant_stats_list, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_thread_flush() \
  ((memward_thread_flush) ? (memward_thread_flush)() : MEMWARD_ERROR_NOT_LOADED)
#define memward_overhead_get(...) \
  MEMWARD_CHECKED_CALL_(memward_overhead_get, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_sampler_stats_get(...) \
  MEMWARD_CHECKED_CALL_(memward_sampler_stats_get, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_sample_interval_set(...) \
  MEMWARD_CHECKED_CALL_(memward_sample_interval_set, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_reclaimer_register(...) \
  MEMWARD_CHECKED_CALL_(memward_reclaimer_register, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_reclaimer_unregister(...) \
  MEMWARD_CHECKED_CALL_(memward_reclaimer_unregister, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_pressure_get(...) \
  MEMWARD_CHECKED_CALL_(memward_pressure_get, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_purge() ((memward_purge) ? (memward_purge)() : MEMWARD_ERROR_NOT_LOADED)
#define memward_metrics_text(...) \
  MEMWARD_CHECKED_CALL_(memward_metrics_text, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_heap_profile_write(...) \
  MEMWARD_CHECKED_CALL_(memward_heap_profile_write, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#define memward_leak_window_close() \
  ((memward_leak_window_close) ? (memward_leak_window_close)() : MEMWARD_ERROR_NOT_LOADED)
#define memward_leak_report_write(...) \
  MEMWARD_CHECKED_CALL_(memward_leak_report_write, MEMWARD_ERROR_NOT_LOADED, __VA_ARGS__)
#endif

#ifdef __cplusplus
}
#endif

#endif /* MEMWARD_MEMWARD_H_ */
