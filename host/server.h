/* server.h -- the HTTP/1.1 server of a worker: accepting from the node's
 * one listener, connections, timeouts and limits, writing responses. */
#ifndef FCFS_SERVER_H
#define FCFS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "task.h"
#include "worker.h"

typedef struct fcfs_conn_s fcfs_conn_t;
typedef struct fcfs_request_s fcfs_request_t;

/* The request a connection is serving now (one at a time per connection:
 * pipelined requests wait in the read buffer, so answers stay in order). It
 * lives inside its connection; the VM sees it between fcfs_vm_request() and
 * its answer. */
struct fcfs_request_s {
  fcfs_conn_t *conn;
  http_req_t *http;
  fcfs_task_t *task;
  uint64_t start_ns;
  uint64_t deadline_ms; /* uv_now() value at which the handler gets 504 */
  const char *route;    /* label for metrics and the access log (static or VM-owned) */
  char route_buf[64];
  char id[40];
  char remote[48]; /* the client's address (from real_ip_header behind a trusted proxy) */
  int admin;       /* came in on the admin listener */
  /* a streamed answer (fcfs_request_stream_open), chunk by chunk */
  int streaming;
  int stream_raw; /* HTTP/1.0 client: no chunks, the body ends at the close */
  int stream_status;
  size_t stream_bytes;
  void (*drained)(void *arg); /* set by a writer waiting for the client: a write completed */
  void *drained_arg;
};

/* A listening socket for "host:port" ("[::1]:port", "*:port") or
 * "unix:PATH" (mode 0600; a stale socket file is replaced), non-blocking,
 * close-on-exec. Returns the fd, or -1 with a message in err. */
int fcfs_listen_socket(const char *addr, int backlog, char *err, size_t errlen);

/* Serve on listen_fd and, unless it is -1, on admin_fd (conf->admin_listen):
 * the server takes both over (uv_tcp_open/uv_pipe_open) and closes them. */
fcfs_server_t *fcfs_server_new(fcfs_worker_t *w, int listen_fd, int admin_fd, char *err,
                               size_t errlen);
void fcfs_server_stop_accepting(fcfs_server_t *s);
/* Close connections that have no request in flight (QUIT); further ones are
 * closed as soon as their response is written. */
void fcfs_server_close_idle(fcfs_server_t *s);
int fcfs_server_busy(const fcfs_server_t *s);  /* requests in flight */
int fcfs_server_conns(const fcfs_server_t *s); /* connections open */
void fcfs_server_close(fcfs_server_t *s);      /* all connections and the listener */
void fcfs_server_free(fcfs_server_t *s);       /* after the loop ran the close callbacks */

/* "GET /path?query HTTP/1.1" for logs, into buf. */
const char *fcfs_request_line(const fcfs_request_t *r, char *buf, size_t cap);

/* Answer r. headers are "Name: value\r\n" lines (may be NULL). Copies what it
 * needs: the caller's buffers may go away on return. */
void fcfs_request_respond(fcfs_request_t *r, int status, const char *headers, size_t hlen,
                          const char *body, size_t blen);
/* Streamed answers (SSE): the head goes out at once with Transfer-Encoding:
 * chunked, then each fcfs_request_stream_write() is one chunk. The stream
 * ends when the request is answered (fcfs_request_respond/fail, i.e. when the
 * handler returns, raises, or its deadline passes): with the last chunk, or,
 * for a 500 or a stream whose write failed, by closing the connection (the
 * client sees a truncated body). An HTTP/1.0 client gets the bytes as they
 * are, the close ending the body. The request deadline becomes now + lifetime
 * seconds. A client that goes away cancels a streaming handler whatever
 * client_abort says. headers as for fcfs_request_respond. 0, or -1 (the
 * status cannot carry a body, or the request is answered or streaming). */
int fcfs_request_stream_open(fcfs_request_t *r, int status, const char *headers, size_t hlen,
                             double lifetime);
/* One chunk (len > 0); 0 or a libuv error (the connection is then closing). */
int fcfs_request_stream_write(fcfs_request_t *r, const char *data, size_t len);
/* Bytes accepted but not yet taken by the kernel (backpressure). */
size_t fcfs_request_stream_queued(const fcfs_request_t *r);

/* Answer r with the host's JSON error body for status: {"error":{code,
 * message (Korean, or English when Accept-Language prefers it), details:
 * {reason}},"request_id"}; reason (English, for developers) may be NULL. */
void fcfs_request_fail(fcfs_request_t *r, int status, const char *reason);

#endif
