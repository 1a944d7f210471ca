/* lapi.h -- the `host` Lua module (lapi_host.c), preloaded in every VM. */
#ifndef FCFS_LAPI_H
#define FCFS_LAPI_H

#include <lua.h>

int fcfs_lapi_host_open(lua_State *L);

#endif
