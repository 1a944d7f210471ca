/* lapi_tcp.c -- host.tcp(): the Lua face of tcp.c, in the style of
 * OpenResty's cosockets.
 *
 *   local s = host.tcp()
 *   s:settimeouts(connect, send, read)  seconds; nil keeps one; s:settimeout(t) sets all three
 *   s:connect(host, port)               -> true | nil, err
 *   s:send(data)                        -> bytes | nil, err   (a string or an array of strings)
 *   s:receive("*l" | "*a" | n)          -> data | nil, err, partial   (default "*l")
 *   s:receiveuntil(delim [, {inclusive = true}]) -> reader; reader() -> data | nil, err, partial
 *   s:close()                           -> true | nil, "closed"
 *
 * "*l" returns a line without its LF and without any CR. Errors: "timeout",
 * "closed", "too large" (more than tcp_buffer_max bytes), "connection
 * refused", "resolve: ..."; every error but a receive timeout closes the
 * connection. Timeouts default to the tcp_*_timeout config keys and are
 * clamped to the time the request has left.
 *
 * Ownership: the userdata holds the sock_t; the socket (fcfs_tcp_t) belongs
 * to the task that created it. It is freed when that task ends (the task's
 * on_end slot) or when the userdata is collected first, whichever comes
 * first; the other one then finds sock->s == NULL. A socket used from any
 * other task raises an error. A task cancelled while an operation is pending
 * disconnects the socket (cancel), then frees it (on_end).
 */
#include <lauxlib.h>
#include <string.h>

#include "tcp.h"
#include "vm.h"
#include "worker.h"

#define SOCK_MT "fcfs.tcp"

enum { T_CONNECT, T_SEND, T_READ };
enum { R_CONNECT, R_SEND, R_LINE, R_DATA }; /* how results are pushed */

typedef struct {
  fcfs_tcp_t *s;     /* NULL once freed */
  fcfs_task_t *t;    /* the owner; NULL once it ended */
  double timeout[3]; /* T_*, seconds */
  int ret;           /* R_* of the pending operation */
} sock_t;

static void sock_release(void *res) {
  sock_t *k = res;
  if (k->s) fcfs_tcp_free(k->s);
  k->s = NULL;
  k->t = NULL;
}

static int l_new(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "host.tcp");
  const fcfs_conf_t *conf = fcfs_vm_worker(fcfs_task_vm(t))->conf;
  sock_t *k = lua_newuserdata(L, sizeof(*k));
  memset(k, 0, sizeof(*k));
  k->timeout[T_CONNECT] = conf->tcp_connect_timeout;
  k->timeout[T_SEND] = conf->tcp_send_timeout;
  k->timeout[T_READ] = conf->tcp_read_timeout;
  k->s = fcfs_tcp_new(fcfs_task_loop(t), (size_t)conf->tcp_buffer_max);
  if (k->s == NULL) return luaL_error(L, "host.tcp: out of memory");
  if (fcfs_task_on_end(t, sock_release, k) < 0) {
    fcfs_tcp_free(k->s);
    k->s = NULL;
    return luaL_error(L, "host.tcp: out of memory");
  }
  k->t = t;
  luaL_getmetatable(L, SOCK_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* The socket, if the running task owns it (then k->s is set); raises otherwise. */
static sock_t *check_sock(lua_State *L, const char *what, fcfs_task_t **t) {
  sock_t *k = luaL_checkudata(L, 1, SOCK_MT);
  *t = fcfs_task_require(L, what);
  if (k->t != *t)
    luaL_error(L,
               "%s: the socket belongs to another request or timer (a socket lives as long as "
               "the task that created it)",
               what);
  return k;
}

static uint64_t timeout_ms(sock_t *k, int which) {
  double to = k->timeout[which];
  double left = fcfs_task_time_left(k->t);
  if (left < to) to = left;
  return (uint64_t)(to * 1000 + 0.5);
}

/* "*l" drops every CR, as cosockets do. */
static void push_line(lua_State *L, const char *p, size_t len) {
  if (memchr(p, '\r', len) == NULL) {
    lua_pushlstring(L, p, len);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++)
    if (p[i] != '\r') luaL_addchar(&b, p[i]);
  luaL_pushresult(&b);
}

static void push_data(lua_State *L, int ret, const fcfs_tcp_result_t *res) {
  const char *p = res->data ? res->data : "";
  if (ret == R_LINE)
    push_line(L, p, res->len);
  else
    lua_pushlstring(L, p, res->len);
}

static int push_result(lua_State *L, int ret, const fcfs_tcp_result_t *res) {
  if (res->err) {
    lua_pushnil(L);
    lua_pushstring(L, res->err);
    if (res->data == NULL) return 2; /* no partial data: connect, send, a closed socket */
    push_data(L, ret, res);
    return 3;
  }
  if (ret == R_CONNECT)
    lua_pushboolean(L, 1);
  else if (ret == R_SEND)
    lua_pushinteger(L, (lua_Integer)res->sent);
  else
    push_data(L, ret, res);
  return 1;
}

static void on_done(void *arg, const fcfs_tcp_result_t *res) {
  sock_t *k = arg;
  fcfs_task_t *t = k->t;
  fcfs_task_resume(t, push_result(fcfs_task_thread(t), k->ret, res));
}

/* The task ends with the operation pending: drop it (on_end frees the socket next). */
static void on_cancel(void *op) {
  fcfs_tcp_disconnect(((sock_t *)op)->s);
}

/* Yield until the operation rc started completes, or return its result. */
static int wait_or_return(lua_State *L, fcfs_task_t *t, sock_t *k, int ret, int rc,
                          const fcfs_tcp_result_t *res) {
  k->ret = ret;
  if (rc == FCFS_TCP_DONE) return push_result(L, ret, res);
  return fcfs_task_wait(L, t, k, on_cancel);
}

static int closed(lua_State *L) {
  lua_pushnil(L);
  lua_pushstring(L, fcfs_tcp_eclosed);
  return 2;
}

static int l_connect(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:connect", &t);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port > 0 && port < 65536, 3, "port out of range");
  fcfs_tcp_result_t res;
  int rc = fcfs_tcp_connect(k->s, host, (int)port, timeout_ms(k, T_CONNECT), on_done, k, &res);
  return wait_or_return(L, t, k, R_CONNECT, rc, &res);
}

static int l_send(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:send", &t);
  uv_buf_t buf;
  size_t len;
  int type = lua_type(L, 2);
  if (type == LUA_TTABLE) { /* one copy in C instead of a concatenation in Lua */
    int n = (int)lua_objlen(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, 2, i);
      if (!lua_isstring(L, -1))
        luaL_error(L, "s:send: element #%d is a %s (strings and numbers only)", i,
                   luaL_typename(L, -1));
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    buf.base = (char *)lua_tolstring(L, -1, &len);
  } else if (type == LUA_TSTRING || type == LUA_TNUMBER) {
    buf.base = (char *)lua_tolstring(L, 2, &len);
  } else {
    return luaL_argerror(L, 2, "string or array of strings expected");
  }
  buf.len = len;
  fcfs_tcp_result_t res;
  int rc = fcfs_tcp_send(k->s, &buf, 1, timeout_ms(k, T_SEND), on_done, k, &res);
  return wait_or_return(L, t, k, R_SEND, rc, &res);
}

static int l_receive(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:receive", &t);
  int mode = FCFS_TCP_LINE;
  size_t n = 0;
  if (lua_isnumber(L, 2)) { /* 10 or "10" */
    lua_Number v = lua_tonumber(L, 2);
    luaL_argcheck(L, v >= 0 && v == (lua_Number)(size_t)v, 2, "byte count expected");
    mode = FCFS_TCP_COUNT;
    n = (size_t)v;
  } else if (!lua_isnoneornil(L, 2)) {
    const char *p = luaL_checkstring(L, 2);
    if (*p == '*') p++;
    if (strcmp(p, "l") == 0)
      mode = FCFS_TCP_LINE;
    else if (strcmp(p, "a") == 0)
      mode = FCFS_TCP_ALL;
    else
      return luaL_argerror(L, 2, "\"*l\", \"*a\" or a byte count expected");
  }
  fcfs_tcp_result_t res;
  int rc = fcfs_tcp_receive(k->s, mode, n, timeout_ms(k, T_READ), on_done, k, &res);
  return wait_or_return(L, t, k, mode == FCFS_TCP_LINE ? R_LINE : R_DATA, rc, &res);
}

/* reader(): upvalues are the socket, the delimiter and `inclusive`. */
static int l_reader(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) return luaL_argerror(L, 1, "no size argument expected");
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "reader", &t);
  size_t plen;
  const char *pat = lua_tolstring(L, lua_upvalueindex(2), &plen); /* the closure anchors it */
  fcfs_tcp_result_t res;
  int rc = fcfs_tcp_receive_until(k->s, pat, plen, lua_toboolean(L, lua_upvalueindex(3)),
                                  timeout_ms(k, T_READ), on_done, k, &res);
  return wait_or_return(L, t, k, R_DATA, rc, &res);
}

static int l_receiveuntil(lua_State *L) {
  fcfs_task_t *t;
  check_sock(L, "s:receiveuntil", &t);
  size_t plen;
  luaL_checklstring(L, 2, &plen);
  luaL_argcheck(L, plen > 0, 2, "empty delimiter");
  int inclusive = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "inclusive");
    inclusive = lua_toboolean(L, -1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushboolean(L, inclusive);
  lua_pushcclosure(L, l_reader, 3);
  return 1;
}

static double check_timeout(lua_State *L, int idx, double keep) {
  if (lua_isnoneornil(L, idx)) return keep;
  double v = luaL_checknumber(L, idx);
  luaL_argcheck(L, v >= 0, idx, "seconds >= 0 expected");
  return v;
}

static int l_settimeouts(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:settimeouts", &t);
  for (int i = 0; i < 3; i++)
    k->timeout[i] = check_timeout(L, i + 2, k->timeout[i]);
  return 0;
}

static int l_settimeout(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:settimeout", &t);
  double v = check_timeout(L, 2, k->timeout[T_READ]);
  for (int i = 0; i < 3; i++)
    k->timeout[i] = v;
  return 0;
}

static int l_close(lua_State *L) {
  fcfs_task_t *t;
  sock_t *k = check_sock(L, "s:close", &t);
  if (!fcfs_tcp_connected(k->s)) return closed(L);
  fcfs_tcp_disconnect(k->s);
  lua_pushboolean(L, 1);
  return 1;
}

/* Collected before its task ended: free the socket and its on_end slot. */
static int l_gc(lua_State *L) {
  sock_t *k = luaL_checkudata(L, 1, SOCK_MT);
  if (k->s) {
    fcfs_task_off_end(k->t, sock_release, k);
    sock_release(k);
  }
  return 0;
}

void fcfs_lapi_tcp_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"connect", l_connect},
                                     {"send", l_send},
                                     {"receive", l_receive},
                                     {"receiveuntil", l_receiveuntil},
                                     {"settimeouts", l_settimeouts},
                                     {"settimeout", l_settimeout},
                                     {"close", l_close},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SOCK_MT)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "host.tcp socket");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new);
}
