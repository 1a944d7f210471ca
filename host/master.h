/* master.h -- the master process of a node (workers > 0). */
#ifndef FCFS_MASTER_H
#define FCFS_MASTER_H

#include "conf.h"

/* Own listen_fd and admin_fd (-1: none), create shm, start conf->workers
 * workers and supervise them until stopped by a signal. Returns the process
 * exit code. */
int fcfs_master_main(const fcfs_conf_t *conf, int listen_fd, int admin_fd);

#endif
