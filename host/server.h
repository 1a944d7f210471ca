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

/* Streamed answers (SSE) of a request the server owns: the head goes out at
 * once with Transfer-Encoding: chunked, then each fcfs_request_stream_write()
 * is one chunk. The stream ends when the request is answered (its respond or
 * fail op: the handler returned, raised, or the deadline passed): with the
 * last chunk, or, for a 500 or a stream whose write failed, by closing the
 * connection (the client sees a truncated body). An HTTP/1.0 client gets the
 * bytes as they are, the close ending the body. The request deadline becomes
 * now + lifetime seconds. A client that goes away cancels a streaming handler
 * whatever client_abort says. headers: "Name: value\r\n" lines. 0, or -1
 * (the status cannot carry a body, the client is gone, or the request is
 * answered or streaming already). */
int fcfs_request_stream_open(fcfs_request_t *r, int status, const char *headers, size_t hlen,
                             double lifetime);
/* One chunk (len > 0); 0 or a libuv error (the stream is then broken). */
int fcfs_request_stream_write(fcfs_request_t *r, const char *data, size_t len);
int fcfs_request_streaming(const fcfs_request_t *r);
/* Bytes accepted but not yet taken by the kernel (backpressure). */
size_t fcfs_request_stream_queued(const fcfs_request_t *r);
/* drained(arg) after each write of the connection completes, until set to
 * NULL (a writer waiting for a slow client); cleared when the stream ends. */
void fcfs_request_stream_on_drain(fcfs_request_t *r, void (*drained)(void *arg), void *arg);

#endif
