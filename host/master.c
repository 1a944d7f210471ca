/* master.c -- the master process: owns the listener and the shared memory
 * segment, starts and supervises the workers, relays signals.
 *
 * Workers are started by re-executing this binary (`fcfs -c FILE --worker
 * N --worker-count M`) with uv_spawn, the listening socket as fd 3, the
 * memfd of the shm segment as fd 4 and the admin listener (if any) as fd 5
 * -- never by forking a running libuv loop.
 * A worker that exits unasked is started again (within 100 ms, or 500 ms
 * after a worker that lived less than a second, so a broken app does not
 * spin the CPU). A worker whose heartbeat (written by its loop every 100 ms
 * into its shm slot) is older than heartbeat_timeout is stuck -- a Lua
 * `while true do end` cannot be interrupted any other way under the JIT --
 * and gets SIGKILL, then is restarted like any dead worker.
 *
 * Signals, as nginx: HUP reload, QUIT graceful stop, TERM/INT fast stop,
 * USR1 reopen logs. A worker asks for a reload (POST /_host/reload) with
 * HUP too, and sends USR2 when it has answered a reload.
 *
 * Reload, in two phases so that workers never run different code: the
 * master copies lua_dir into a snapshot of the new generation (reload.h),
 * bumps the wanted generation in shm and sends HUP to every worker. Each
 * builds the generation beside the serving one, runs its init_worker, and
 * writes "ready" or the error into its shm slot. When all workers are ready
 * the master accepts the generation (shm->accepted, then shm->decided),
 * otherwise -- one failure, or reload_timeout -- it refuses it; either way
 * it sends USR2 and every worker swaps or drops what it built. A worker
 * started later (respawn) runs the accepted snapshot. The outcome goes to
 * run_dir/reload.status for `fcfs -s reload`. One reload at a time: a HUP
 * during one starts another when it is decided.
 *
 * Ownership: the master struct lives on the stack of fcfs_master_main; each
 * uv_process_t is heap-allocated and freed in its close callback.
 */
#include "master.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "reload.h"
#include "shm.h"
#include "shm_sync.h"
#include "watch.h"

#define CHECK_MS 100
#define NSIGS 6

typedef struct {
  uv_process_t *proc;
  uint64_t started_ms;
  uint64_t respawn_at_ms; /* 0: not waiting to be started */
  uint64_t progress;      /* requests + accepts + starts of the worker at the last check */
  uint64_t progress_ms;   /* when that number last moved */
  int killed;
  int in_reload; /* was running when the pending reload started: its answer counts */
} child_t;

typedef struct {
  uv_loop_t loop;
  const fcfs_conf_t *conf;
  fcfs_shm_t *shm;
  int shm_fd, listen_fd, admin_fd;
  char exe[4096];
  child_t kids[FCFS_MAX_WORKERS];
  int alive;
  uv_timer_t check;
  uv_signal_t sigs[NSIGS];
  fcfs_watch_t *watch;
  int stopping; /* 1 graceful, 2 fast */
  uint64_t stop_deadline_ms;
  int closed;
  uint64_t pending;             /* the generation being reloaded, 0 when none */
  uint64_t pending_deadline_ms; /* refused when not every worker answered by then */
  int reload_again;             /* a HUP came during the pending reload */
  uint64_t previous;            /* accepted before shm->accepted: its snapshot is kept too */
  uint64_t refused;             /* the last refused generation: its snapshot goes at the next
                                   decision (a sibling may still be loading from it now) */
} master_t;

static const int signums[NSIGS] = {SIGHUP, SIGUSR2, SIGQUIT, SIGTERM, SIGINT, SIGUSR1};

static void proc_closed(uv_handle_t *h) {
  free(h);
}

static void master_close(master_t *m) {
  if (m->closed) return;
  m->closed = 1;
  uv_timer_stop(&m->check);
  uv_close((uv_handle_t *)&m->check, NULL);
  for (int i = 0; i < NSIGS; i++)
    uv_close((uv_handle_t *)&m->sigs[i], NULL);
  fcfs_watch_stop(m->watch);
  m->watch = NULL;
}

static void on_exit_cb(uv_process_t *p, int64_t status, int signo) {
  master_t *m = p->data;
  int id = -1;
  for (int i = 0; i < m->conf->workers; i++)
    if (m->kids[i].proc == p) id = i;
  uv_close((uv_handle_t *)p, proc_closed);
  m->alive--;
  if (id < 0) return;
  child_t *k = &m->kids[id];
  k->proc = NULL;
  k->in_reload = 0;
  m->shm->w[id].pid = 0;
  if (m->stopping) {
    if (m->alive == 0) master_close(m);
    return;
  }
  uint64_t now = fcfs_monotonic_ms();
  int quick = now - k->started_ms < 1000;
  fcfs_log(k->killed ? FCFS_LOG_WARN : FCFS_LOG_ERROR, "worker %d (pid %d) %s %d, restarting", id,
           p->pid, signo ? "killed by signal" : "exited with status", signo ? signo : (int)status);
  m->shm->worker_restarts++;
  k->respawn_at_ms = now + (quick ? 500 : 1);
}

static int spawn(master_t *m, int id) {
  child_t *k = &m->kids[id];
  char idbuf[16], nbuf[16];
  snprintf(idbuf, sizeof(idbuf), "%d", id);
  snprintf(nbuf, sizeof(nbuf), "%d", m->conf->workers);
  char *args[8];
  int n = 0;
  args[n++] = m->exe;
  if (m->conf->conf_file[0]) {
    args[n++] = "-c";
    args[n++] = (char *)m->conf->conf_file;
  }
  args[n++] = "--worker";
  args[n++] = idbuf;
  args[n++] = "--worker-count";
  args[n++] = nbuf;
  args[n] = NULL;
  uv_stdio_container_t stdio[6];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = m->listen_fd;
  stdio[4].flags = UV_INHERIT_FD;
  stdio[4].data.fd = m->shm_fd;
  stdio[5].flags = UV_INHERIT_FD;
  stdio[5].data.fd = m->admin_fd;
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.file = m->exe;
  o.args = args;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = m->admin_fd >= 0 ? 6 : 5;
  uv_process_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return UV_ENOMEM;
  p->data = m;
  memset(&m->shm->w[id], 0, sizeof(m->shm->w[id]));
  m->shm->w[id].heartbeat_ms = fcfs_monotonic_ms();
  int rc = uv_spawn(&m->loop, p, &o);
  if (rc != 0) {
    fcfs_log(FCFS_LOG_ERROR, "cannot start worker %d: %s", id, uv_strerror(rc));
    uv_close((uv_handle_t *)p, proc_closed);
    k->respawn_at_ms = fcfs_monotonic_ms() + 1000;
    return rc;
  }
  m->shm->w[id].pid = p->pid;
  k->proc = p;
  k->started_ms = fcfs_monotonic_ms();
  k->respawn_at_ms = 0;
  k->progress = 0;
  k->progress_ms = k->started_ms;
  k->killed = 0;
  m->alive++;
  return 0;
}

/* Signal every live worker. HUP, USR1 and USR2 would kill a worker whose
 * handlers are not installed yet (their default action), so a starting
 * worker is skipped: it reads the reload state and reopens its logs itself
 * once it is ready (worker.c first_init_done). */
static void each_worker(master_t *m, int signum) {
  int stop = signum == SIGQUIT || signum == SIGTERM || signum == SIGKILL;
  for (int i = 0; i < m->conf->workers; i++)
    if (m->kids[i].proc && (stop || __atomic_load_n(&m->shm->w[i].signals_ready, __ATOMIC_SEQ_CST)))
      uv_process_kill(m->kids[i].proc, signum);
}

static void reload(master_t *m);

/* Accept or refuse the pending generation and tell the workers. */
static void decide(master_t *m, int ok, const char *err) {
  fcfs_shm_t *shm = m->shm;
  uint64_t gen = m->pending;
  m->pending = 0;
  for (int i = 0; i < m->conf->workers; i++)
    m->kids[i].in_reload = 0;
  /* A refusal is decided at the first worker's error, while its siblings may still be loading
   * (requiring modules) from the refused snapshot: it is removed one decision later. */
  if (m->refused) fcfs_reload_forget(m->conf, m->refused);
  m->refused = 0;
  if (ok) {
    if (m->previous) fcfs_reload_forget(m->conf, m->previous);
    m->previous = shm->accepted;
    shm->accepted = gen;
    shm->decided_err[0] = '\0';
    fcfs_log(FCFS_LOG_NOTICE, "reload: generation %llu accepted", (unsigned long long)gen);
  } else {
    m->refused = gen;
    snprintf(shm->decided_err, sizeof(shm->decided_err), "%s", err);
    fcfs_log(FCFS_LOG_ERROR,
             "reload failed: generation %llu refused, generation %llu keeps serving: %s",
             (unsigned long long)gen, (unsigned long long)shm->accepted, err);
  }
  __atomic_store_n(&shm->decided, gen, __ATOMIC_RELEASE);
  fcfs_reload_status_write(m->conf, gen, ok ? FCFS_RELOAD_OK : FCFS_RELOAD_FAILED, err);
  each_worker(m, SIGUSR2);
  if (m->reload_again && !m->stopping) {
    m->reload_again = 0;
    reload(m);
  }
}

/* Decide the pending reload once every worker it counts on has answered. */
static void reload_check(master_t *m) {
  int waiting = 0, ready = 0;
  for (int i = 0; i < m->conf->workers; i++) {
    const fcfs_worker_slot_t *slot = &m->shm->w[i];
    if (!m->kids[i].in_reload) continue;
    if (__atomic_load_n(&slot->prepared, __ATOMIC_ACQUIRE) != m->pending) {
      waiting++;
    } else if (slot->prepared_state == FCFS_RELOAD_FAILED) {
      char err[1200];
      snprintf(err, sizeof(err), "worker %d: %s", i, slot->prepared_err);
      decide(m, 0, err);
      return;
    } else {
      ready++;
    }
  }
  if (waiting == 0 && ready > 0) { /* code nobody ran (every worker died meanwhile) waits */
    decide(m, 1, NULL);
  } else if (fcfs_monotonic_ms() >= m->pending_deadline_ms) {
    char err[128];
    snprintf(err, sizeof(err), "%d worker(s) did not load and initialise it within %g s",
             waiting ? waiting : m->conf->workers, m->conf->reload_timeout);
    decide(m, 0, err);
  }
}

static void reload(master_t *m) {
  if (m->stopping) return;
  if (m->pending) {
    m->reload_again = 1;
    return;
  }
  /* The wanted generation moves only once its snapshot is complete. */
  uint64_t gen = m->shm->generation + 1;
  fcfs_log(FCFS_LOG_NOTICE, "reload: generation %llu", (unsigned long long)gen);
  m->pending = gen;
  m->pending_deadline_ms = fcfs_monotonic_ms() + (uint64_t)(m->conf->reload_timeout * 1000);
  char err[1024];
  int rc = fcfs_reload_snapshot(m->conf, gen, err, sizeof(err));
  __atomic_store_n(&m->shm->generation, gen, __ATOMIC_RELEASE);
  if (rc != 0) {
    decide(m, 0, err);
    return;
  }
  fcfs_reload_status_write(m->conf, gen, FCFS_RELOAD_PENDING, NULL);
  for (int i = 0; i < m->conf->workers; i++)
    m->kids[i].in_reload = m->kids[i].proc != NULL;
  each_worker(m, SIGHUP);
}

static void on_check(uv_timer_t *t) {
  master_t *m = t->data;
  uint64_t now = fcfs_monotonic_ms();
  uint64_t limit = (uint64_t)(m->conf->heartbeat_timeout * 1000);
  for (int i = 0; i < m->conf->workers; i++) {
    child_t *k = &m->kids[i];
    if (k->proc == NULL) {
      if (!m->stopping && k->respawn_at_ms && now >= k->respawn_at_ms) spawn(m, i);
      continue;
    }
    /* A loop busy with a burst (10k connects, or 10k requests at the
     * opening of a sale) may miss its 100 ms beat for a while, but it still
     * accepts, starts and answers requests: that counts as alive. A handler
     * that never yields does none of these. */
    const fcfs_worker_slot_t *slot = &m->shm->w[i];
    uint64_t progress = slot->requests + slot->accepts + slot->starts;
    if (progress != k->progress) {
      k->progress = progress;
      k->progress_ms = now;
    }
    uint64_t hb = slot->heartbeat_ms > k->progress_ms ? slot->heartbeat_ms : k->progress_ms;
    if (!k->killed && !m->stopping && now > hb && now - hb > limit) {
      fcfs_log(
          FCFS_LOG_ERROR,
          "worker %d (pid %d) missed its heartbeat for %llu ms (a handler that never yields?), "
          "killing it",
          i, k->proc->pid, (unsigned long long)(now - hb));
      k->killed = 1;
      uv_process_kill(k->proc, SIGKILL);
    }
  }
  if (m->pending) reload_check(m);
  if (m->stopping && now >= m->stop_deadline_ms && m->alive > 0) {
    fcfs_log(FCFS_LOG_WARN, "workers still running after the stop deadline, killing them");
    each_worker(m, SIGKILL);
    m->stop_deadline_ms = UINT64_MAX;
  }
}

static void stop(master_t *m, int how) {
  if (m->stopping >= how) return;
  m->stopping = how;
  m->stop_deadline_ms = fcfs_monotonic_ms() + (uint64_t)(m->conf->drain_timeout * 1000) + 5000;
  fcfs_log(FCFS_LOG_NOTICE, "%s stop", how == 1 ? "graceful" : "fast");
  each_worker(m, how == 1 ? SIGQUIT : SIGTERM);
  if (m->alive == 0) master_close(m);
}

static void on_signal(uv_signal_t *h, int signum) {
  master_t *m = h->data;
  switch (signum) {
  case SIGHUP:
    reload(m);
    break;
  case SIGUSR2:
    if (m->pending) reload_check(m);
    break;
  case SIGQUIT:
    stop(m, 1);
    break;
  case SIGTERM:
  case SIGINT:
    stop(m, 2);
    break;
  case SIGUSR1:
    fcfs_log_reopen();
    each_worker(m, SIGUSR1);
    break;
  }
}

static void on_lua_changed(void *arg) {
  master_t *m = arg;
  fcfs_log(FCFS_LOG_NOTICE, "dev: %s changed", m->conf->lua_dir);
  reload(m);
}

int fcfs_master_main(const fcfs_conf_t *conf, int listen_fd, int admin_fd) {
  master_t m;
  memset(&m, 0, sizeof(m));
  m.conf = conf;
  m.listen_fd = listen_fd;
  m.admin_fd = admin_fd;
  size_t len = sizeof(m.exe);
  if (uv_exepath(m.exe, &len) != 0) {
    fprintf(stderr, "fcfs: cannot find my own executable\n");
    return 1;
  }
  if (fcfs_log_open(conf->error_log, "off", conf->log_level, -1) != 0) return 1;
  m.shm = fcfs_shm_create(conf, &m.shm_fd);
  if (m.shm == NULL) {
    fcfs_log(FCFS_LOG_ERROR, "cannot create the shared memory segment");
    return 1;
  }
  m.shm->master_pid = getpid();
  m.shm->generation = 1;
  m.shm->accepted = 1;
  m.shm->workers = conf->workers;
  char err[1024];
  fcfs_reload_forget_all(conf); /* left by a node that was killed */
  fcfs_reload_status_write(conf, 1, FCFS_RELOAD_OK, NULL);
  if (fcfs_reload_snapshot(conf, 1, err, sizeof(err)) != 0) {
    fcfs_log(FCFS_LOG_ERROR, "cannot copy %s: %s", conf->lua_dir, err);
    fprintf(stderr, "fcfs: cannot copy %s: %s\n", conf->lua_dir, err);
    return 1;
  }
  uv_loop_init(&m.loop);
  uv_timer_init(&m.loop, &m.check);
  m.check.data = &m;
  uv_timer_start(&m.check, on_check, CHECK_MS, CHECK_MS);
  for (int i = 0; i < NSIGS; i++) {
    uv_signal_init(&m.loop, &m.sigs[i]);
    m.sigs[i].data = &m;
    uv_signal_start(&m.sigs[i], on_signal, signums[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  fcfs_log(FCFS_LOG_NOTICE, "master %d starting %d worker(s) on %s", (int)getpid(), conf->workers,
           conf->listen);
  for (int i = 0; i < conf->workers; i++)
    spawn(&m, i);
  if (conf->dev) m.watch = fcfs_watch_start(&m.loop, conf->lua_dir, on_lua_changed, &m);
  uv_run(&m.loop, UV_RUN_DEFAULT);
  uv_loop_close(&m.loop);
  fcfs_reload_forget_all(conf);
  fcfs_shm_detach(m.shm);
  close(m.shm_fd);
  close(listen_fd);
  if (admin_fd >= 0) close(admin_fd);
  fcfs_log(FCFS_LOG_NOTICE, "master exited");
  fcfs_log_close();
  return 0;
}
