/* lapi_metrics.c -- host.metrics: the application's own Prometheus
 * metrics, rendered by /metrics next to the host's.
 *
 *   local orders = host.metrics.counter("shop_orders_total", "Orders placed.")
 *   orders:inc()  orders:inc(3)
 *   local queue = host.metrics.gauge("shop_queue_depth", "Purchases waiting.")
 *   queue:set(12)  queue:inc(1)  queue:dec(1)
 *
 * Declaring is allowed at module level (no I/O: it claims a slot in shm by
 * name, see metrics.c) and returns the same metric on every worker and
 * after every reload, so values go on from where they were. A counter is
 * one node-wide value every worker adds to. A gauge has one value per
 * worker; /metrics shows their sum over the live workers, so set() sets
 * this worker's share (a worker that exits takes its share with it).
 * Names follow Prometheus ([a-zA-Z_:][a-zA-Z0-9_:]*, under 64 bytes) and may
 * not start with fcfs_ (the host's own).
 *
 * Ownership: a metric object is a userdata pointing into the shm segment,
 * mapped for the life of the process.
 */
#include <lauxlib.h>

#include "lapi.h"
#include "metrics.h"
#include "vm.h"
#include "worker.h"

#define COUNTER_MT "fcfs.metrics.counter"
#define GAUGE_MT "fcfs.metrics.gauge"

typedef struct {
  fcfs_app_metric_t *m;
  double *gauge; /* this worker's share (gauges) */
} metric_ud_t;

static int counter_inc(lua_State *L) {
  metric_ud_t *u = luaL_checkudata(L, 1, COUNTER_MT);
  double n = luaL_optnumber(L, 2, 1);
  if (!(n >= 0)) return luaL_argerror(L, 2, "a counter only goes up");
  fcfs_metrics_counter_add(u->m, n);
  return 0;
}

static int gauge_set(lua_State *L) {
  metric_ud_t *u = luaL_checkudata(L, 1, GAUGE_MT);
  *u->gauge = luaL_checknumber(L, 2);
  return 0;
}

static int gauge_inc(lua_State *L) {
  metric_ud_t *u = luaL_checkudata(L, 1, GAUGE_MT);
  *u->gauge += luaL_optnumber(L, 2, 1);
  return 0;
}

static int gauge_dec(lua_State *L) {
  metric_ud_t *u = luaL_checkudata(L, 1, GAUGE_MT);
  *u->gauge -= luaL_optnumber(L, 2, 1);
  return 0;
}

static int declare(lua_State *L, int type, const char *mt) {
  const char *name = luaL_checkstring(L, 1);
  const char *help = luaL_optstring(L, 2, "");
  fcfs_worker_t *w = fcfs_vm_worker(fcfs_vm_of(L));
  const char *err = NULL;
  int i = fcfs_metrics_declare(w->shm, name, help, type, &err);
  if (i < 0) return luaL_error(L, "host.metrics: %s: %s", name, err);
  metric_ud_t *u = lua_newuserdata(L, sizeof(*u));
  u->m = &w->shm->app[i];
  u->gauge = &w->slot->app_gauges[i];
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  return 1;
}

static int metrics_counter(lua_State *L) {
  return declare(L, FCFS_METRIC_COUNTER, COUNTER_MT);
}

static int metrics_gauge(lua_State *L) {
  return declare(L, FCFS_METRIC_GAUGE, GAUGE_MT);
}

static void metatable(lua_State *L, const char *name, const luaL_Reg *methods) {
  if (!luaL_newmetatable(L, name)) {
    lua_pop(L, 1);
    return;
  }
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

void fcfs_lapi_metrics_open(lua_State *L) {
  static const luaL_Reg counter[] = {{"inc", counter_inc}, {NULL, NULL}};
  static const luaL_Reg gauge[] = {
      {"set", gauge_set}, {"inc", gauge_inc}, {"dec", gauge_dec}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"counter", metrics_counter}, {"gauge", metrics_gauge}, {NULL, NULL}};
  metatable(L, COUNTER_MT, counter);
  metatable(L, GAUGE_MT, gauge);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
}
