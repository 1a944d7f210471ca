/* vm.c -- Lua VM generations and the tasks that run on them.
 *
 * A VM (fcfs_vm_t) is one lua_State with lua_dir/app.lua loaded. Hot reload
 * builds a new one beside the serving one and swaps them (worker.c); the old
 * one is retired: it finishes its in-flight tasks (bounded by drain_timeout)
 * and is then closed. Nothing Lua-side survives a reload.
 *
 * A task is one coroutine: a request handler, a timer callback or the
 * app's init_worker run. Host I/O yields through fcfs_task_wait() (task.h):
 * it records the pending op and its cancel callback and yields a private
 * sentinel; a host-aware coroutine.resume/wrap (the prelude below) passes
 * that sentinel up through user coroutines, so host I/O works inside them
 * too, and results always come back through the task's own coroutine.
 *
 * A request task runs the app's serve method unprotected when the app has
 * one (lib/web.lua), and its handle_error method turns what serve raised
 * into the answer: no xpcall frame under the handler, whose returns LuaJIT
 * cannot compile through ("NYI: return to lower frame") -- the request path
 * stays in traces. Without serve, handle runs and a raise answers 500.
 *
 * Ownership: the VM owns its tasks (ended in task_end(), their structs kept
 * on a free list of up to SPARE_TASKS for the next ones and freed with the
 * VM, so a request allocates no task), each task owns the
 * registry reference that anchors its coroutine and the list of resources
 * to release at its end (fcfs_task_on_end). A task may work for an owner (a
 * request, request.c): it only points at it until it tells the owner how it
 * ended (fcfs_task_hooks_t) or the owner cancels it. The VM knows its
 * worker only through fcfs_vm_env_t.
 */
#include "vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "lapi.h"
#include "log.h"

enum { TASK_OWNED, TASK_TIMER, TASK_INIT, TASK_MAIN };

#define SPARE_THREADS 128
#define SPARE_TASKS 256

typedef struct {
  fcfs_release_cb release;
  void *res;
} task_end_t;

struct fcfs_task_s {
  fcfs_vm_t *vm;
  lua_State *co;
  int co_ref;
  int kind;
  int reusable; /* the coroutine ran to its end: it may serve another task */
  void *op;
  fcfs_cancel_cb cancel;
  const fcfs_task_hooks_t *hooks; /* TASK_OWNED: how to tell owner the task ended */
  void *owner;                    /* NULL once told, or once the owner cancelled */
  uint64_t deadline_ms;           /* loop time I/O is clamped to; 0 = none */
  task_end_t *ends;
  int nends, capends;
  fcfs_task_t *prev, *next;
};

struct fcfs_vm_s {
  fcfs_vm_env_t env;
  lua_State *L;
  uint64_t generation;
  int app_ref;
  int handle_ref;
  int error_ref; /* the app's handle_error when handle_ref is its serve, else LUA_NOREF */
  int init_ref;
  int main_ref;  /* the script of `fcfs run`, loaded instead of the app */
  int yield_ref; /* the host-yield sentinel (a registry slot: no light userdata pushed per yield) */
  fcfs_task_t *tasks;
  int ntasks;
  fcfs_task_t *current;
  void *timers;
  int retired;
  int hold; /* > 0 while the VM must not be closed by a task ending */
  uv_timer_t *drain;
  fcfs_vm_init_cb init_done;
  void *init_arg;
  fcfs_vm_run_cb run_done;
  void *run_arg;
  struct {
    lua_State *co;
    int ref;              /* the registry reference that anchors co */
  } spare[SPARE_THREADS]; /* finished coroutines, reset for reuse */
  int nspare;
  fcfs_task_t *free_tasks; /* ended task structs (with their ends arrays), linked by next */
  int nfree_tasks;
};

/* The host-yield sentinel: a light userdata of this address (unique), kept
 * at vm->yield_ref in the registry. The VM pointer itself is the state's
 * exdata (OpenResty's LuaJIT), inherited by every coroutine created in the
 * VM. */
static char host_yield_key;

static const char *const prelude =
    "local HOST = ...\n"
    "local co_resume, co_yield, co_create = coroutine.resume, coroutine.yield, coroutine.create\n"
    "local error = error\n"
    "local function pass(co, ok, first, ...)\n"
    "  if ok and first == HOST then return pass(co, co_resume(co, co_yield(HOST))) end\n"
    "  return ok, first, ...\n"
    "end\n"
    "coroutine.resume = function(co, ...) return pass(co, co_resume(co, ...)) end\n"
    "local function unwrap(ok, ...)\n"
    "  if not ok then error((...), 0) end\n"
    "  return ...\n"
    "end\n"
    "coroutine.wrap = function(f)\n"
    "  local co = co_create(f)\n"
    "  return function(...) return unwrap(pass(co, co_resume(co, ...))) end\n"
    "end\n";

/* Writing a global once the app is loaded is a bug in a handler (state that
 * would leak between requests and vanish on reload): refuse it. */
static const char *const strict =
    "setmetatable(_G, { __newindex = function(_, k)\n"
    "  error(\"assignment to undeclared global '\" .. tostring(k) .. \"' (use a local, or a module "
    "\" ..\n"
    "        \"table; state that must survive belongs in Redis, MySQL or host.stock)\", 2)\n"
    "end, __metatable = false })\n";

fcfs_vm_t *fcfs_vm_of(lua_State *L) {
  return lua_getexdata(L);
}

lua_State *fcfs_vm_state(fcfs_vm_t *vm) {
  return vm->L;
}

void **fcfs_vm_timers(fcfs_vm_t *vm) {
  return &vm->timers;
}

uint64_t fcfs_vm_generation(const fcfs_vm_t *vm) {
  return vm->generation;
}

size_t fcfs_vm_memory(const fcfs_vm_t *vm) {
  return (size_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
}

int fcfs_vm_live_tasks(const fcfs_vm_t *vm) {
  return vm->ntasks;
}

fcfs_worker_t *fcfs_vm_worker(const fcfs_vm_t *vm) {
  return vm->env.w;
}

const fcfs_vm_env_t *fcfs_vm_env(const fcfs_vm_t *vm) {
  return &vm->env;
}

void fcfs_vm_push_handler(fcfs_vm_t *vm, lua_State *co) {
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->handle_ref);
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->app_ref);
}

/* ---- task.h ----------------------------------------------------------- */

fcfs_task_t *fcfs_task_current(lua_State *L) {
  fcfs_vm_t *vm = fcfs_vm_of(L);
  return vm ? vm->current : NULL;
}

int fcfs_task_error(lua_State *L, const char *fmt, ...) {
  lua_Debug ar;
  int level = 1;
  while (lua_getstack(L, level, &ar) && lua_getinfo(L, "S", &ar) &&
         strncmp(ar.source, "=host", 5) == 0)
    level++;
  luaL_where(L, level);
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

fcfs_task_t *fcfs_task_require(lua_State *L, const char *what) {
  fcfs_task_t *t = fcfs_task_current(L);
  if (t == NULL)
    fcfs_task_error(
        L,
        "%s: host I/O is not allowed while modules load (at require time); move it into "
        "app:init_worker(fn) or a handler",
        what);
  return t;
}

int fcfs_task_wait(lua_State *L, fcfs_task_t *t, void *op, fcfs_cancel_cb cancel) {
  t->op = op;
  t->cancel = cancel;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->vm->yield_ref);
  return lua_yield(L, 1);
}

void *fcfs_task_owner(const fcfs_task_t *t, const fcfs_task_hooks_t *hooks) {
  return t->hooks == hooks ? t->owner : NULL;
}

lua_State *fcfs_task_thread(fcfs_task_t *t) {
  return t->co;
}

fcfs_vm_t *fcfs_task_vm(fcfs_task_t *t) {
  return t->vm;
}

struct uv_loop_s *fcfs_task_loop(fcfs_task_t *t) {
  return t->vm->env.loop;
}

double fcfs_task_time_left(fcfs_task_t *t) {
  if (t->deadline_ms == 0) return 1e9;
  uint64_t now = uv_now(t->vm->env.loop);
  return t->deadline_ms > now ? (double)(t->deadline_ms - now) / 1000.0 : 0.0;
}

void fcfs_task_set_deadline(fcfs_task_t *t, uint64_t deadline_ms) {
  t->deadline_ms = deadline_ms;
}

int fcfs_task_on_end(fcfs_task_t *t, fcfs_release_cb release, void *res) {
  if (t->nends == t->capends) {
    int cap = t->capends ? t->capends * 2 : 4;
    task_end_t *e = realloc(t->ends, sizeof(*e) * (size_t)cap);
    if (e == NULL) return -1;
    t->ends = e;
    t->capends = cap;
  }
  t->ends[t->nends].release = release;
  t->ends[t->nends].res = res;
  t->nends++;
  return 0;
}

void fcfs_task_off_end(fcfs_task_t *t, fcfs_release_cb release, void *res) {
  for (int i = t->nends - 1; i >= 0; i--)
    if (t->ends[i].release == release && t->ends[i].res == res) {
      memmove(&t->ends[i], &t->ends[i + 1], sizeof(task_end_t) * (size_t)(t->nends - i - 1));
      t->nends--;
      return;
    }
}

/* ---- task lifecycle ------------------------------------------------------ */

static void vm_close(fcfs_vm_t *vm);

static fcfs_task_t *task_new(fcfs_vm_t *vm, int kind) {
  fcfs_task_t *t = vm->free_tasks;
  if (t) { /* recycled: keep its ends array, clear the rest */
    task_end_t *ends = t->ends;
    int capends = t->capends;
    vm->free_tasks = t->next;
    vm->nfree_tasks--;
    memset(t, 0, sizeof(*t));
    t->ends = ends;
    t->capends = capends;
  } else if ((t = calloc(1, sizeof(*t))) == NULL) {
    return NULL;
  }
  t->vm = vm;
  t->kind = kind;
  if (vm->nspare > 0) {
    vm->nspare--;
    t->co = vm->spare[vm->nspare].co;
    t->co_ref = vm->spare[vm->nspare].ref;
  } else {
    t->co = lua_newthread(vm->L);
    t->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
  }
  t->next = vm->tasks;
  if (vm->tasks) vm->tasks->prev = t;
  vm->tasks = t;
  vm->ntasks++;
  return t;
}

/* Free t: release what it pinned (last first), drop its coroutine. */
static void task_end(fcfs_task_t *t) {
  fcfs_vm_t *vm = t->vm;
  for (int i = t->nends - 1; i >= 0; i--)
    t->ends[i].release(t->ends[i].res);
  if (t->reusable && vm->nspare < SPARE_THREADS && !vm->retired) {
    lua_resetthread(vm->L, t->co);
    vm->spare[vm->nspare].co = t->co;
    vm->spare[vm->nspare++].ref = t->co_ref;
  } else {
    luaL_unref(vm->L, LUA_REGISTRYINDEX, t->co_ref);
  }
  if (t->prev)
    t->prev->next = t->next;
  else
    vm->tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  vm->ntasks--;
  if (vm->nfree_tasks < SPARE_TASKS && !vm->retired) {
    t->next = vm->free_tasks;
    vm->free_tasks = t;
    vm->nfree_tasks++;
  } else {
    free(t->ends);
    free(t);
  }
  if (vm->retired && vm->ntasks == 0 && vm->hold == 0) vm_close(vm);
}

static void task_cancel(fcfs_task_t *t) {
  if (t->op) {
    fcfs_cancel_cb cancel = t->cancel;
    void *op = t->op;
    t->op = NULL;
    t->cancel = NULL;
    cancel(op);
  }
  task_end(t);
}

/* The task ended: it no longer points at its owner when the owner hears of it. */
static void *detach_owner(fcfs_task_t *t) {
  void *owner = t->owner;
  t->owner = NULL;
  return owner;
}

/* Push the error of a failed task with its traceback on the VM's main state. */
static const char *task_traceback(fcfs_task_t *t, int status) {
  const char *msg = lua_tostring(t->co, -1);
  if (msg == NULL)
    msg = status == LUA_ERRMEM ? "not enough memory" : "(error object is not a string)";
  luaL_traceback(t->vm->L, t->co, msg, 0);
  return lua_tostring(t->vm->L, -1);
}

static void run_finish(fcfs_vm_t *vm, int code, const char *err) {
  fcfs_vm_run_cb done = vm->run_done;
  vm->run_done = NULL;
  if (done) done(vm, code, err, vm->run_arg);
}

/* The exit code a script's return values (on co) stand for. */
static int exit_code(lua_State *co) {
  if (lua_gettop(co) == 0) return 0;
  if (lua_type(co, 1) == LUA_TBOOLEAN) return !lua_toboolean(co, 1);
  if (lua_type(co, 1) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(co, 1);
  return n >= 0 && n <= 255 ? (int)n : 1;
}

static void task_failed(fcfs_task_t *t, int status) {
  fcfs_vm_t *vm = t->vm;
  const char *tb = task_traceback(t, status);
  void *owner = detach_owner(t);
  if (t->kind == TASK_OWNED) {
    if (owner) t->hooks->failed(owner, tb);
  } else if (t->kind == TASK_MAIN) {
    run_finish(vm, 1, tb);
  } else {
    fcfs_log(FCFS_LOG_ERROR, "timer callback failed: %s", tb);
  }
  lua_pop(vm->L, 1);
}

/* The init task is freed before its outcome is told: the callback may close
 * the VM (a failed reload), which must not happen under the task's feet. */
static void init_end(fcfs_task_t *t, int status) {
  fcfs_vm_t *vm = t->vm;
  char err[4096];
  if (status != 0) {
    snprintf(err, sizeof(err), "%s", task_traceback(t, status));
    lua_pop(vm->L, 1);
  }
  fcfs_vm_init_cb done = vm->init_done;
  void *arg = vm->init_arg;
  vm->init_done = NULL;
  task_end(t);
  if (done) done(vm, status != 0 ? err : NULL, arg);
}

/* An owned task raised (the error on top of its coroutine): the app's
 * handle_error(arg, err, co) answers instead, its results handed to the
 * owner's done hook as the task's own would be, on the coroutine reset.
 * 0 when told; -1 when handle_error raised too (logged; the task then fails
 * as it would without it). */
static int error_handled(fcfs_task_t *t) {
  fcfs_vm_t *vm = t->vm;
  lua_State *L = vm->L;
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->error_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->app_ref);
  t->hooks->push_arg(t->owner, L);
  lua_pushvalue(t->co, -1); /* the error stays on co for a traceback */
  lua_xmove(t->co, L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
  fcfs_task_t *prev = vm->current;
  vm->current = t; /* req.headers and host.log find the request */
  int rc = lua_pcall(L, 4, 4, 0);
  vm->current = prev;
  if (rc != 0) {
    const char *msg = lua_tostring(L, -1);
    fcfs_log(FCFS_LOG_ERROR, "handle_error failed: %s",
             msg ? msg : "(error object is not a string)");
    lua_settop(L, base);
    return -1;
  }
  lua_resetthread(L, t->co);
  lua_xmove(L, t->co, 4);
  void *owner = detach_owner(t);
  if (owner) t->hooks->done(owner, t->co);
  return 0;
}

/* Resume t with nargs values on its coroutine and deal with the outcome. */
static void task_run(fcfs_task_t *t, int nargs) {
  fcfs_vm_t *vm = t->vm;
  fcfs_task_t *prev = vm->current;
  vm->current = t;
  int status = lua_resume(t->co, nargs);
  vm->current = prev;
  if (status == LUA_YIELD) {
    if (t->op != NULL) {
      lua_settop(t->co, 0); /* drop the sentinel; the op pushes its results */
      return;
    }
    lua_settop(t->co, 0);
    lua_pushliteral(t->co,
                    "coroutine.yield() outside of a coroutine (a handler cannot yield itself)");
    status = LUA_ERRRUN;
  }
  t->reusable = 1;
  if (t->kind == TASK_INIT) {
    init_end(t, status);
    return;
  }
  if (status != 0) {
    if (t->vm->error_ref == LUA_NOREF || t->owner == NULL || t->hooks->push_arg == NULL ||
        error_handled(t) != 0)
      task_failed(t, status);
  } else if (t->kind == TASK_OWNED) {
    void *owner = detach_owner(t);
    if (owner) t->hooks->done(owner, t->co);
  } else if (t->kind == TASK_MAIN)
    run_finish(vm, exit_code(t->co), NULL);
  task_end(t);
}

void fcfs_task_resume(fcfs_task_t *t, int nresults) {
  t->op = NULL;
  t->cancel = NULL;
  task_run(t, nresults);
}

/* ---- owned tasks ---------------------------------------------------------------- */

fcfs_task_t *fcfs_vm_task(fcfs_vm_t *vm, const fcfs_task_hooks_t *hooks, void *owner,
                          uint64_t deadline_ms) {
  fcfs_task_t *t = task_new(vm, TASK_OWNED);
  if (t == NULL) return NULL;
  t->hooks = hooks;
  t->owner = owner;
  t->deadline_ms = deadline_ms;
  return t;
}

void fcfs_task_start(fcfs_task_t *t, int nargs) {
  task_run(t, nargs);
}

void fcfs_task_cancel(fcfs_task_t *t) {
  t->owner = NULL;
  task_cancel(t);
}

/* ---- timers and init -------------------------------------------------------- */

int fcfs_vm_spawn(fcfs_vm_t *vm, lua_State *from, int nargs, fcfs_release_cb ended, void *res) {
  fcfs_task_t *t = task_new(vm, TASK_TIMER);
  if (t == NULL || (ended && fcfs_task_on_end(t, ended, res) != 0)) {
    lua_pop(from, nargs + 1);
    fcfs_log(FCFS_LOG_ERROR, "timer callback dropped: out of memory");
    if (t) task_end(t);
    return -1;
  }
  lua_xmove(from, t->co, nargs + 1);
  task_run(t, nargs);
  return 0;
}

void fcfs_vm_init(fcfs_vm_t *vm, fcfs_vm_init_cb done, void *arg) {
  vm->init_done = done;
  vm->init_arg = arg;
  if (vm->init_ref == LUA_NOREF) {
    vm->init_done = NULL;
    done(vm, NULL, arg);
    return;
  }
  fcfs_task_t *t = task_new(vm, TASK_INIT);
  if (t == NULL) {
    vm->init_done = NULL;
    done(vm, "out of memory", arg);
    return;
  }
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->init_ref);
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->app_ref);
  task_run(t, 1);
}

void fcfs_vm_run(fcfs_vm_t *vm, int argc, char **argv, fcfs_vm_run_cb done, void *arg) {
  fcfs_task_t *t = vm->main_ref == LUA_NOREF ? NULL : task_new(vm, TASK_MAIN);
  if (t == NULL) {
    done(vm, 1, vm->main_ref == LUA_NOREF ? "no script loaded" : "out of memory", arg);
    return;
  }
  vm->run_done = done;
  vm->run_arg = arg;
  lua_checkstack(t->co, argc + 1);
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, vm->main_ref);
  for (int i = 0; i < argc; i++)
    lua_pushstring(t->co, argv[i]);
  task_run(t, argc);
}

/* ---- generations ---------------------------------------------------------- */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* A VM build failed: the message on top of its stack goes to err, the VM is
 * closed and freed. Returns NULL. */
static fcfs_vm_t *vm_fail(fcfs_vm_t *vm, char *err, size_t errlen) {
  const char *msg = lua_tostring(vm->L, -1);
  snprintf(err, errlen, "%s", msg ? msg : "unknown error");
  lua_close(vm->L);
  free(vm);
  return NULL;
}

/* A VM with nothing loaded yet: the libraries, package.path (dir first),
 * the host module, the host-aware coroutines; the
 * traceback handler is left at stack index 1. NULL and err on failure. */
static fcfs_vm_t *vm_open(const fcfs_vm_env_t *env, uint64_t generation, const char *dir, char *err,
                          size_t errlen) {
  fcfs_vm_t *vm = calloc(1, sizeof(*vm));
  if (vm == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  vm->env = *env;
  vm->generation = generation;
  vm->app_ref = vm->handle_ref = vm->error_ref = vm->init_ref = vm->main_ref = LUA_NOREF;
  lua_State *L = vm->L = luaL_newstate();
  if (L == NULL) {
    free(vm);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  luaL_openlibs(L);
  lua_setexdata(L, vm);

  /* package.path: the app first, then extra paths, then the system's. */
  const fcfs_conf_t *c = env->conf;
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s%s%s", dir, dir, c->lua_path,
                  c->lua_path[0] ? ";" : "", lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, fcfs_lapi_host_open);
  lua_setfield(L, -2, "host");
  lua_pop(L, 2);

  /* $FCFS_LUA_INIT: a Lua file run first in every VM, like LUA_INIT of the standalone
   * interpreter (the test suite's line counter, spec/support/coverage.lua). */
  const char *init = getenv("FCFS_LUA_INIT");
  if (init && init[0] && (luaL_loadfile(L, init) != 0 || lua_pcall(L, 0, 0, 1) != 0))
    return vm_fail(vm, err, errlen);
  if (luaL_loadbuffer(L, prelude, strlen(prelude), "=prelude") != 0)
    return vm_fail(vm, err, errlen);
  lua_pushlightuserdata(L, &host_yield_key);
  lua_pushvalue(L, -1);
  vm->yield_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_pcall(L, 1, 0, 1) != 0) return vm_fail(vm, err, errlen);
  return vm;
}

/* The last step of a VM build: strict globals from now on, an empty stack.
 * vm, or NULL with the VM freed and the message in err. */
static fcfs_vm_t *vm_seal(fcfs_vm_t *vm, char *err, size_t errlen) {
  lua_State *L = vm->L;
  if (luaL_loadbuffer(L, strict, strlen(strict), "=strict") != 0 || lua_pcall(L, 0, 0, 1) != 0)
    return vm_fail(vm, err, errlen);
  lua_settop(L, 0);
  return vm;
}

fcfs_vm_t *fcfs_vm_new(const fcfs_vm_env_t *env, uint64_t generation, const char *dir, char *err,
                       size_t errlen) {
  fcfs_vm_t *vm = vm_open(env, generation, dir, err, errlen);
  if (vm == NULL) return NULL;
  lua_State *L = vm->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "app");
  if (lua_pcall(L, 1, 1, 1) != 0) return vm_fail(vm, err, errlen);
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L, "%s/app.lua must return the app (a table with :handle), got %s", dir,
                    luaL_typename(L, -1));
    return vm_fail(vm, err, errlen);
  }
  lua_getfield(L, -1, "serve");
  lua_getfield(L, -2, "handle_error");
  if (lua_isfunction(L, -2) && lua_isfunction(L, -1)) {
    vm->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 2);
    lua_getfield(L, -1, "handle");
    if (!lua_isfunction(L, -1)) {
      lua_pushfstring(L, "%s/app.lua: the app has no handle method", dir);
      return vm_fail(vm, err, errlen);
    }
  }
  vm->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "run_init_worker");
  if (lua_isfunction(L, -1))
    vm->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  vm->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return vm_seal(vm, err, errlen);
}

fcfs_vm_t *fcfs_vm_new_script(const fcfs_vm_env_t *env, const char *path, char *err,
                              size_t errlen) {
  fcfs_vm_t *vm = vm_open(env, 1, env->conf->lua_dir, err, errlen);
  if (vm == NULL) return NULL;
  if (luaL_loadfile(vm->L, path) != 0) return vm_fail(vm, err, errlen);
  vm->main_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
  return vm_seal(vm, err, errlen);
}

static void drain_closed(uv_handle_t *h) {
  free(h);
}

static void vm_close(fcfs_vm_t *vm) {
  if (vm->drain) {
    uv_timer_stop(vm->drain);
    uv_close((uv_handle_t *)vm->drain, drain_closed);
    vm->drain = NULL;
  }
  lua_close(vm->L);
  vm->L = NULL;
  while (vm->free_tasks) {
    fcfs_task_t *t = vm->free_tasks;
    vm->free_tasks = t->next;
    free(t->ends);
    free(t);
  }
  vm->env.closed(vm->env.w, vm); /* forgets the pointer; may start the worker's exit */
  free(vm);
}

/* Cancel every task of a retired VM (owners hear why: requests get 503),
 * then close it. */
static void cancel_all(fcfs_vm_t *vm, const char *why) {
  while (vm->tasks) {
    fcfs_task_t *t = vm->tasks;
    const fcfs_task_hooks_t *hooks = t->hooks;
    void *owner = detach_owner(t);
    int last = vm->ntasks == 1; /* its end closes the VM */
    task_cancel(t);
    if (owner) hooks->dropped(owner, why);
    if (last) return;
  }
  vm_close(vm);
}

static void drain_expired(uv_timer_t *h) {
  fcfs_vm_t *vm = h->data;
  fcfs_log(FCFS_LOG_WARN, "generation %llu: drain timeout, cancelling %d task(s)",
           (unsigned long long)vm->generation, vm->ntasks);
  cancel_all(vm, "the server is reloading or stopping");
}

void fcfs_vm_retire(fcfs_vm_t *vm, double drain_timeout) {
  if (vm->retired) return;
  vm->retired = 1;
  vm->hold++;
  vm->env.retiring(vm);
  vm->hold--;
  if (vm->ntasks == 0) {
    vm_close(vm);
    return;
  }
  if (drain_timeout <= 0 || (vm->drain = malloc(sizeof(uv_timer_t))) == NULL) {
    cancel_all(vm, "the server is reloading or stopping");
    return;
  }
  uv_timer_init(vm->env.loop, vm->drain);
  vm->drain->data = vm;
  uv_timer_start(vm->drain, drain_expired, (uint64_t)(drain_timeout * 1000), 0);
}

void fcfs_vm_free(fcfs_vm_t *vm) {
  vm->retired = 1;
  vm->hold++;
  vm->env.retiring(vm);
  vm->hold--;
  cancel_all(vm, "the server is stopping");
}

int fcfs_vm_retired(const fcfs_vm_t *vm) {
  return vm->retired;
}

int fcfs_vm_exiting(const fcfs_vm_t *vm) {
  return vm->retired || *vm->env.stopping;
}
