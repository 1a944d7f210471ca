/* timer.h -- host.sleep and host.timer.at/every for Lua. */
#ifndef FCFS_TIMER_H
#define FCFS_TIMER_H

#include <lua.h>

#include "task.h"

int fcfs_lapi_sleep(lua_State *L);
/* Push the host.timer table. */
void fcfs_lapi_timer_open(lua_State *L);
/* Stop every pending timer of vm and run its callback once with
 * premature = true (VM retired by a reload, or worker stopping). */
void fcfs_timers_fire_premature(fcfs_vm_t *vm);

#endif
