/* migrate.h -- `fcfs migrate [status]`: numbered SQL files applied in order
 * and recorded in schema_migrations (migrate.c). */
#ifndef FCFS_MIGRATE_H
#define FCFS_MIGRATE_H

struct fcfs_conf_s;

/* argv holds the words after "migrate": none applies every pending file,
 * "status" lists applied and pending ones. Returns the process exit code:
 * 0 success, 1 failure (message on stderr naming the file), 2 usage. */
int fcfs_migrate_main(const struct fcfs_conf_s *c, int argc, char **argv);

#endif
