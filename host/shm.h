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

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "stats.h"

#define FCFS_MAX_WORKERS 64
/* Route x status pairs per worker (open addressing): a few hundred pairs at
 * a low load factor. Pairs beyond are counted in routes_overflow. */
#define FCFS_ROUTE_SLOTS 1024
#define FCFS_ROUTE_LEN 64
#define FCFS_LAT_BUCKETS 15
/* host.metrics.counter/gauge of the application, keyed by name. */
#define FCFS_APP_METRICS 256
#define FCFS_METRIC_NAME 64
#define FCFS_METRIC_HELP 160

enum { FCFS_METRIC_FREE = 0, FCFS_METRIC_COUNTER = 1, FCFS_METRIC_GAUGE = 2, FCFS_METRIC_CLAIMED };

/* Written once by the process that claims it (type last); counter is added
 * to by every worker with a compare-and-swap; a gauge has one value per
 * worker, in the worker's slot. */
typedef struct {
  char name[FCFS_METRIC_NAME];
  char help[FCFS_METRIC_HELP];
  uint32_t type; /* FCFS_METRIC_*, read and written atomically */
  uint32_t pad;
  uint64_t counter_bits; /* a double, as bits for the compare-and-swap */
} fcfs_app_metric_t;

typedef struct {
  char route[FCFS_ROUTE_LEN];
  uint32_t status;
  uint32_t used;
  uint64_t count;
} fcfs_route_stat_t;

typedef struct {
  volatile int64_t pid;
  volatile uint64_t heartbeat_ms;  /* CLOCK_MONOTONIC, comparable across processes */
  volatile uint64_t generation;    /* the VM generation this worker serves */
  volatile uint32_t signals_ready; /* its HUP/USR1/USR2 handlers are in place (0 at spawn) */
  uint64_t reloads, reload_failures;
  uint64_t in_flight, connections, requests;
  uint64_t accepts,
      starts; /* with requests: progress the master sees while a busy loop misses a beat */
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
  double app_gauges[FCFS_APP_METRICS]; /* this worker's value of each app gauge */
} fcfs_worker_slot_t;

typedef struct {
  uint64_t magic;
  uint64_t size;                /* bytes mapped, this struct and the dictionaries */
  uint64_t dicts_off;           /* where the shared dictionaries start, 0 = none */
  uint64_t stock_off;           /* where the stock gates start (stock.h) */
  volatile uint64_t generation; /* wanted by the latest reload order */
  volatile int64_t master_pid;  /* 0 in single-process mode */
  int32_t workers;
  uint64_t worker_restarts;
  /* reloads (master mode): workers prepare a generation, the master decides */
  volatile uint64_t accepted; /* the generation every worker runs (its snapshot) */
  volatile uint64_t decided;  /* the latest generation accepted or refused, written last */
  char decided_err[1024];     /* why `decided` was refused */
  fcfs_app_metric_t app[FCFS_APP_METRICS];
  fcfs_worker_slot_t w[FCFS_MAX_WORKERS];
} fcfs_shm_t;

/* Create a zeroed segment with room for, and the layout of, the shared
 * dictionaries and the stock gates of conf; *fd receives its descriptor (not close-on-exec
 * is set by the caller that passes it on). NULL on failure. */
fcfs_shm_t *fcfs_shm_create(const fcfs_conf_t *conf, int *fd);
fcfs_shm_t *fcfs_shm_attach(int fd);
void fcfs_shm_detach(fcfs_shm_t *shm);
/* The shared dictionaries' region (shared.h), or NULL when none. */
void *fcfs_shm_dicts(const fcfs_shm_t *shm);
/* The stock gates' table (stock.h). */
void *fcfs_shm_stock(const fcfs_shm_t *shm);

#endif
