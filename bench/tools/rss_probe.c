/* A tiny program for measuring an allocator's resident cost: it makes one
 * small allocation (so the allocator initializes), optionally waits so that
 * lazily started threads come up, then prints its own VmRSS and VmHWM from
 * /proc/self/status in KiB as "vmrss_kib=N vmhwm_kib=N".
 *
 * usage: rss_probe [WAIT_MS]   (default 0) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long read_status_kib(const char* status, const char* field) {
  const char* line = strstr(status, field);
  if (line == NULL) return -1;
  return strtol(line + strlen(field), NULL, 10);
}

int main(int argc, char** argv) {
  long wait_ms = 0;
  if (argc > 2) {
    fprintf(stderr, "usage: %s [WAIT_MS]\n", argv[0]);
    return 2;
  }
  if (argc == 2) {
    char* end = NULL;
    wait_ms = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || wait_ms < 0 || wait_ms > 60000) {
      fprintf(stderr, "%s: invalid WAIT_MS \"%s\"; expected milliseconds from 0 to 60000\n",
              argv[0], argv[1]);
      return 2;
    }
  }

  volatile char* object = malloc(64);
  if (object == NULL) {
    fprintf(stderr, "%s: malloc(64) returned NULL\n", argv[0]);
    return 1;
  }
  object[0] = 1;
  free((void*)object);

  if (wait_ms > 0) {
    struct timespec delay = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
    }
  }

  char status[8192];
  FILE* file = fopen("/proc/self/status", "r");
  if (file == NULL) {
    fprintf(stderr, "%s: cannot open /proc/self/status: %s\n", argv[0], strerror(errno));
    return 1;
  }
  size_t length = fread(status, 1, sizeof(status) - 1, file);
  fclose(file);
  status[length] = '\0';

  long rss = read_status_kib(status, "VmRSS:");
  long hwm = read_status_kib(status, "VmHWM:");
  if (rss < 0 || hwm < 0) {
    fprintf(stderr, "%s: VmRSS or VmHWM missing from /proc/self/status\n", argv[0]);
    return 1;
  }
  printf("vmrss_kib=%ld vmhwm_kib=%ld\n", rss, hwm);
  return 0;
}
