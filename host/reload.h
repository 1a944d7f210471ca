/* reload.h -- what a reload leaves on disk, shared by master, workers and
 * `fcfs -s reload`.
 *
 * Snapshots: the master copies lua_dir to run_dir/lua.<generation> when a
 * reload starts; workers load that copy, never lua_dir itself, so every
 * worker of a generation runs the same files and a worker respawned later
 * starts from the last accepted generation's copy, whatever lua_dir holds
 * by then. The copies of refused generations are removed at once; accepted
 * ones when they are two generations old, all of them at start and exit.
 * A node starts the outcome file afresh at generation 1.
 *
 * Outcome: run_dir/reload.status holds the latest reload's generation and
 * state ("7 pending", "7 ok", or "7 failed" and the error on the next
 * lines), replaced atomically; `fcfs -s reload` waits for a newer one.
 */
#ifndef FCFS_RELOAD_H
#define FCFS_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

enum { FCFS_RELOAD_PENDING = 0, FCFS_RELOAD_OK = 1, FCFS_RELOAD_FAILED = 2 };

/* The directory of generation gen's snapshot. */
void fcfs_reload_dir(const fcfs_conf_t *c, uint64_t gen, char *buf, size_t len);

/* Copy lua_dir (following symlinks) to generation gen's directory. 0, or -1
 * with err (the partial copy is removed). */
int fcfs_reload_snapshot(const fcfs_conf_t *c, uint64_t gen, char *err, size_t errlen);
void fcfs_reload_forget(const fcfs_conf_t *c, uint64_t gen);
/* Remove every snapshot in run_dir (at the node's start and exit). */
void fcfs_reload_forget_all(const fcfs_conf_t *c);

/* Write or read run_dir/reload.status. Read returns -1 when there is none
 * (then *gen = 0). */
void fcfs_reload_status_write(const fcfs_conf_t *c, uint64_t gen, int state, const char *err);
int fcfs_reload_status_read(const fcfs_conf_t *c, uint64_t *gen, int *state, char *err,
                            size_t errlen);

#endif
