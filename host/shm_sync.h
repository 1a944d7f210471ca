/* shm_sync.h -- what code in the shared-memory segment synchronises and
 * times with (shared.c, stock.c, master.c), below shm.h so that the
 * segment's layout (shm.c) can include the structures that use it. */
#ifndef FCFS_SHM_SYNC_H
#define FCFS_SHM_SYNC_H

#include <pthread.h>
#include <stdint.h>

/* A process-shared robust mutex in the segment (shared.c, stock.c). init:
 * 0 or -1. lock: 0; 1 when the previous owner died holding it (the mutex is
 * already marked consistent: the caller repairs what it guards); -1 when it
 * cannot be locked. */
int fcfs_shm_mutex_init(pthread_mutex_t *m);
int fcfs_shm_mutex_lock(pthread_mutex_t *m);

uint64_t fcfs_monotonic_ms(void);

#endif
