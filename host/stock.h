/* stock.h -- the stock gates (host.stock), the C core.
 *
 * One gate per product id (int64 > 0) in a fixed table of the node's shm
 * segment (shm.c), laid out by the process that creates the segment: the
 * last known remaining count, a version (updates older than the stored one
 * are ignored), a paused flag and the time of the last update
 * (CLOCK_MONOTONIC ms, the same clock in every process of a boot).
 *
 * Reads are lock-free and wait-free unless an update is published during
 * the read (then they read again); they make no syscall. Updates take a
 * process-shared robust mutex for a few dozen instructions.
 *
 * The functions taking `void *gate` (the table, fcfs_shm_stock()) are
 * exported from the binary for LuaJIT's FFI (lapi_stock.c declares them
 * with ffi.cdef): plain C types, results into caller memory, no Lua, no
 * allocation.
 */
#ifndef FCFS_STOCK_H
#define FCFS_STOCK_H

#include <stddef.h>
#include <stdint.h>

/* Results of fcfs_stock_update (and _get for BUSY / BAD_ID). */
enum {
  FCFS_STOCK_IGNORED = 0, /* older version than the stored one */
  FCFS_STOCK_APPLIED = 1,
  FCFS_STOCK_FULL = -1,   /* stock_slots gates already */
  FCFS_STOCK_BUSY = -2,   /* updates published without pause during a read; or lock lost */
  FCFS_STOCK_BAD_ID = -3, /* id <= 0 */
};

/* Bytes of shm a table of `slots` gates needs, and its layout in zeroed
 * memory of that size (0, or -1 when the mutex cannot be made). */
size_t fcfs_stock_region_size(int slots);
int fcfs_stock_region_init(void *region, size_t size, int slots);

/* 1 and the gate's state (any out pointer may be NULL; age_ms: since its
 * last update), 0 when the product has no gate, or FCFS_STOCK_BUSY. */
int fcfs_stock_get(void *gate, int64_t id, int64_t *remaining, uint64_t *version, int *paused,
                   uint64_t *age_ms);
/* 1 iff the product has a gate, remaining <= 0 and it is not paused. */
int fcfs_stock_sold_out(void *gate, int64_t id);
/* Create or update a gate: FCFS_STOCK_APPLIED when version >= the stored
 * one (or the gate is new), FCFS_STOCK_IGNORED when older, or an error. */
int fcfs_stock_update(void *gate, int64_t id, int64_t remaining, uint64_t version, int paused);
/* 1 when the gate was removed, 0 when there was none, or an error. */
int fcfs_stock_forget(void *gate, int64_t id);
/* Walk the table: for i in 0 .. fcfs_stock_slots() - 1, 1 and the gate
 * in slot i (id too), or 0 when slot i holds none. */
uint32_t fcfs_stock_slots(void *gate);
int fcfs_stock_at(void *gate, uint32_t i, int64_t *id, int64_t *remaining, uint64_t *version,
                  int *paused, uint64_t *age_ms);
/* Gates now and at most (stock_slots); times an updater found the lock
 * held by a dead process (and recovered it). */
void fcfs_stock_usage(void *gate, uint32_t *used, uint32_t *capacity, uint64_t *owner_deaths);

#endif
