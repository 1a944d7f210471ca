/* task.h -- request and timer coroutines ("tasks") and how host I/O yields.
 *
 * Every request and every timer callback runs in its own Lua coroutine, a
 * task. A host function that does I/O (host.sleep, host.redis.call, ...)
 * starts the operation in C, registers it with fcfs_task_wait() and returns
 * its result from lua_CFunction via `return fcfs_task_wait(...)`, which
 * yields. When the operation completes, its callback pushes the results on
 * fcfs_task_thread(t) and calls fcfs_task_resume(t, nresults); the Lua code
 * sees them as the return values of the host function.
 *
 * Ownership: the operation (op) belongs to the subsystem that started it.
 * If the task ends before the op completes (deadline, client gone, VM drained,
 * worker stopping), the scheduler calls cancel(op) exactly once; from then on
 * the subsystem must never call fcfs_task_resume() for it, and it frees or
 * recycles everything the op holds (a MySQL connection in the middle of a
 * query is closed, never pooled; a Redis reply still due is read and dropped).
 * The task itself is freed by the scheduler.
 *
 * The completion must come from the loop, after fcfs_task_wait() yielded:
 * never call fcfs_task_resume() from inside the function that started the op
 * (answer at once by returning values instead, e.g. `nil, "unavailable"`).
 */
#ifndef FCFS_TASK_H
#define FCFS_TASK_H

#include <lua.h>
#include <stdint.h>

typedef struct fcfs_task_s fcfs_task_t;
typedef struct fcfs_vm_s fcfs_vm_t;

typedef void (*fcfs_cancel_cb)(void *op);

/* The task running right now in the VM that owns L, or NULL outside of any
 * task (module loading at require time). Host I/O functions refuse to run
 * without a task, with fcfs_task_require(). */
fcfs_task_t *fcfs_task_current(lua_State *L);

/* Like fcfs_task_current(), but raises a Lua error naming `what` (e.g.
 * "host.redis.call") and saying where to move the call when there is no
 * task. */
fcfs_task_t *fcfs_task_require(lua_State *L, const char *what);

/* luaL_error for host functions: the message starts with the position of
 * the Lua code that called the host function, past the Lua functions the
 * host puts in front of some of them (chunks named "=host...", e.g. the one
 * of host.redis.call), so that it reads as if the C function had been called
 * directly. */
int fcfs_task_error(lua_State *L, const char *fmt, ...);

/* Yield the current task until the op completes. Use as
 * `return fcfs_task_wait(L, t, op, cancel);` from a lua_CFunction. */
int fcfs_task_wait(lua_State *L, fcfs_task_t *t, void *op, fcfs_cancel_cb cancel);

/* The coroutine to push results on before fcfs_task_resume(). */
lua_State *fcfs_task_thread(fcfs_task_t *t);

/* Resume t with the nresults values on top of fcfs_task_thread(t). May run
 * Lua code (and finish or free the task) before it returns. */
void fcfs_task_resume(fcfs_task_t *t, int nresults);

/* Seconds left before the task's deadline (a large number when none). I/O
 * timeouts are clamped to it. */
double fcfs_task_time_left(fcfs_task_t *t);
/* Move the task's deadline (loop time in ms; 0: none), e.g. for a streamed
 * answer, which outlives request_timeout. */
void fcfs_task_set_deadline(fcfs_task_t *t, uint64_t deadline_ms);

/* The VM and the libuv loop a task runs on. */
fcfs_vm_t *fcfs_task_vm(fcfs_task_t *t);
struct uv_loop_s *fcfs_task_loop(fcfs_task_t *t);

/* A task-local registry slot that is released when the task ends, for
 * resources pinned to a request (a MySQL transaction connection, a pinned
 * Redis connection): the release callback runs after the task finished or
 * was cancelled, in the order the resources were registered, last first. */
typedef void (*fcfs_release_cb)(void *res);
int fcfs_task_on_end(fcfs_task_t *t, fcfs_release_cb release, void *res);
void fcfs_task_off_end(fcfs_task_t *t, fcfs_release_cb release, void *res);

#endif
