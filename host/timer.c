/* timer.c -- host.sleep(s) and host.timer.at/every(delay, fn, ...).
 *
 * host.sleep yields the calling task on a uv_timer_t owned by the sleep op;
 * cancelling the task closes it. A host.timer is a uv_timer_t plus registry
 * references to its callback and arguments; each firing runs the callback
 * as a new task: fn(premature, ...). The VM keeps its timers in a list
 * (fcfs_vm_timers); when the VM is retired (reload) or the worker stops,
 * every pending timer is stopped and its callback runs once more with
 * premature = true, so jobs can flush state, then the timer is freed.
 * Timer structs are freed in their uv_close callbacks, which never touch
 * the VM (it may be gone by then).
 *
 * Delays must be finite and not negative; a worker has at most
 * max_pending_timers pending (then nil, "too many timers"). An `every`
 * timer whose previous run is still going (it yielded) skips the tick;
 * such a timer, stopped meanwhile, is closed when that run ends.
 */
#include "timer.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "task.h"
#include "vm.h"

#define MAX_DELAY 1e9 /* s, about 31 years: keeps the milliseconds in a uint64_t */

typedef struct sleep_op_s {
  uv_timer_t h;
  fcfs_task_t *task;
} sleep_op_t;

typedef struct host_timer_s {
  uv_timer_t h;
  fcfs_vm_t *vm;
  int fn_ref; /* table {fn, arg1, ..., n = nargs} */
  int nargs;
  int every;
  int running; /* a run of this every-timer has not ended yet */
  int stopped; /* freed while running: closed when the run ends */
  struct host_timer_s *prev, *next;
} host_timer_t;

/* A delay in ms, or -1 when it is not a finite number of seconds >= 0. */
static int64_t delay_ms(lua_State *L, int idx) {
  double s = luaL_checknumber(L, idx);
  if (!isfinite(s) || s < 0 || s > MAX_DELAY) return -1;
  return (int64_t)(s * 1000 + 0.5);
}

/* Both op structs start with their uv_timer_t. */
static void free_handle(uv_handle_t *h) {
  free(h);
}

static void sleep_done(uv_timer_t *h) {
  sleep_op_t *op = (sleep_op_t *)h;
  fcfs_task_t *t = op->task;
  h->data = NULL;
  uv_close((uv_handle_t *)h, free_handle);
  fcfs_task_resume(t, 0);
}

static void sleep_cancel(void *p) {
  sleep_op_t *op = p;
  uv_timer_stop(&op->h);
  op->h.data = NULL;
  uv_close((uv_handle_t *)&op->h, free_handle);
}

int fcfs_lapi_sleep(lua_State *L) {
  int64_t ms = delay_ms(L, 1);
  fcfs_task_t *t = fcfs_task_require(L, "host.sleep");
  if (ms < 0) return luaL_argerror(L, 1, "must be a finite number of seconds, not negative");
  sleep_op_t *op = malloc(sizeof(*op));
  if (op == NULL) return luaL_error(L, "host.sleep: out of memory");
  uv_timer_init(fcfs_task_loop(t), &op->h);
  op->task = t;
  op->h.data = op;
  uv_timer_start(&op->h, sleep_done, (uint64_t)ms, 0);
  return fcfs_task_wait(L, t, op, sleep_cancel);
}

static void timer_unlink(host_timer_t *ht) {
  void **head = fcfs_vm_timers(ht->vm);
  if (ht->prev)
    ht->prev->next = ht->next;
  else
    *head = ht->next;
  if (ht->next) ht->next->prev = ht->prev;
}

static void run_ended(void *p) {
  host_timer_t *ht = p;
  ht->running = 0;
  if (ht->stopped) uv_close((uv_handle_t *)&ht->h, free_handle);
}

/* Run the callback as a task: fn(premature, args...); a tracked run marks
 * the timer running until it ends. */
static void timer_call(host_timer_t *ht, int premature, int track) {
  lua_State *L = fcfs_vm_state(ht->vm);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ht->fn_ref);
  int tbl = lua_gettop(L);
  lua_rawgeti(L, tbl, 1);
  lua_pushboolean(L, premature);
  for (int i = 0; i < ht->nargs; i++)
    lua_rawgeti(L, tbl, i + 2);
  lua_remove(L, tbl);
  if (track) ht->running = 1;
  if (fcfs_vm_spawn(ht->vm, L, ht->nargs + 1, track ? run_ended : NULL, ht) != 0) ht->running = 0;
}

static void timer_free(host_timer_t *ht) {
  timer_unlink(ht);
  (*fcfs_vm_env(ht->vm)->pending_timers)--;
  luaL_unref(fcfs_vm_state(ht->vm), LUA_REGISTRYINDEX, ht->fn_ref);
  uv_timer_stop(&ht->h);
  ht->h.data = NULL;
  if (ht->running)
    ht->stopped = 1;
  else
    uv_close((uv_handle_t *)&ht->h, free_handle);
}

static void timer_fired(uv_timer_t *h) {
  host_timer_t *ht = h->data;
  if (ht->every) {
    if (!ht->running) timer_call(ht, 0, 1); /* else: the last run goes on, skip this tick */
    return;
  }
  /* One-shot: unlink first so the callback sees a consistent list. */
  fcfs_vm_t *vm = ht->vm;
  lua_State *L = fcfs_vm_state(vm);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ht->fn_ref);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int nargs = ht->nargs;
  timer_free(ht);
  host_timer_t tmp = {.vm = vm, .fn_ref = ref, .nargs = nargs};
  timer_call(&tmp, 0, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

static int timer_new(lua_State *L, int every) {
  int64_t ms = delay_ms(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  fcfs_vm_t *vm = fcfs_vm_of(L);
  const fcfs_vm_env_t *env = fcfs_vm_env(vm);
  if (ms < 0 || (every && ms < 1)) return luaL_argerror(L, 1, "delay out of range");
  if (fcfs_vm_retired(vm)) {
    lua_pushnil(L);
    lua_pushliteral(L, "process exiting");
    return 2;
  }
  if (*env->pending_timers >= env->conf->max_pending_timers) {
    lua_pushnil(L);
    lua_pushliteral(L, "too many timers");
    return 2;
  }
  int n = lua_gettop(L);
  host_timer_t *ht = calloc(1, sizeof(*ht));
  if (ht == NULL) return luaL_error(L, "host.timer: out of memory");
  lua_createtable(L, n - 1, 0);
  for (int i = 2; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  ht->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ht->nargs = n - 2;
  ht->every = every;
  ht->vm = vm;
  void **head = fcfs_vm_timers(vm);
  ht->next = *head;
  if (ht->next) ht->next->prev = ht;
  *head = ht;
  (*env->pending_timers)++;
  uv_timer_init(env->loop, &ht->h);
  ht->h.data = ht;
  uv_timer_start(&ht->h, timer_fired, (uint64_t)ms, every ? (uint64_t)ms : 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer_at(lua_State *L) {
  return timer_new(L, 0);
}

static int timer_every(lua_State *L) {
  return timer_new(L, 1);
}

static int timer_pending(lua_State *L) {
  int n = 0;
  for (host_timer_t *ht = *fcfs_vm_timers(fcfs_vm_of(L)); ht; ht = ht->next)
    n++;
  lua_pushinteger(L, n);
  return 1;
}

void fcfs_lapi_timer_open(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, timer_at);
  lua_setfield(L, -2, "at");
  lua_pushcfunction(L, timer_every);
  lua_setfield(L, -2, "every");
  lua_pushcfunction(L, timer_pending);
  lua_setfield(L, -2, "pending");
}

void fcfs_timers_fire_premature(fcfs_vm_t *vm) {
  void **head = fcfs_vm_timers(vm);
  while (*head) {
    host_timer_t *ht = *head;
    timer_call(ht, 1, 0);
    timer_free(ht);
  }
}
