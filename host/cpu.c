/* cpu.c -- worker_cpu_affinity: the CPU each worker's loop thread runs on.
 *
 * Like nginx's worker_cpu_affinity: a worker pinned to a CPU keeps its
 * caches warm and is never stacked on one core with another worker while a
 * second core serves Redis or the load. Only the loop thread is pinned:
 * libuv's thread pool (argon2 hashes, name lookups) is started before, so
 * its threads inherit the process's whole CPU set and a hash never waits
 * for its own worker's core. Off by default: on a host shared with other
 * busy services a pinned worker cannot move away from a busy core.
 *
 * "auto" counts the CPUs of the process's affinity mask (what taskset or a
 * cgroup allowed the master), so it respects a node started on a subset.
 * Nothing here allocates.
 */
#include "cpu.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

/* "0".."CPU_SETSIZE-1" in plain decimal, else -1. */
static int parse_cpu(const char *s) {
  long v = 0;
  if (!*s || (s[0] == '0' && s[1])) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    v = v * 10 + (*s - '0');
    if (v >= CPU_SETSIZE) return -1;
  }
  return (int)v;
}

static int is_off(char *const *list) {
  return list == NULL || list[0] == NULL || (strcmp(list[0], "off") == 0 && list[1] == NULL);
}

static int is_auto(char *const *list) {
  return list[0] && strcmp(list[0], "auto") == 0 && list[1] == NULL;
}

int fcfs_cpu_check(char *const *list, char *err, size_t errlen) {
  if (is_off(list) || is_auto(list)) return 0;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    snprintf(err, errlen, "worker_cpu_affinity: cannot read this process's CPUs: %s",
             strerror(errno));
    return -1;
  }
  for (char *const *p = list; *p; p++) {
    int cpu = parse_cpu(*p);
    if (cpu < 0) {
      snprintf(err, errlen,
               "worker_cpu_affinity must be \"auto\", \"off\" or CPU numbers (e.g. {0, 1}), "
               "got \"%s\"",
               *p);
      return -1;
    }
    if (!CPU_ISSET(cpu, &allowed)) {
      snprintf(err, errlen,
               "worker_cpu_affinity: CPU %d is not one this process may run on (%d allowed)", cpu,
               CPU_COUNT(&allowed));
      return -1;
    }
  }
  return 0;
}

int fcfs_cpu_of_worker(char *const *list, int id) {
  if (is_off(list) || id < 0) return -1;
  if (!is_auto(list)) {
    int n = 0;
    while (list[n])
      n++;
    return parse_cpu(list[id % n]);
  }
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) == 0) return -1;
  int want = id % CPU_COUNT(&allowed);
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &allowed) && want-- == 0) return cpu;
  return -1;
}

static void pool_started(uv_work_t *work) {}

static void pool_start_done(uv_work_t *work, int status) {}

int fcfs_cpu_pin_loop(uv_loop_t *loop, uv_work_t *work, int cpu) {
  int rc = uv_queue_work(loop, work, pool_started, pool_start_done);
  if (rc != 0) return rc;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0 ? 0 : -errno;
}
