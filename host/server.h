/* server.h -- the HTTP/1.1 server of a worker: accepting from the node's
 * one listener, connections, timeouts and limits, writing responses. */
#ifndef FCFS_SERVER_H
#define FCFS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "request.h"
#include "shm.h"

typedef struct fcfs_server_s fcfs_server_t;

/* What a server gets from its worker: copied by fcfs_server_new. */
typedef struct {
  uv_loop_t *loop;
  const fcfs_conf_t *conf;
  fcfs_worker_slot_t *slot; /* gauges, counters */
  int worker_id;            /* in generated request ids */
  /* A whole request arrived: hand it to the app (fcfs_request_start). */
  void (*request)(void *arg, fcfs_request_t *r);
  /* A request or a connection ended (a stopping worker may finish now). */
  void (*idle)(void *arg);
  void *arg;
} fcfs_server_env_t;

/* A listening socket for "host:port" ("[::1]:port", "*:port") or
 * "unix:PATH" (mode 0600; a stale socket file is replaced), non-blocking,
 * close-on-exec. Returns the fd, or -1 with a message in err. */
int fcfs_listen_socket(const char *addr, int backlog, char *err, size_t errlen);

/* Serve on listen_fd and, unless it is -1, on admin_fd (conf->admin_listen):
 * the server takes both over (uv_tcp_open/uv_pipe_open) and closes them. */
fcfs_server_t *fcfs_server_new(const fcfs_server_env_t *env, int listen_fd, int admin_fd, char *err,
                               size_t errlen);
void fcfs_server_stop_accepting(fcfs_server_t *s);
/* Close connections that have no request in flight (QUIT); further ones are
 * closed as soon as their response is written. */
void fcfs_server_close_idle(fcfs_server_t *s);
int fcfs_server_busy(const fcfs_server_t *s);  /* requests in flight */
int fcfs_server_conns(const fcfs_server_t *s); /* connections open */
void fcfs_server_close(fcfs_server_t *s);      /* all connections and the listener */
void fcfs_server_free(fcfs_server_t *s);       /* after the loop ran the close callbacks */

#endif
