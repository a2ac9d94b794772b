/* Runs one program and writes its wall time, CPU time and peak RSS to a file.
 *
 * usage: run_measured REPORT_FILE [-e NAME=VALUE ...] -- PROGRAM [ARG ...]
 *
 * The peak RSS is ru_maxrss from wait4 on a child forked from this small
 * process. A program started straight from the Python runner would report the
 * runner's own RSS whenever that is larger. At exec, Linux keeps the larger of
 * the old and the new address space's high-water mark in the process's maxrss
 * (exec_mmap in fs/exec.c), and a child forked or vforked from Python starts
 * with Python's address space. Measured: a probe whose VmHWM was 1.1 MiB
 * reported ru_maxrss 210 MiB when started from a Python holding 200 MiB.
 *
 * The -e assignments are set in the child only, so an LD_PRELOAD given this
 * way loads into PROGRAM and not into this launcher. The launcher exits with
 * PROGRAM's exit status, or 128 + the signal number if it was killed; the
 * report line is "wall_seconds=F user_seconds=F system_seconds=F
 * maxrss_kib=N exit_status=N term_signal=N". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds_between(const struct timespec* start, const struct timespec* end) {
  return (double)(end->tv_sec - start->tv_sec) + (double)(end->tv_nsec - start->tv_nsec) * 1e-9;
}

static double timeval_seconds(const struct timeval* value) {
  return (double)value->tv_sec + (double)value->tv_usec * 1e-6;
}

static void usage(const char* program) {
  fprintf(stderr, "usage: %s REPORT_FILE [-e NAME=VALUE ...] -- PROGRAM [ARG ...]\n", program);
}

int main(int argc, char** argv) {
  if (argc < 4) {
    usage(argv[0]);
    return 2;
  }
  const char* report_path = argv[1];
  int first_assignment = 2;
  int separator = 2;
  while (separator < argc && strcmp(argv[separator], "--") != 0) {
    if (strcmp(argv[separator], "-e") != 0 || separator + 1 >= argc ||
        strchr(argv[separator + 1], '=') == NULL) {
      fprintf(stderr, "%s: invalid argument \"%s\"; expected -e NAME=VALUE or --\n", argv[0],
              argv[separator]);
      usage(argv[0]);
      return 2;
    }
    separator += 2;
  }
  if (separator + 1 >= argc) {
    fprintf(stderr, "%s: missing PROGRAM after --\n", argv[0]);
    usage(argv[0]);
    return 2;
  }

  FILE* report = fopen(report_path, "w");
  if (report == NULL) {
    fprintf(stderr, "%s: cannot open report file %s: %s\n", argv[0], report_path, strerror(errno));
    return 2;
  }

  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "%s: fork failed: %s\n", argv[0], strerror(errno));
    return 2;
  }
  if (child == 0) {
    for (int i = first_assignment; i < separator; i += 2) {
      if (putenv(argv[i + 1]) != 0) {
        fprintf(stderr, "%s: putenv(%s) failed: %s\n", argv[0], argv[i + 1], strerror(errno));
        _exit(127);
      }
    }
    execvp(argv[separator + 1], &argv[separator + 1]);
    fprintf(stderr, "%s: cannot run %s: %s\n", argv[0], argv[separator + 1], strerror(errno));
    _exit(127);
  }

  int status = 0;
  struct rusage usage_data;
  while (wait4(child, &status, 0, &usage_data) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "%s: wait4 failed: %s\n", argv[0], strerror(errno));
      return 2;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);

  int exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  fprintf(report,
          "wall_seconds=%.6f user_seconds=%.6f system_seconds=%.6f maxrss_kib=%ld "
          "exit_status=%d term_signal=%d\n",
          seconds_between(&start, &end), timeval_seconds(&usage_data.ru_utime),
          timeval_seconds(&usage_data.ru_stime), usage_data.ru_maxrss, exit_status, term_signal);
  if (fclose(report) != 0) {
    fprintf(stderr, "%s: cannot write report file %s: %s\n", argv[0], report_path,
            strerror(errno));
    return 2;
  }
  return term_signal != 0 ? 128 + term_signal : exit_status;
}
