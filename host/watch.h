/* watch.h -- dev mode: watch a directory tree and call back (debounced)
 * when a file in it changes. */
#ifndef FCFS_WATCH_H
#define FCFS_WATCH_H

#include <uv.h>

typedef struct fcfs_watch_s fcfs_watch_t;

/* NULL when nothing could be watched (logged). */
fcfs_watch_t *fcfs_watch_start(uv_loop_t *loop, const char *dir, void (*cb)(void *arg), void *arg);
void fcfs_watch_stop(fcfs_watch_t *w); /* NULL is fine; memory goes with the close callbacks */

#endif
