/* stats.h -- counters a connection pool keeps for /metrics and /readyz.
 *
 * Each worker owns one fcfs_pool_stats_t per backend, living in the shared
 * memory segment (shm.c) so that whichever worker answers /metrics can sum
 * them over all workers. Only the owning worker writes its slot; readers
 * tolerate torn reads of a counter being updated (plain aligned 64-bit
 * stores on the platforms we build for).
 */
#ifndef FCFS_STATS_H
#define FCFS_STATS_H

#include <stdint.h>

enum { FCFS_CIRCUIT_CLOSED = 0, FCFS_CIRCUIT_OPEN = 1, FCFS_CIRCUIT_HALF_OPEN = 2 };

typedef struct fcfs_pool_stats_s {
  uint64_t size;     /* connections open now */
  uint64_t in_use;   /* connections busy now (for pipelined Redis: with replies pending; for
                        MySQL: pinned, running, or being drained/reset) */
  uint64_t waiting;  /* callers queued for a connection now */
  uint64_t waits;    /* total callers that had to queue */
  uint64_t timeouts; /* total operations that timed out */
  uint64_t errors;   /* total connection/protocol errors (not server error replies) */
  uint64_t requests; /* total commands/queries sent */
  uint64_t writes;   /* Redis: total writes of queued commands (requests / writes: commands per
                        write); MySQL: not counted */
  uint64_t circuit;  /* FCFS_CIRCUIT_* now */
  uint64_t up;       /* 1 when at least one connection is established or the last connect worked */
  uint64_t connects; /* total connection attempts */
  uint64_t probes;   /* total half-open probes of the circuit breaker */
} fcfs_pool_stats_t;

#endif
