/* static.h -- the files of static_dir, served by the host (the storefront).
 *
 * Precedence: the app's routes win. A GET or HEAD request that no route of
 * the app matched (the app answered its "404") is looked up in static_dir
 * before that 404 goes out; "/" and any path ending in "/" mean its
 * index.html. */
#ifndef FCFS_STATIC_H
#define FCFS_STATIC_H

#include <stddef.h>

#include "conf.h"
#include "request.h"

typedef struct fcfs_static_s fcfs_static_t;

/* static_dir (resolved once to an absolute path, which must be a directory),
 * static_max_age and static_cache_size of conf. NULL and a message in err. */
fcfs_static_t *fcfs_static_new(const fcfs_conf_t *conf, char *err, size_t errlen);
void fcfs_static_free(fcfs_static_t *st); /* NULL is fine */

/* Answer r from the directory: 1 when r was answered (the file, 304 Not
 * Modified, or 400 for a path that is malformed or tries to leave the root:
 * "..", encoded slashes, NUL), 0 when the directory holds no such regular
 * file (hidden names and symlinks out of the root count as absent) or the
 * method is not GET/HEAD: the caller answers its 404. */
int fcfs_static_serve(fcfs_static_t *st, fcfs_request_t *r);

#endif
