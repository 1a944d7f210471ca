/* shm.h -- the shared-memory segment of one fcfs node.
 *
 * The master creates it (a memfd, so workers re-executed with uv_spawn get
 * it as an inherited descriptor) before it starts any worker; every process
 * maps it at start and unmaps it at exit. It holds what must outlive or be
 * seen across workers: heartbeats, the wanted VM generation, the state of
 * a reload (each worker's answer, the master's decision), and the counters
 * /metrics sums. Each worker writes only its own slot.
 */
#ifndef FCFS_SHM_H
#define FCFS_SHM_H

#include <stdint.h>

#include "stats.h"

#define FCFS_MAX_WORKERS 64
#define FCFS_ROUTE_SLOTS 128
#define FCFS_ROUTE_LEN 64
#define FCFS_LAT_BUCKETS 15

typedef struct {
  char route[FCFS_ROUTE_LEN];
  uint32_t status;
  uint32_t used;
  uint64_t count;
} fcfs_route_stat_t;

typedef struct {
  volatile int64_t pid;
  volatile uint64_t heartbeat_ms; /* CLOCK_MONOTONIC, comparable across processes */
  volatile uint64_t generation;   /* the VM generation this worker serves */
  uint64_t reloads, reload_failures;
  uint64_t in_flight, connections, requests;
  uint64_t accepts; /* with requests: progress the master sees while a busy loop misses a beat */
  uint64_t lua_mem_bytes;
  uint64_t lat_buckets[FCFS_LAT_BUCKETS];
  uint64_t lat_count;
  double lat_sum;
  fcfs_pool_stats_t redis, mysql;
  fcfs_route_stat_t routes[FCFS_ROUTE_SLOTS];
  uint64_t routes_overflow;
  /* the reload in progress (master mode): what this worker made of it */
  volatile uint64_t prepared;       /* generation built (or refused), written last */
  volatile uint32_t prepared_state; /* FCFS_RELOAD_OK (ready to swap) or _FAILED */
  char prepared_err[1024];
} fcfs_worker_slot_t;

typedef struct {
  uint64_t magic;
  volatile uint64_t generation; /* wanted by the latest reload order */
  volatile int64_t master_pid;  /* 0 in single-process mode */
  int32_t workers;
  uint64_t worker_restarts;
  /* reloads (master mode): workers prepare a generation, the master decides */
  volatile uint64_t accepted; /* the generation every worker runs (its snapshot) */
  volatile uint64_t decided;  /* the latest generation accepted or refused, written last */
  char decided_err[1024];     /* why `decided` was refused */
  fcfs_worker_slot_t w[FCFS_MAX_WORKERS];
} fcfs_shm_t;

/* Create a zeroed segment; *fd receives its descriptor (not close-on-exec
 * is set by the caller that passes it on). NULL on failure. */
fcfs_shm_t *fcfs_shm_create(int *fd);
fcfs_shm_t *fcfs_shm_attach(int fd);
void fcfs_shm_detach(fcfs_shm_t *shm);

uint64_t fcfs_monotonic_ms(void);

#endif
