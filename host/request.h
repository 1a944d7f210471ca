/* request.h -- one HTTP request between the server and the Lua app: the
 * request table a handler receives, the handler's answer read back
 * (status, body, headers checked), the request's task.
 *
 * Layers, top down: the server (server.c) owns connections and the
 * requests in them; request.c turns a request into a task of the serving
 * VM and its results into an answer; vm.c runs tasks and knows nothing of
 * HTTP. Nothing calls back up except through function tables: the VM tells
 * request.c how a task ended through fcfs_task_hooks_t (vm.h), request.c
 * answers through the fcfs_request_ops_t the server put in the request. */
#ifndef FCFS_REQUEST_H
#define FCFS_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "task.h"

typedef struct fcfs_request_s fcfs_request_t;
typedef struct fcfs_conn_s fcfs_conn_t; /* the server's; opaque here */

/* How a request is answered, set by the server that owns it. respond:
 * headers are "Name: value\r\n" lines (may be NULL); it copies what it
 * needs, the caller's buffers may go away on return. fail: the host's JSON
 * error body for status ({"error":{code, message (Korean, or English when
 * Accept-Language prefers it), details:{reason}},"request_id"}; reason, in
 * English for developers, may be NULL). Either may cancel the request's
 * task (fcfs_request_cancel) when it still runs. */
typedef struct {
  void (*respond)(fcfs_request_t *r, int status, const char *headers, size_t hlen, const char *body,
                  size_t blen);
  void (*fail)(fcfs_request_t *r, int status, const char *reason);
} fcfs_request_ops_t;

/* A handler's answer as the request entry function hands it over
 * (fcfs_request_answer): its strings live on the task's coroutine. */
typedef struct {
  int set, status;
  const char *body, *route, *block; /* NULL: none */
  size_t body_len, route_len, block_len;
} fcfs_answer_t;

/* The request a connection is serving now (one at a time per connection:
 * pipelined requests wait in the read buffer, so answers stay in order). It
 * lives inside its connection; the VM sees it between fcfs_request_start()
 * and its answer. */
struct fcfs_request_s {
  const fcfs_request_ops_t *ops;
  fcfs_conn_t *conn;
  http_req_t *http;
  fcfs_task_t *task;
  uint64_t start_ns;
  uint64_t deadline_ms; /* uv_now() value at which the handler gets 504 */
  const char *route;    /* label for metrics and the access log (static or VM-owned) */
  char route_buf[64];
  char id[40];
  size_t id_len;
  char remote[48]; /* the client's address (from real_ip_header behind a trusted proxy) */
  int admin;       /* came in on the admin listener */
  fcfs_answer_t answer;
};

/* Start handling r in a new task of vm: app:handle(req) with the request
 * table. r is answered exactly once through r->ops (from the handler's
 * result, or a 500) unless fcfs_request_cancel(r) is called first. */
void fcfs_request_start(fcfs_vm_t *vm, fcfs_request_t *r);

/* End r's task if it still runs (the answer came from the host: 504, 503,
 * client gone); its pending I/O is cancelled. */
void fcfs_request_cancel(fcfs_request_t *r);

/* The request a task answers, NULL for timers, init and `fcfs run`. */
fcfs_request_t *fcfs_task_request(fcfs_task_t *t);

/* __index of request tables, host.request_field(req, name) in Lua: the
 * fields made on first use (headers, query, request_id, remote_addr, admin)
 * from the request of the running task, kept in req; nil for other names. */
int fcfs_request_field(lua_State *L);

/* "GET /path?query HTTP/1.1" for logs, into buf. */
const char *fcfs_request_line(const fcfs_request_t *r, char *buf, size_t cap);

static inline void fcfs_request_respond(fcfs_request_t *r, int status, const char *headers,
                                        size_t hlen, const char *body, size_t blen) {
  r->ops->respond(r, status, headers, hlen, body, blen);
}

static inline void fcfs_request_fail(fcfs_request_t *r, int status, const char *reason) {
  r->ops->fail(r, status, reason);
}

/* The value of the header called name (lowercase: a key of req.headers) of
 * the request whose task runs on vm, for LuaJIT's FFI (host.header): 1 and
 * the value (into the request's buffer: valid while its task runs), 0 when
 * it has no such header, 2 when it has several (req.headers joins them),
 * -1 when no request runs on vm or name cannot be a key of req.headers. */
int fcfs_request_header(void *vm, const char *name, size_t len, const char **value,
                        size_t *value_len);
/* For LuaJIT's FFI, the request entry function's last call: the answer
 * of the request whose task runs on vm (status as lua_tointeger reads a
 * number; body, route and block may be NULL; block, a frozen header
 * table's, stands for the headers), read by the task's end instead of its
 * results. Nothing when no request runs on vm. */
void fcfs_request_answer(void *vm, double status, const char *body, size_t body_len,
                         const char *route, size_t route_len, const char *block, size_t block_len);
/* Push host.header(req, name), which answers req.headers[name] without
 * building req.headers when it can (fcfs_request_header), then
 * host.header_direct(req): true when it can (a table the host made whose
 * headers were neither built nor set: fcfs_request_header reads them). */
struct lua_State;
void fcfs_request_push_header_fns(struct lua_State *L);

#endif
