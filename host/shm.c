/* shm.c -- creating and mapping the node's shared-memory segment (see
 * shm.h for what lives in it). A memfd is used rather than a named POSIX
 * segment so nothing is left behind in /dev/shm when a node is killed. */
#include "shm.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC 0x66636673686d3031ull /* "fcfsshm01" */

fcfs_shm_t *fcfs_shm_create(int *fd) {
  int f = memfd_create("fcfs-shm", 0);
  if (f < 0) return NULL;
  if (ftruncate(f, sizeof(fcfs_shm_t)) != 0) {
    close(f);
    return NULL;
  }
  fcfs_shm_t *shm = fcfs_shm_attach(f);
  if (shm == NULL) {
    close(f);
    return NULL;
  }
  shm->magic = SHM_MAGIC;
  *fd = f;
  return shm;
}

fcfs_shm_t *fcfs_shm_attach(int fd) {
  void *p = mmap(NULL, sizeof(fcfs_shm_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return NULL;
  fcfs_shm_t *shm = p;
  if (shm->magic != 0 && shm->magic != SHM_MAGIC) {
    munmap(p, sizeof(fcfs_shm_t));
    return NULL;
  }
  return shm;
}

void fcfs_shm_detach(fcfs_shm_t *shm) {
  if (shm) munmap(shm, sizeof(fcfs_shm_t));
}

uint64_t fcfs_monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
