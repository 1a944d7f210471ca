/* lapi_stream.c -- host.stream: a request handler answering in pieces
 * (server-sent events), the server side being server.c's streamed answers.
 *
 *   host.stream.open(status [, content_type])  -> true | nil, "closed"
 *       sends the head now: the content type (default text/event-stream),
 *       Cache-Control: no-cache, X-Accel-Buffering: no (nginx passes the
 *       events on at once), Transfer-Encoding: chunked. Once per request.
 *   host.stream.send(data [, timeout])         -> true | nil, "closed" | "timeout"
 *       one chunk. Returns at once while the client keeps up; when more
 *       than 64 KiB wait unsent it yields until the client took them down to
 *       16 KiB, at most timeout seconds (default stream_send_timeout,
 *       clamped to the stream's time left): OpenResty's ngx.print followed
 *       by ngx.flush(true), with backpressure and a deadline on every write.
 *
 * The answer ends when the handler returns (last chunk; the connection may
 * serve the next request) or raises (connection closed: the client sees the
 * body cut). Its deadline is stream_timeout from the open instead of
 * request_timeout. A client that goes away cancels the handler (whatever
 * client_abort says), so a waiting send or sleep never returns. Handlers
 * should loop `while not host.exiting()` so that a reload or stop ends the
 * stream cleanly.
 *
 * Ownership: a waiting send's op (its timeout timer) is freed in the timer's
 * close callback; the request is the server's and only borrowed.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lapi.h"
#include "server.h"
#include "vm.h"

#define HIGH_WATER (64 << 10)
#define LOW_WATER (16 << 10)

typedef struct {
  uv_timer_t h; /* first: the handle pointer is the op pointer */
  fcfs_task_t *task;
  fcfs_request_t *r;
} send_op_t;

static void op_free(uv_handle_t *h) {
  free(h);
}

static void op_stop(send_op_t *op) {
  fcfs_request_stream_on_drain(op->r, NULL, NULL);
  uv_timer_stop(&op->h);
  uv_close((uv_handle_t *)&op->h, op_free);
}

static void send_finish(send_op_t *op, const char *err) {
  fcfs_task_t *t = op->task;
  op_stop(op);
  lua_State *co = fcfs_task_thread(t);
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
  } else {
    lua_pushboolean(co, 1);
    lua_pushnil(co);
  }
  fcfs_task_resume(t, 2);
}

static void send_drained(void *arg) {
  send_op_t *op = arg;
  if (fcfs_request_stream_queued(op->r) <= LOW_WATER) send_finish(op, NULL);
}

static void send_timeout(uv_timer_t *h) {
  send_finish((send_op_t *)h, "timeout");
}

static void send_cancel(void *arg) {
  op_stop(arg);
}

/* The request of the running task, or a Lua error naming what. */
static fcfs_request_t *stream_request(lua_State *L, const char *what, fcfs_task_t **tp) {
  fcfs_task_t *t = fcfs_task_require(L, what);
  fcfs_request_t *r = fcfs_task_request(t);
  if (r == NULL) luaL_error(L, "%s: only a request handler can stream", what);
  *tp = t;
  return r;
}

static int closed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 2;
}

static int stream_open(lua_State *L) {
  fcfs_task_t *t;
  fcfs_request_t *r = stream_request(L, "host.stream.open", &t);
  int status = (int)luaL_checkinteger(L, 1);
  size_t tl;
  const char *type = luaL_optlstring(L, 2, "text/event-stream", &tl);
  if (status < 200 || status > 999 || status == 204 || status == 304)
    return luaL_argerror(L, 1, "a status with a body (200..999, not 204 or 304)");
  for (size_t i = 0; i < tl; i++)
    if ((unsigned char)type[i] < 0x20 || type[i] == 0x7f)
      return luaL_argerror(L, 2, "control character in the content type");
  if (tl == 0 || tl > 200) return luaL_argerror(L, 2, "1 to 200 bytes");
  if (fcfs_request_streaming(r))
    return luaL_error(L, "host.stream.open: the stream is open already");
  char head[320];
  int n =
      snprintf(head, sizeof(head),
               "Content-Type: %s\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n", type);
  const fcfs_conf_t *conf = fcfs_vm_env(fcfs_task_vm(t))->conf;
  if (fcfs_request_stream_open(r, status, head, (size_t)n, conf->stream_timeout) != 0)
    return closed(L);
  fcfs_task_set_deadline(t, r->deadline_ms); /* its I/O is clamped to the stream's lifetime */
  lua_pushboolean(L, 1);
  return 1;
}

static int stream_send(lua_State *L) {
  fcfs_task_t *t;
  fcfs_request_t *r = stream_request(L, "host.stream.send", &t);
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  const fcfs_conf_t *conf = fcfs_vm_env(fcfs_task_vm(t))->conf;
  double timeout = luaL_optnumber(L, 2, conf->stream_send_timeout);
  if (!(timeout >= 0) || timeout > 1e6) return luaL_argerror(L, 2, "seconds, 0 to 1e6");
  if (!fcfs_request_streaming(r))
    return luaL_error(L, "host.stream.send: call host.stream.open first");
  if (fcfs_request_stream_write(r, data, len) != 0) return closed(L);
  if (fcfs_request_stream_queued(r) <= HIGH_WATER) {
    lua_pushboolean(L, 1);
    return 1;
  }
  double left = fcfs_task_time_left(t);
  if (timeout > left) timeout = left;
  send_op_t *op = malloc(sizeof(*op));
  if (op == NULL) return luaL_error(L, "host.stream.send: out of memory");
  uv_timer_init(fcfs_task_loop(t), &op->h);
  op->task = t;
  op->r = r;
  fcfs_request_stream_on_drain(r, send_drained, op);
  uv_timer_start(&op->h, send_timeout, (uint64_t)(timeout * 1000 + 0.5), 0);
  return fcfs_task_wait(L, t, op, send_cancel);
}

void fcfs_lapi_stream_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"open", stream_open}, {"send", stream_send}, {NULL, NULL}};
  lua_createtable(L, 0, 2);
  luaL_register(L, NULL, fns);
}
