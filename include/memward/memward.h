/* memward's C API.
 *
 * A stable C ABI (C types only, every name prefixed memward_) for programs
 * that link libmemward.so or that find these functions with dlsym in a
 * process running under libmemward_preload.so. */
#ifndef MEMWARD_MEMWARD_H_
#define MEMWARD_MEMWARD_H_

#ifdef __cplusplus
extern "C" {
#endif

/* Returns memward's version, for example "0.1.0". */
const char* memward_version(void);

/* Returns "linked" in libmemward.so and "preload" in libmemward_preload.so. */
const char* memward_library_kind(void);

#ifdef __cplusplus
}
#endif

#endif /* MEMWARD_MEMWARD_H_ */
