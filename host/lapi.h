/* lapi.h -- the `host` Lua module (lapi_host.c), preloaded in every VM. */
#ifndef FCFS_LAPI_H
#define FCFS_LAPI_H

#include <lua.h>

int fcfs_lapi_host_open(lua_State *L);
/* host.now(): the wall clock in seconds, to the millisecond (exported for the FFI). */
double fcfs_host_now(void);

/* Push host.shared (lapi_shared.c): name -> dictionary of the region
 * (fcfs_shm_dicts; NULL gives an empty table). */
void fcfs_lapi_shared_open(lua_State *L, void *region);
/* Push host.stock (lapi_stock.c) over the stock gates' table
 * (fcfs_shm_stock). */
void fcfs_lapi_stock_open(lua_State *L, void *gate);
/* Push host.metrics (lapi_metrics.c). */
void fcfs_lapi_metrics_open(lua_State *L);
/* Push host.stream (lapi_stream.c). */
void fcfs_lapi_stream_open(lua_State *L);

#endif
