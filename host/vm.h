/* vm.h -- a Lua VM generation: one lua_State with the app loaded, the
 * tasks (request and timer coroutines) running on it, and its retirement
 * after a reload. task.h is the face tasks show to host I/O modules. The
 * VM knows nothing of HTTP (request.c marshals requests into tasks) and
 * reaches its worker only through fcfs_vm_env_t. */
#ifndef FCFS_VM_H
#define FCFS_VM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "task.h"

/* The worker that owns the VM; opaque here (the lapi_* modules reach the
 * worker's pools through fcfs_vm_worker()). */
typedef struct fcfs_worker_s fcfs_worker_t;

/* What a VM gets from its owner: copied by fcfs_vm_new*. */
typedef struct {
  fcfs_worker_t *w;
  uv_loop_t *loop;
  const fcfs_conf_t *conf;
  const int *stopping;             /* nonzero: the worker is stopping */
  int *pending_timers;             /* host.timer.at/every not fired yet, over all generations */
  void (*retiring)(fcfs_vm_t *vm); /* retired: fire its pending timers (premature) */
  void (*closed)(fcfs_worker_t *w, fcfs_vm_t *vm); /* closed, about to be freed: forget it */
} fcfs_vm_env_t;

/* Create a VM and load dir/app.lua and everything it requires (dir: lua_dir
 * or a generation's snapshot of it). NULL and a message (file:line and
 * traceback) in err on failure. Nothing runs that could do I/O: init_worker
 * functions run in fcfs_vm_init(). */
fcfs_vm_t *fcfs_vm_new(const fcfs_vm_env_t *env, uint64_t generation, const char *dir, char *err,
                       size_t errlen);

/* Create a VM for `fcfs run`: like fcfs_vm_new, but instead of app.lua it
 * loads (without running) the script at path; lua_dir is on package.path. */
fcfs_vm_t *fcfs_vm_new_script(const fcfs_vm_env_t *env, const char *path, char *err, size_t errlen);

/* Run the script of a VM made by fcfs_vm_new_script as one task, argv as its
 * `...` (strings). done gets the exit code its first return value stands
 * for (a number 0-255: that number, other numbers 1; false: 1; true, nil,
 * nothing or anything else: 0), or 1 and the error with its traceback. done
 * is called from inside the task: it must not free the VM itself. */
typedef void (*fcfs_vm_run_cb)(fcfs_vm_t *vm, int code, const char *err, void *arg);
void fcfs_vm_run(fcfs_vm_t *vm, int argc, char **argv, fcfs_vm_run_cb done, void *arg);

/* Run the app's init_worker functions in a task; done gets NULL or the error.
 * done may be called before fcfs_vm_init returns. */
typedef void (*fcfs_vm_init_cb)(fcfs_vm_t *vm, const char *err, void *arg);
void fcfs_vm_init(fcfs_vm_t *vm, fcfs_vm_init_cb done, void *arg);

/* How a task that works for an owner (a request: request.c) ended, told
 * exactly once unless the owner cancels it first; the task no longer points
 * at owner when a hook runs. done: it returned, its results are co's stack
 * (1..top, read them before returning). failed: it raised (the message
 * with its traceback). dropped: the VM cancelled it (drain timeout or
 * destroy), why says so. push_arg: push on L the first argument of the
 * app's handle_error (the request, built anew: see fcfs_vm_push_handler);
 * NULL: a raise always fails. */
typedef struct {
  void (*done)(void *owner, lua_State *co);
  void (*failed)(void *owner, const char *traceback);
  void (*dropped)(void *owner, const char *why);
  void (*push_arg)(void *owner, lua_State *L);
} fcfs_task_hooks_t;

/* A new task of vm working for owner; deadline_ms (loop time, 0: none)
 * bounds its I/O (fcfs_task_time_left). Push the function and its nargs
 * arguments on fcfs_task_thread(t), then fcfs_task_start(t, nargs). NULL on
 * out of memory. */
fcfs_task_t *fcfs_vm_task(fcfs_vm_t *vm, const fcfs_task_hooks_t *hooks, void *owner,
                          uint64_t deadline_ms);
void fcfs_task_start(fcfs_task_t *t, int nargs);
/* End t from its owner before it finished: its op is cancelled, no hook runs. */
void fcfs_task_cancel(fcfs_task_t *t);
/* t's owner if t works with hooks, else NULL. */
void *fcfs_task_owner(const fcfs_task_t *t, const fcfs_task_hooks_t *hooks);
/* Push the app's request method and the app (for a request task): its serve
 * method when it has serve and handle_error, else its handle method. With
 * serve, a raise is answered by app:handle_error(arg, err, co) (arg: what
 * the push_arg hook pushes; co: the dead coroutine, for a traceback), whose
 * results reach the done hook; the failed hook then only hears of a raise
 * in handle_error itself. */
void fcfs_vm_push_handler(fcfs_vm_t *vm, lua_State *co);

/* Take a VM out of service: pending timers fire with premature = true (env.retiring), live
 * tasks go on until they end or drain_timeout passes (then they are
 * cancelled: requests get 503); then the VM is closed and freed. With
 * drain_timeout 0, everything is cancelled at once (destroy). */
void fcfs_vm_retire(fcfs_vm_t *vm, double drain_timeout);

/* Destroy a VM that never served (failed init) or at exit. */
void fcfs_vm_free(fcfs_vm_t *vm);

uint64_t fcfs_vm_generation(const fcfs_vm_t *vm);
int fcfs_vm_retired(const fcfs_vm_t *vm); /* no new timers on a retired VM */
/* Retired, or its worker is stopping: long-running loops should end. */
int fcfs_vm_exiting(const fcfs_vm_t *vm);
size_t fcfs_vm_memory(const fcfs_vm_t *vm);
int fcfs_vm_live_tasks(const fcfs_vm_t *vm);
fcfs_worker_t *fcfs_vm_worker(const fcfs_vm_t *vm);
const fcfs_vm_env_t *fcfs_vm_env(const fcfs_vm_t *vm);

/* Start a detached task (a timer callback): the function and its nargs
 * arguments on top of `from` (any thread of vm) are moved into a new
 * coroutine and run. ended (may be NULL) is called with res when the task
 * ends, which may be before fcfs_vm_spawn returns. -1 (ended not called,
 * the values popped) when the task could not start. */
int fcfs_vm_spawn(fcfs_vm_t *vm, lua_State *from, int nargs, fcfs_release_cb ended, void *res);

/* The VM's main state (for pushing values into new tasks). */
lua_State *fcfs_vm_state(fcfs_vm_t *vm);

/* The VM that owns L (any of its threads). */
fcfs_vm_t *fcfs_vm_of(lua_State *L);

/* Head of the VM's timer list, kept by timer.c. */
void **fcfs_vm_timers(fcfs_vm_t *vm);

#endif
