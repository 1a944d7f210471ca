/* metrics.h -- per-request counters into this worker's shm slot, and the
 * Prometheus text rendering of all slots summed. */
#ifndef FCFS_METRICS_H
#define FCFS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shm.h"

/* Count a request of route (a label, cut to FCFS_ROUTE_LEN - 1 bytes) answered
 * with status in seconds. *last is the caller's: the route slot of its last
 * call (any value at first), looked at before the table is searched. */
void fcfs_metrics_request(fcfs_worker_slot_t *s, const char *route, int status, double seconds,
                          uint32_t *last);

/* The slot of the app metric called name, claimed for type when new (the
 * same slot on every worker and across reloads); -1 with *err when the name
 * is invalid, taken by the other type, or no slot is left. */
int fcfs_metrics_declare(fcfs_shm_t *shm, const char *name, const char *help, int type,
                         const char **err);
/* Add n to an app counter, atomically across processes. */
void fcfs_metrics_counter_add(fcfs_app_metric_t *m, double n);

/* Render the whole node's metrics; returns a malloc'ed string (caller frees)
 * and its length, or NULL when out of memory. */
char *fcfs_metrics_render(const fcfs_shm_t *shm, size_t *len);

#endif
