/* worker.c -- a worker process: the loop that serves HTTP with the current
 * VM generation, reloads, heartbeats and stops.
 *
 * In a node with a master, workers are started by re-executing the binary
 * with the listener on fd 3, the shm segment on fd 4 and the admin listener
 * on fd 5 (master.c). In
 * single-process mode (workers = 0) the same code binds and creates them.
 *
 * Reload: a new VM is built and its init_worker run beside the serving one;
 * only when both worked is it swapped in -- under a master, only once every
 * worker has (master.c decides; the code comes from its snapshot of lua_dir,
 * reload.h). The old VM is retired (it drains
 * its requests, bounded by drain_timeout); a generation still draining when
 * the next swap comes is cut short, so at most one drains. Callers of a
 * reload in progress share its outcome.
 *
 * Stop: QUIT (or the master disappearing) stops accepting, closes idle
 * connections and waits for in-flight requests up to drain_timeout; TERM
 * and INT stop at once. Everything is closed through the loop, which then
 * runs dry and fcfs_worker_main returns.
 *
 * Ownership: the worker struct owns the server, both pools, the VMs and its
 * handles; it lives on the heap until the loop has closed every handle.
 */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"
#include "crypto.h"
#include "log.h"
#include "mysql.h"
#include "redis.h"
#include "reload.h"
#include "request.h"
#include "server.h"
#include "shm_sync.h"
#include "timer.h"
#include "vm.h"
#include "watch.h"

static void vm_env(fcfs_worker_t *w, fcfs_vm_env_t *env);

#define TICK_MS 100
#define NSIGS 6

static const int signums[NSIGS] = {SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2};

static void worker_finish(fcfs_worker_t *w);
static void reload_start(uv_timer_t *h);

/* ---- reload ------------------------------------------------------------- */

/* Under a master, reloads are decided node-wide (master.c): a worker builds
 * the generation, answers "ready" or its error in its shm slot, and swaps it
 * in or drops it on the master's decision (USR2). Alone (workers = 0), it
 * swaps as soon as the generation is ready. */
static int has_master(const fcfs_worker_t *w) {
  return w->shm->master_pid != 0;
}

/* Where generation gen's Lua lives: the master's snapshot, or lua_dir. */
static void code_dir(const fcfs_worker_t *w, uint64_t gen, char *buf, size_t len) {
  if (has_master(w))
    fcfs_reload_dir(w->conf, gen, buf, len);
  else
    snprintf(buf, len, "%s", w->conf->lua_dir);
}

static void start_reload(fcfs_worker_t *w) {
  if (w->loading) { /* the files may have changed since it started: go again after */
    w->reload_again = 1;
    return;
  }
  /* Outcomes always arrive from the loop, never from inside the caller. */
  if (!uv_is_active((uv_handle_t *)&w->reload_timer))
    uv_timer_start(&w->reload_timer, reload_start, 0, 0);
}

static void answer_waiters(fcfs_worker_t *w, int ok, uint64_t gen, const char *err) {
  fcfs_reload_waiter_t *list = w->waiters;
  w->waiters = NULL;
  while (list) {
    fcfs_reload_waiter_t *next = list->next;
    list->cb(list->arg, ok, gen, err);
    free(list);
    list = next;
  }
}

/* This worker is done with generation gen: log, count, and alone, answer. */
static void reload_finish(fcfs_worker_t *w, int ok, uint64_t gen, const char *err) {
  if (ok) {
    w->slot->reloads++;
    fcfs_log(FCFS_LOG_NOTICE, "reloaded: generation %llu", (unsigned long long)gen);
  } else {
    w->slot->reload_failures++;
    fcfs_log(FCFS_LOG_ERROR, "reload failed, generation %llu keeps serving: %s",
             (unsigned long long)w->generation, err);
  }
  if (!has_master(w)) {
    fcfs_reload_status_write(w->conf, gen, ok ? FCFS_RELOAD_OK : FCFS_RELOAD_FAILED, err);
    answer_waiters(w, ok, ok ? gen : w->generation, err);
  }
  if (w->reload_again && !w->stopping) {
    w->reload_again = 0;
    start_reload(w);
  }
}

/* Tell the master what became of generation gen here (err NULL: ready). */
static void answer_master(fcfs_worker_t *w, uint64_t gen, const char *err) {
  fcfs_worker_slot_t *slot = w->slot;
  size_t n = err ? strlen(err) : 0; /* cut long tracebacks to the slot */
  if (n >= sizeof(slot->prepared_err)) n = sizeof(slot->prepared_err) - 1;
  memcpy(slot->prepared_err, err ? err : "", n);
  slot->prepared_err[n] = '\0';
  slot->prepared_state = err ? FCFS_RELOAD_FAILED : FCFS_RELOAD_OK;
  __atomic_store_n(&slot->prepared, gen, __ATOMIC_RELEASE);
  kill((pid_t)w->shm->master_pid, SIGUSR2);
}

static void reload_failed(fcfs_worker_t *w, uint64_t gen, const char *err) {
  if (has_master(w) && gen > w->shm->accepted) answer_master(w, gen, err);
  reload_finish(w, 0, gen, err);
}

static void swap_in(fcfs_worker_t *w, fcfs_vm_t *vm) {
  fcfs_vm_t *old = w->vm, *older = w->draining;
  w->loading = NULL;
  w->prepared = 0;
  w->vm = vm;
  w->generation = fcfs_vm_generation(vm);
  w->slot->generation = w->generation;
  w->draining = NULL;
  if (older) fcfs_vm_free(older);
  w->draining = old;
  fcfs_vm_retire(old, w->conf->drain_timeout);
  reload_finish(w, 1, w->generation, NULL);
}

/* Once the master has decided: swap in the prepared generation, or drop the
 * one being built (prepared or not: an init_worker still running past
 * reload_timeout is cancelled). The first load is left to first_init_done. */
static void settle(fcfs_worker_t *w) {
  fcfs_vm_t *vm = w->loading;
  if (vm == NULL || w->vm == NULL) return;
  uint64_t gen = fcfs_vm_generation(vm);
  uint64_t decided = __atomic_load_n(&w->shm->decided, __ATOMIC_ACQUIRE);
  uint64_t accepted = w->shm->accepted; /* written before decided */
  if (accepted == gen) {
    if (w->prepared) swap_in(w, vm);
    return;
  }
  if (decided < gen && accepted < gen) return; /* not decided yet */
  char err[sizeof(w->shm->decided_err)];
  snprintf(err, sizeof(err), "%s",
           decided == gen ? w->shm->decided_err : "superseded by a newer reload");
  w->loading = NULL;
  w->prepared = 0;
  fcfs_vm_free(vm);
  reload_finish(w, 0, gen, err);
}

/* The master decided a reload (USR2). */
static void on_decision(fcfs_worker_t *w) {
  settle(w);
  uint64_t decided = __atomic_load_n(&w->shm->decided, __ATOMIC_ACQUIRE);
  if (w->waiters && decided > w->waiters_after) {
    char err[sizeof(w->shm->decided_err)];
    snprintf(err, sizeof(err), "%s", w->shm->decided_err);
    int ok = w->shm->accepted == decided;
    answer_waiters(w, ok, ok ? decided : w->shm->accepted, ok ? NULL : err);
  }
  /* started while that reload was under way: catch up with the node */
  if (!w->loading && w->shm->accepted > w->generation) start_reload(w);
}

static void reload_init_done(fcfs_vm_t *vm, const char *err, void *arg) {
  fcfs_worker_t *w = arg;
  uint64_t gen = fcfs_vm_generation(vm);
  if (err || w->stopping) {
    char msg[4096];
    snprintf(msg, sizeof(msg), "%s%s", err ? "init_worker: " : "", err ? err : "worker stopping");
    w->loading = NULL;
    fcfs_vm_free(vm); /* its init task is over: vm.c calls us after it ended */
    reload_failed(w, gen, msg);
    return;
  }
  if (!has_master(w)) {
    swap_in(w, vm);
    return;
  }
  w->prepared = 1;
  if (gen > w->shm->accepted) answer_master(w, gen, NULL);
  settle(w);
}

static void reload_start(uv_timer_t *h) {
  fcfs_worker_t *w = h->data;
  fcfs_shm_t *shm = w->shm;
  if (w->stopping) {
    reload_finish(w, 0, w->generation, "worker stopping");
    return;
  }
  uint64_t gen;
  if (has_master(w)) {
    /* the reload under way, else the accepted generation (catching up) */
    uint64_t decided = __atomic_load_n(&shm->decided, __ATOMIC_ACQUIRE);
    gen = shm->generation > decided ? shm->generation : shm->accepted;
    if (gen <= w->generation || gen == w->slot->prepared) return; /* nothing new */
  } else {
    gen = shm->generation;
    if (gen <= w->generation) gen = w->generation + 1;
    if (shm->generation < gen) shm->generation = gen;
  }
  char dir[4096], err[4096];
  code_dir(w, gen, dir, sizeof(dir));
  fcfs_vm_env_t env;
  vm_env(w, &env);
  fcfs_vm_t *vm = fcfs_vm_new(&env, gen, dir, err, sizeof(err));
  if (vm == NULL) {
    reload_failed(w, gen, err);
    return;
  }
  w->loading = vm;
  fcfs_vm_init(vm, reload_init_done, w);
}

static int add_waiter(fcfs_worker_t *w, fcfs_reload_cb cb, void *arg) {
  fcfs_reload_waiter_t *wt = malloc(sizeof(*wt));
  if (wt == NULL) {
    cb(arg, 0, w->generation, "out of memory");
    return -1;
  }
  if (w->waiters == NULL) w->waiters_after = __atomic_load_n(&w->shm->decided, __ATOMIC_ACQUIRE);
  wt->cb = cb;
  wt->arg = arg;
  wt->next = w->waiters;
  w->waiters = wt;
  return 0;
}

void fcfs_worker_reload_all(fcfs_worker_t *w, fcfs_reload_cb cb, void *arg) {
  if (add_waiter(w, cb, arg) != 0) return;
  if (has_master(w)) {
    /* the master runs the reload; its USR2 brings the outcome (on_decision) */
    if (kill((pid_t)w->shm->master_pid, SIGHUP) != 0)
      answer_waiters(w, 0, w->generation, "the master is gone");
    return;
  }
  __atomic_add_fetch(&w->shm->generation, 1, __ATOMIC_SEQ_CST);
  start_reload(w);
}

/* ---- stop ------------------------------------------------------------------ */

static void maybe_exit(fcfs_worker_t *w);

static void vm_closed(fcfs_worker_t *w, fcfs_vm_t *vm) {
  if (w->draining == vm) w->draining = NULL;
  if (w->vm == vm) w->vm = NULL;
  if (w->loading == vm) w->loading = NULL;
  maybe_exit(w);
}

/* What a VM of w gets from it (vm.h). */
static void vm_env(fcfs_worker_t *w, fcfs_vm_env_t *env) {
  *env = (fcfs_vm_env_t){.w = w,
                         .loop = &w->loop,
                         .conf = w->conf,
                         .stopping = &w->stopping,
                         .pending_timers = &w->pending_timers,
                         .retiring = fcfs_timers_fire_premature,
                         .closed = vm_closed};
}

/* The server's calls back (server.h). */
static void serve_request(void *arg, fcfs_request_t *r) {
  fcfs_worker_t *w = arg;
  fcfs_request_start(w->vm, r);
}

static void server_idle(void *arg) {
  maybe_exit(arg);
}

static int ready_to_exit(fcfs_worker_t *w) {
  return w->stopping && !w->finished && (w->server == NULL || fcfs_server_busy(w->server) == 0) &&
         (w->draining == NULL || fcfs_vm_live_tasks(w->draining) == 0);
}

static void on_tick(uv_timer_t *h);

/* Called from deep inside a request's end (its task still on the stack):
 * the exit itself runs from the loop, on the next tick, made immediate. */
static void maybe_exit(fcfs_worker_t *w) {
  if (ready_to_exit(w)) uv_timer_start(&w->tick, on_tick, 0, TICK_MS);
}

static void handle_closed(uv_handle_t *h) {
  (void)h;
}

static void redis_closed(void *arg) {
  (void)arg;
}

static void worker_finish(fcfs_worker_t *w) {
  if (w->finished) return;
  w->finished = 1;
  if (w->server) fcfs_server_close(w->server);
  if (w->loading) fcfs_vm_free(w->loading);
  if (w->draining) fcfs_vm_free(w->draining);
  if (w->vm) fcfs_vm_free(w->vm);
  if (w->redis) fcfs_redis_close(w->redis, redis_closed, NULL);
  w->redis = NULL;
  if (w->mysql) fcfs_mysql_free(w->mysql);
  w->mysql = NULL;
  uv_timer_stop(&w->tick);
  uv_close((uv_handle_t *)&w->tick, handle_closed);
  uv_close((uv_handle_t *)&w->reload_timer, handle_closed);
  for (int i = 0; i < NSIGS; i++)
    uv_close((uv_handle_t *)&w->sigs[i], handle_closed);
  fcfs_watch_stop(w->watch);
  w->watch = NULL;
  fcfs_log_flush();
}

static void worker_stop(fcfs_worker_t *w, int graceful) {
  if (w->finished) return;
  if (!graceful) {
    w->stopping = 2;
    worker_finish(w);
    return;
  }
  if (w->stopping) return;
  w->stopping = 1;
  w->stop_deadline_ms = uv_now(&w->loop) + (uint64_t)(w->conf->drain_timeout * 1000);
  fcfs_log(FCFS_LOG_NOTICE, "gracefully stopping: %d request(s) in flight",
           w->server ? fcfs_server_busy(w->server) : 0);
  if (w->server) {
    fcfs_server_stop_accepting(w->server);
    fcfs_server_close_idle(w->server);
  }
  maybe_exit(w);
}

/* ---- events -------------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum) {
  fcfs_worker_t *w = h->data;
  switch (signum) {
  case SIGHUP:
    if (!has_master(w)) __atomic_add_fetch(&w->shm->generation, 1, __ATOMIC_SEQ_CST);
    start_reload(w);
    break;
  case SIGUSR2:
    if (has_master(w)) on_decision(w);
    break;
  case SIGQUIT:
    worker_stop(w, 1);
    break;
  case SIGTERM:
  case SIGINT:
    worker_stop(w, 0);
    break;
  case SIGUSR1:
    fcfs_log_reopen();
    break;
  }
}

static void on_tick(uv_timer_t *h) {
  fcfs_worker_t *w = h->data;
  w->slot->heartbeat_ms = fcfs_monotonic_ms();
  if (w->vm) w->slot->lua_mem_bytes = fcfs_vm_memory(w->vm);
  fcfs_log_flush();
  /* Every worker must see it: the shm's master_pid stays (a worker zeroing it stopped its siblings
   * from noticing). */
  if (!w->stopping && w->shm->master_pid > 0 && getppid() != (pid_t)w->shm->master_pid) {
    fcfs_log(FCFS_LOG_WARN, "master is gone, stopping");
    worker_stop(w, 1);
  }
  if (ready_to_exit(w)) {
    worker_finish(w);
    return;
  }
  if (w->stopping && !w->finished && uv_now(&w->loop) >= w->stop_deadline_ms) {
    fcfs_log(FCFS_LOG_WARN, "drain timeout: stopping with %d request(s) in flight",
             w->server ? fcfs_server_busy(w->server) : 0);
    worker_finish(w);
  }
}

static void on_lua_changed(void *arg) {
  fcfs_worker_t *w = arg;
  fcfs_log(FCFS_LOG_NOTICE, "dev: %s changed, reloading", w->conf->lua_dir);
  __atomic_add_fetch(&w->shm->generation, 1, __ATOMIC_SEQ_CST);
  start_reload(w);
}

static void first_init_done(fcfs_vm_t *vm, const char *err, void *arg) {
  fcfs_worker_t *w = arg;
  w->loading = NULL;
  if (err) {
    fcfs_log(FCFS_LOG_ERROR, "init_worker failed: %s", err);
    fcfs_vm_free(vm);
    w->exit_code = 1;
    worker_stop(w, 0);
    return;
  }
  w->vm = vm;
  w->generation = fcfs_vm_generation(vm);
  w->slot->generation = w->generation;
  char msg[512] = "";
  fcfs_server_env_t env = {&w->loop, w->conf, w->slot, w->id, serve_request, server_idle, w};
  w->server = fcfs_server_new(&env, w->listen_fd, w->admin_fd, msg, sizeof(msg));
  if (w->server == NULL) {
    fcfs_log(FCFS_LOG_ERROR, "%s", msg);
    fprintf(stderr, "fcfs: %s\n", msg);
    w->exit_code = 1;
    worker_stop(w, 0);
    return;
  }
  if (w->conf->dev && w->shm->master_pid == 0)
    w->watch = fcfs_watch_start(&w->loop, w->conf->lua_dir, on_lua_changed, w);
  fcfs_log(FCFS_LOG_NOTICE, "worker %d serving %s, generation %llu", w->id, w->conf->listen,
           (unsigned long long)w->generation);
  /* a reload accepted or under way meanwhile (reload_start knows which) */
  if (has_master(w)) start_reload(w);
}

int fcfs_worker_main(const fcfs_conf_t *conf, int id, int count, int listen_fd, int admin_fd,
                     int shm_fd) {
  fcfs_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return 1;
  int shm_own = shm_fd < 0;
  char err[4096];
  if (fcfs_log_open(conf->error_log, conf->access_log, conf->log_level, id) != 0) goto fail;
  if ((w->crypto = fcfs_crypto_new(conf, err, sizeof(err))) == NULL) {
    fcfs_log(FCFS_LOG_ERROR, "%s", err);
    fprintf(stderr, "fcfs: %s\n", err);
    fcfs_log_close();
    goto fail;
  }
  if (id == 0)
    fcfs_log(FCFS_LOG_NOTICE, "secrets: %d seal key(s), blind key %s, token key %s",
             fcfs_crypto_seal_key_count(w->crypto),
             fcfs_crypto_has_blind_key(w->crypto) ? "set" : "not set",
             fcfs_crypto_has_token_key(w->crypto) ? "set" : "not set");
  w->shm = shm_own ? fcfs_shm_create(conf, &shm_fd) : fcfs_shm_attach(shm_fd);
  if (w->shm == NULL || id < 0 || id >= FCFS_MAX_WORKERS) {
    fcfs_log(FCFS_LOG_ERROR, "cannot map the shared memory segment");
    goto fail;
  }
  uv_loop_init(&w->loop);
  w->conf = conf;
  w->id = id;
  w->count = count;
  w->listen_fd = listen_fd;
  w->admin_fd = admin_fd;
  w->slot = &w->shm->w[id];
  w->slot->pid = getpid();
  w->slot->heartbeat_ms = fcfs_monotonic_ms();
  if (w->shm->generation == 0) w->shm->generation = 1;
  int cpu = fcfs_cpu_of_worker(conf->worker_cpu_affinity, id);
  if (cpu >= 0) {
    int rc = fcfs_cpu_pin_loop(&w->loop, &w->pool_start, cpu);
    if (rc != 0)
      fcfs_log(FCFS_LOG_WARN, "worker %d: cannot run on CPU %d only: %s", id, cpu, uv_strerror(rc));
    else
      fcfs_log(FCFS_LOG_INFO, "worker %d runs on CPU %d", id, cpu);
  }
  if (shm_own) fcfs_reload_status_write(conf, w->shm->generation, FCFS_RELOAD_OK, NULL);

  w->redis = fcfs_redis_new(&w->loop, conf, &w->slot->redis);
  fcfs_mysql_opts_t mo;
  fcfs_mysql_opts_from_conf(&mo, conf);
  w->mysql = fcfs_mysql_new(&w->loop, &mo, &w->slot->mysql);

  uv_timer_init(&w->loop, &w->tick);
  w->tick.data = w;
  uv_timer_init(&w->loop, &w->reload_timer);
  w->reload_timer.data = w;
  uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
  for (int i = 0; i < NSIGS; i++) {
    uv_signal_init(&w->loop, &w->sigs[i]);
    w->sigs[i].data = w;
    uv_signal_start(&w->sigs[i], on_signal, signums[i]);
  }
  /* From now on the master signals us; what it decided before, we read below. */
  __atomic_store_n(&w->slot->signals_ready, 1, __ATOMIC_SEQ_CST);
  signal(SIGPIPE, SIG_IGN);
  /* Workers share one listener: take one connection per wake-up so a burst
   * of connects spreads over the workers instead of landing on the first. */
  if (count > 1) setenv("UV_TCP_SINGLE_ACCEPT", "1", 0);

  char dir[4096];
  uint64_t gen = has_master(w) ? w->shm->accepted : w->shm->generation;
  code_dir(w, gen, dir, sizeof(dir));
  fcfs_vm_env_t env;
  vm_env(w, &env);
  fcfs_vm_t *vm = fcfs_vm_new(&env, gen, dir, err, sizeof(err));
  if (vm == NULL) {
    fcfs_log(FCFS_LOG_ERROR, "loading %s/app.lua failed: %s", conf->lua_dir, err);
    fprintf(stderr, "fcfs: loading %s/app.lua failed: %s\n", conf->lua_dir, err);
    w->exit_code = 1;
    worker_stop(w, 0);
  } else {
    w->loading = vm;
    fcfs_vm_init(vm, first_init_done, w);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);

  int code = w->exit_code;
  if (w->server) fcfs_server_free(w->server);
  uv_loop_close(&w->loop);
  w->slot->pid = 0;
  if (shm_own) close(shm_fd);
  fcfs_shm_detach(w->shm);
  fcfs_crypto_free(w->crypto); /* after uv_run: no password hash is still running */
  fcfs_log(FCFS_LOG_NOTICE, "worker %d exited", id);
  fcfs_log_close();
  free(w);
  return code;
fail:
  fcfs_crypto_free(w->crypto);
  free(w);
  return 1;
}

/* ---- workers outside a node: fcfs -t, fcfs run ----------------------------- */

/* A worker without server, signals or timers, for a VM used outside of a
 * node: its own loop, a private shm segment, the crypto keys, both pools. */
static fcfs_worker_t *detached_new(const fcfs_conf_t *conf, char *err, size_t errlen) {
  fcfs_worker_t *w = calloc(1, sizeof(*w));
  int shm_fd = -1;
  if (w == NULL || (w->shm = fcfs_shm_create(conf, &shm_fd)) == NULL) {
    snprintf(err, errlen, w ? "cannot create shared memory" : "out of memory");
    free(w);
    return NULL;
  }
  close(shm_fd); /* the mapping stays; no child will inherit it */
  if ((w->crypto = fcfs_crypto_new(conf, err, errlen)) == NULL) {
    fcfs_shm_detach(w->shm);
    free(w);
    return NULL;
  }
  uv_loop_init(&w->loop);
  w->conf = conf;
  w->count = 1;
  w->listen_fd = w->admin_fd = -1;
  w->slot = &w->shm->w[0];
  w->slot->pid = getpid();
  w->redis = fcfs_redis_new(&w->loop, conf, &w->slot->redis);
  fcfs_mysql_opts_t mo;
  fcfs_mysql_opts_from_conf(&mo, conf);
  w->mysql = fcfs_mysql_new(&w->loop, &mo, &w->slot->mysql);
  w->finished = 1; /* nothing to stop: VM closes must not start a shutdown */
  return w;
}

static void detached_close_pools(fcfs_worker_t *w) {
  if (w->redis) fcfs_redis_close(w->redis, redis_closed, NULL);
  w->redis = NULL;
  if (w->mysql) fcfs_mysql_free(w->mysql);
  w->mysql = NULL;
}

/* Run the loop until everything closed, then free w. */
static void detached_free(fcfs_worker_t *w) {
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  fcfs_crypto_free(w->crypto);
  fcfs_shm_detach(w->shm);
  free(w);
}

int fcfs_worker_check(const fcfs_conf_t *conf, char *err, size_t errlen) {
  fcfs_worker_t *w = detached_new(conf, err, errlen);
  if (w == NULL) return -1;
  fcfs_vm_env_t env;
  vm_env(w, &env);
  fcfs_vm_t *vm = fcfs_vm_new(&env, 1, conf->lua_dir, err, errlen);
  if (vm) fcfs_vm_free(vm);
  detached_close_pools(w);
  detached_free(w);
  return vm ? 0 : -1;
}

typedef struct {
  fcfs_worker_t *w;
  fcfs_vm_t *vm;
  uv_timer_t end;
  int code;
} run_t;

/* From the loop, after the script's task ended: pending timers fire
 * premature, tasks still running are cancelled, the pools close. */
static void run_end(uv_timer_t *h) {
  run_t *r = h->data;
  fcfs_vm_free(r->vm);
  r->vm = NULL;
  detached_close_pools(r->w);
  uv_close((uv_handle_t *)h, NULL);
}

static void run_done(fcfs_vm_t *vm, int code, const char *err, void *arg) {
  run_t *r = arg;
  (void)vm;
  if (err) fprintf(stderr, "fcfs run: %s\n", err);
  r->code = code;
  uv_timer_start(&r->end, run_end, 0, 0);
}

int fcfs_worker_run(const fcfs_conf_t *conf, const char *script, int argc, char **argv) {
  char err[4096];
  if (fcfs_log_open("stderr", "off", conf->log_level, 0) != 0) return 1;
  fcfs_worker_t *w = detached_new(conf, err, sizeof(err));
  if (w == NULL) {
    fprintf(stderr, "fcfs run: %s\n", err);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  run_t r = {.w = w, .code = 1};
  fcfs_vm_env_t env;
  vm_env(w, &env);
  r.vm = fcfs_vm_new_script(&env, script, err, sizeof(err));
  if (r.vm == NULL) {
    fprintf(stderr, "fcfs run: %s\n", err);
    detached_close_pools(w);
  } else {
    uv_timer_init(&w->loop, &r.end);
    r.end.data = &r;
    fcfs_vm_run(r.vm, argc, argv, run_done, &r);
  }
  detached_free(w);
  fcfs_log_close();
  return r.code;
}
