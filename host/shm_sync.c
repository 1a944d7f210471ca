/* shm_sync.c -- the process-shared robust mutex and the monotonic clock
 * that the structures living in the shm segment use (shared.c, stock.c).
 * Owns nothing: the mutexes live where their callers put them. */
#include "shm_sync.h"

#include <errno.h>
#include <time.h>

int fcfs_shm_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a) != 0) return -1;
  int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc == 0 ? 0 : -1;
}

int fcfs_shm_mutex_lock(pthread_mutex_t *m) {
  int rc = pthread_mutex_lock(m);
  if (rc == 0) return 0;
  if (rc != EOWNERDEAD) return -1;
  /* Mark the mutex usable before the caller repairs: dying again during
   * the repair must leave EOWNERDEAD for the next one, not a mutex that can
   * never be locked again. */
  pthread_mutex_consistent(m);
  return 1;
}

uint64_t fcfs_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
