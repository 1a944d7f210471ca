/* lapi_host.c -- the `host` module handlers require: the small, stable
 * facade between Lua and the C host (Kong's PDK in spirit).
 *
 *   host.log(level, ...)          error log, with the request's id and line
 *   host.now()                    wall clock, seconds (float; an FFI call under LuaJIT)
 *   host.header(req, name)        req.headers[name] (name lowercase), read without building
 *                                 req.headers when it can (request.c, FFI)
 *   host.header_direct(req)       whether host.header reads req's headers from the host's
 *                                 buffer (a table the host made, req.headers neither built nor set)
 *   host.sleep(s)                 yields the task (timer.c)
 *   host.timer.at/every/pending   timers (timer.c)
 *   host.null                     JSON null / SQL NULL / Redis nil (lightuserdata NULL)
 *   host.config                   read-only view of the configuration
 *   host.worker_id, worker_count, generation, pid
 *   host.node_id                  config node_id (default: the hostname)
 *   host.time_left()              seconds before the request's deadline
 *   host.metrics_text()           Prometheus text of the whole node
 *   host.metrics.counter/gauge    the app's metrics (lapi_metrics.c)
 *   host.shared.NAME              shared dictionaries (lapi_shared.c)
 *   host.stock                    per-product stock gates, FFI fast path (lapi_stock.c)
 *   host.reload()                 new VM generation on every worker; yields
 *   host.exiting()                true once this VM is retired or the worker stops
 *   host.request_field(req, name) a request field made on first use (request.c)
 *   host.redis, host.mysql        the data plane (lapi_redis.c, lapi_mysql.c)
 *   host.crypto                   passwords, sealing, tokens (lapi_crypto.c)
 *   host.tcp()                    an outbound TCP socket (lapi_tcp.c)
 *   host.stream.open/send         a streamed answer, e.g. SSE (lapi_stream.c)
 *
 * The table is built once per VM when first required; it holds no C
 * pointers that outlive the VM (the worker outlives all its VMs).
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "crypto.h"
#include "lapi.h"
#include "log.h"
#include "metrics.h"
#include "mysql.h"
#include "redis.h"
#include "request.h"
#include "tcp.h"
#include "timer.h"
#include "vm.h"
#include "worker.h"

static int host_log(lua_State *L) {
  int level = fcfs_log_level_parse(luaL_checkstring(L, 1));
  if (level < 0) return luaL_argerror(L, 1, "unknown level (debug, info, notice, warn, error)");
  if (!fcfs_log_enabled(level)) return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  const char *msg = lua_tostring(L, -1);
  fcfs_task_t *t = fcfs_task_current(L);
  fcfs_request_t *r = t ? fcfs_task_request(t) : NULL;
  if (r) {
    char line[256];
    fcfs_log_req(level, r->id, r->remote, fcfs_request_line(r, line, sizeof(line)), "%s", msg);
  } else {
    fcfs_log(level, "%s", msg);
  }
  return 0;
}

/* host.now()'s clock, exported for LuaJIT's FFI (now_chunk): seconds, to the millisecond. */
double fcfs_host_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)(tv.tv_usec / 1000) / 1000.0;
}

static int host_now(lua_State *L) {
  lua_pushnumber(L, fcfs_host_now());
  return 1;
}

/* Called with the host table: host.now becomes an FFI call (a compiled
 * trace runs through it instead of stopping at a C API function). */
static const char now_chunk[] = "local host = ...\n"
                                "local ok, ffi = pcall(require, 'ffi')\n"
                                "if not ok then return end\n"
                                "pcall(ffi.cdef, 'double fcfs_host_now(void);')\n"
                                "local C = ffi.C\n"
                                "host.now = function() return C.fcfs_host_now() end\n";

static int host_time_left(lua_State *L) {
  fcfs_task_t *t = fcfs_task_current(L);
  lua_pushnumber(L, t ? fcfs_task_time_left(t) : 1e9);
  return 1;
}

static int host_exiting(lua_State *L) {
  lua_pushboolean(L, fcfs_vm_exiting(fcfs_vm_of(L)));
  return 1;
}

static int host_metrics_text(lua_State *L) {
  fcfs_worker_t *w = fcfs_vm_worker(fcfs_vm_of(L));
  size_t len;
  char *text = fcfs_metrics_render(w->shm, &len);
  if (text == NULL) return luaL_error(L, "host.metrics_text: out of memory");
  lua_pushlstring(L, text, len);
  free(text);
  return 1;
}

/* host.reload(): the op outlives a cancelled task (the reload goes on), so
 * cancel only forgets the task and the reload callback frees the op. */
typedef struct {
  fcfs_task_t *task;
} reload_op_t;

static void reload_done(void *arg, int ok, uint64_t generation, const char *err) {
  reload_op_t *op = arg;
  fcfs_task_t *t = op->task;
  free(op);
  if (t == NULL) return;
  lua_State *co = fcfs_task_thread(t);
  lua_pushboolean(co, ok);
  lua_pushnumber(co, (double)generation);
  if (err)
    lua_pushstring(co, err);
  else
    lua_pushnil(co);
  fcfs_task_resume(t, 3);
}

static void reload_cancel(void *p) {
  ((reload_op_t *)p)->task = NULL;
}

static int host_reload(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "host.reload");
  fcfs_worker_t *w = fcfs_vm_worker(fcfs_task_vm(t));
  if (w->finished) { /* `fcfs run`: no node to reload */
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (double)w->generation);
    lua_pushliteral(L, "no serving worker");
    return 3;
  }
  reload_op_t *op = malloc(sizeof(*op));
  if (op == NULL) return luaL_error(L, "host.reload: out of memory");
  op->task = t;
  fcfs_worker_reload_all(w, reload_done, op);
  return fcfs_task_wait(L, t, op, reload_cancel);
}

int fcfs_lapi_host_open(lua_State *L) {
  fcfs_vm_t *vm = fcfs_vm_of(L);
  fcfs_worker_t *w = fcfs_vm_worker(vm);
  static const luaL_Reg fns[] = {{"log", host_log},
                                 {"now", host_now},
                                 {"sleep", fcfs_lapi_sleep},
                                 {"time_left", host_time_left},
                                 {"metrics_text", host_metrics_text},
                                 {"reload", host_reload},
                                 {"exiting", host_exiting},
                                 {"request_field", fcfs_request_field},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  if (luaL_loadbuffer(L, now_chunk, sizeof(now_chunk) - 1, "=host.now") != 0) lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  fcfs_request_push_header_fns(L);
  lua_setfield(L, -3, "header_direct");
  lua_setfield(L, -2, "header");
  fcfs_lapi_timer_open(L);
  lua_setfield(L, -2, "timer");
  fcfs_lapi_tcp_open(L);
  lua_setfield(L, -2, "tcp");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  fcfs_conf_push(L, w->conf);
  lua_setfield(L, -2, "config");
  lua_pushinteger(L, w->id);
  lua_setfield(L, -2, "worker_id");
  lua_pushinteger(L, w->count);
  lua_setfield(L, -2, "worker_count");
  lua_pushnumber(L, (double)fcfs_vm_generation(vm));
  lua_setfield(L, -2, "generation");
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_setfield(L, -2, "pid");
  lua_pushstring(L, w->conf->node_id);
  lua_setfield(L, -2, "node_id");
  fcfs_lapi_shared_open(L, fcfs_shm_dicts(w->shm));
  lua_setfield(L, -2, "shared");
  fcfs_lapi_stock_open(L, fcfs_shm_stock(w->shm));
  lua_setfield(L, -2, "stock");
  fcfs_lapi_metrics_open(L);
  lua_setfield(L, -2, "metrics");
  fcfs_lapi_stream_open(L);
  lua_setfield(L, -2, "stream");
  if (w->redis) {
    fcfs_lapi_redis_open(L, w->redis);
    lua_setfield(L, -2, "redis");
  }
  if (w->mysql) {
    fcfs_lapi_mysql_open(L, w->mysql);
    lua_setfield(L, -2, "mysql");
  }
  if (w->crypto) {
    fcfs_lapi_crypto_open(L, w->crypto);
    lua_setfield(L, -2, "crypto");
  }
  return 1;
}
