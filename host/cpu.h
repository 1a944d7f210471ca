/* cpu.h -- worker_cpu_affinity: the CPU each worker's loop thread runs on
 * (see cpu.c). */
#ifndef FCFS_CPU_H
#define FCFS_CPU_H

#include <stddef.h>
#include <uv.h>

/* The config value: NULL or empty (or "off"): no pinning; {"auto"}: worker
 * i on the i-th CPU this process may run on (wrapping around); CPU numbers:
 * worker i on list[i % n]. 0, or -1 with a message naming the key. A CPU
 * must be one this process may run on (sched_getaffinity). */
int fcfs_cpu_check(char *const *list, char *err, size_t errlen);

/* The CPU worker id runs on under a checked list, or -1 when not pinned.
 * Called before the worker pins itself ("auto" reads the process's mask). */
int fcfs_cpu_of_worker(char *const *list, int id);

/* Pin the calling thread (the worker's loop) to cpu. libuv's thread pool
 * (password hashes, name lookups) is started first, on work, so its threads
 * keep the process's whole CPU set: work must stay valid until its after
 * callback has run on loop. 0 or a negative errno. */
int fcfs_cpu_pin_loop(uv_loop_t *loop, uv_work_t *work, int cpu);

#endif
