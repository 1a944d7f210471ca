/* worker.h -- one worker process (or the whole node in single-process
 * mode): its loop, its VM generations, its backend pools, its shm slot. */
#ifndef FCFS_WORKER_H
#define FCFS_WORKER_H

#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "shm.h"

typedef struct fcfs_vm_s fcfs_vm_t;
typedef struct fcfs_server_s fcfs_server_t;
typedef struct fcfs_redis_s fcfs_redis_t;
typedef struct fcfs_mysql_s fcfs_mysql_t;
typedef struct fcfs_crypto_s fcfs_crypto_t;

typedef void (*fcfs_reload_cb)(void *arg, int ok, uint64_t generation, const char *err);

typedef struct fcfs_reload_waiter_s {
  fcfs_reload_cb cb;
  void *arg;
  struct fcfs_reload_waiter_s *next;
} fcfs_reload_waiter_t;

typedef struct fcfs_worker_s {
  uv_loop_t loop;
  const fcfs_conf_t *conf;
  int id, count;
  fcfs_shm_t *shm;
  fcfs_worker_slot_t *slot;
  fcfs_server_t *server;
  fcfs_redis_t *redis;
  fcfs_mysql_t *mysql;
  fcfs_crypto_t *crypto; /* keys, loaded once at start; outlives every VM */

  fcfs_vm_t *vm;       /* serving */
  fcfs_vm_t *loading;  /* being built by a reload, not serving yet */
  fcfs_vm_t *draining; /* the previous generation, finishing its requests */
  int listen_fd, admin_fd;
  uint64_t generation;           /* of vm */
  fcfs_reload_waiter_t *waiters; /* callers of the reload in progress */
  uint64_t waiters_after;        /* under a master: they want a decision newer than this */
  int reload_again;              /* a reload was asked while one was loading */
  int prepared;                  /* loading is built and initialised, waiting for the master */
  int finished;

  uv_timer_t tick;         /* heartbeat, access log flush, gauges, stop deadline */
  uv_timer_t reload_timer; /* starts a reload from the loop */
  uv_work_t pool_start;    /* starts libuv's pool before the loop is pinned (cpu.c) */
  uv_signal_t sigs[6];
  struct fcfs_watch_s *watch; /* dev mode, single-process (the master watches otherwise) */
  int stopping;               /* 1 = draining (QUIT), 2 = stopping now */
  uint64_t stop_deadline_ms;
  int exit_code;
  uint64_t request_seq;
  int pending_timers; /* host.timer.at/every not fired yet, over all generations */
} fcfs_worker_t;

/* Run a worker until it stops; returns the process exit code. listen_fd and
 * admin_fd (-1 when admin_listen is "") are listening sockets; shm_fd is
 * inherited, or -1 in single-process mode (the worker then creates it). */
int fcfs_worker_main(const fcfs_conf_t *conf, int id, int count, int listen_fd, int admin_fd,
                     int shm_fd);

/* Load the app in a throwaway VM the way a worker would (no init_worker, no
 * I/O): for `fcfs -t` and before `fcfs -s reload`. 0, or -1 with err. */
int fcfs_worker_check(const fcfs_conf_t *conf, char *err, size_t errlen);

/* `fcfs run SCRIPT ARGS...`: run the script as one task of a worker that has
 * the pools and no listener, logging to stderr. Returns the exit code (from
 * the script's return value; 1 and a traceback on stderr when it failed). */
int fcfs_worker_run(const fcfs_conf_t *conf, const char *script, int argc, char **argv);

/* Reload the node: a new VM generation on every worker (under a master, all
 * of them or none). cb gets the outcome; callers that ask while a reload is
 * under way share its result. */
void fcfs_worker_reload_all(fcfs_worker_t *w, fcfs_reload_cb cb, void *arg);

#endif
