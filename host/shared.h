/* shared.h -- shared-memory dictionaries (host.shared), the C core.
 *
 * A node's dictionaries live in one region of the shm segment (shm.c): the
 * process that creates the segment (the master, or the single process)
 * lays them out from the config before any worker starts; every worker maps
 * the same memory at its own address, so everything inside refers to
 * everything else by index, never by pointer. Each dictionary has its own
 * process-shared robust mutex, held only for the few hundred instructions
 * of one operation (no syscall when uncontended).
 *
 * The API is plain C (keys and strings as pointer + length, results into
 * caller memory, errors as static strings) so that a LuaJIT FFI binding can
 * call it directly; lapi_shared.c is the Lua C API binding. No function
 * here calls into Lua or allocates: nothing can longjmp out while a lock is
 * held.
 */
#ifndef FCFS_SHARED_H
#define FCFS_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

#define FCFS_SHARED_KEY_MAX 250

typedef struct fcfs_shared_dict_s fcfs_shared_dict_t;

enum { FCFS_SHARED_NIL = 0, FCFS_SHARED_STRING, FCFS_SHARED_NUMBER, FCFS_SHARED_BOOLEAN };

/* A value going in (set) or coming out (get). For strings going in, str and
 * len; coming out, the bytes are copied into the caller's buffer and len is
 * the full length (larger than the buffer: nothing copied, retry bigger).
 * Booleans use num (0 or 1). */
typedef struct {
  int type;
  double num;
  const char *str;
  size_t len;
} fcfs_shared_value_t;

typedef struct {
  uint64_t capacity_bytes, used_bytes, entries, evictions;
  uint64_t owner_deaths; /* lockers that found the previous owner dead */
  uint64_t resets;       /* ... in the middle of a change: the dictionary was emptied */
} fcfs_shared_stats_t;

/* Bytes of shm the dictionaries of the config need (0 when none). */
size_t fcfs_shared_region_size(const fcfs_conf_dicts_t *dicts);
/* Lay out the dictionaries in zeroed memory of that size. 0, or -1 when a
 * process-shared robust mutex cannot be made. */
int fcfs_shared_region_init(void *region, size_t size, const fcfs_conf_dicts_t *dicts);
/* The dictionary called name, or the i-th one (0-based); NULL past the end.
 * region may be NULL (no dictionaries). */
fcfs_shared_dict_t *fcfs_shared_find(void *region, const char *name, size_t len);
fcfs_shared_dict_t *fcfs_shared_at(void *region, int i);
const char *fcfs_shared_name(const fcfs_shared_dict_t *d);

/* Operations. All return NULL on success or a static error string:
 * "empty key", "key too long", "not found", "exists", "not a number",
 * "no memory" (the value is larger than the whole dictionary),
 * "unavailable" (the lock is unrecoverable). ttl is in seconds, 0 = never
 * expires. An expired entry behaves as absent everywhere. */

/* out->type is FCFS_SHARED_NIL when absent. Strings: see fcfs_shared_value_t. */
const char *fcfs_shared_get(fcfs_shared_dict_t *d, const char *key, size_t klen,
                            fcfs_shared_value_t *out, char *buf, size_t cap);
/* Store v (FCFS_SHARED_NIL deletes). With add, fails with "exists" when the
 * key is present. Evicts least recently used entries when the dictionary is
 * full; *evicted (may be NULL) tells whether it had to. */
const char *fcfs_shared_set(fcfs_shared_dict_t *d, const char *key, size_t klen,
                            const fcfs_shared_value_t *v, double ttl, int add, int *evicted);
/* Add n to a number; an absent key is created as *init + n (with ttl) when
 * init is not NULL, else "not found". The existing ttl is kept. */
const char *fcfs_shared_incr(fcfs_shared_dict_t *d, const char *key, size_t klen, double n,
                             const double *init, double ttl, double *out);
/* "not found" when absent. */
const char *fcfs_shared_delete(fcfs_shared_dict_t *d, const char *key, size_t klen);
/* Seconds left, 0 when the entry never expires; "not found" when absent. */
const char *fcfs_shared_ttl(fcfs_shared_dict_t *d, const char *key, size_t klen, double *left);
/* Remove up to max (0 = all) expired entries; returns how many. */
int fcfs_shared_flush_expired(fcfs_shared_dict_t *d, int max);
/* Counters, read without the lock (good enough for /metrics). */
void fcfs_shared_stats(const fcfs_shared_dict_t *d, fcfs_shared_stats_t *st);

#endif
