/* metrics.h -- per-request counters into this worker's shm slot, and the
 * Prometheus text rendering of all slots summed. */
#ifndef FCFS_METRICS_H
#define FCFS_METRICS_H

#include <stddef.h>

#include "shm.h"

void fcfs_metrics_request(fcfs_worker_slot_t *s, const char *route, int status, double seconds);

/* Render the whole node's metrics; returns a malloc'ed string (caller frees)
 * and its length, or NULL when out of memory. */
char *fcfs_metrics_render(const fcfs_shm_t *shm, size_t *len);

#endif
