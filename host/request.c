/* request.c -- request marshalling between the server and the Lua app.
 *
 * fcfs_request_start() runs, as a task of the VM, a small Lua entry function
 * that builds the request table (method, path, body; query, headers,
 * request_id, remote_addr and admin found on first use by the metatable's
 * __index, fcfs_request_field) and calls app:serve(req) (or app:handle(req),
 * vm.h). The task's end comes back through request_hooks: the
 * handler's results (status, body, headers, route) -- or app:handle_error's
 * after a raise, given a request table built anew -- are read and checked
 * here and handed to the server through r->ops; a Lua error otherwise is a
 * 500, a VM drained under a running handler a 503.
 *
 * Ownership: a request belongs to its connection (server.c); its task
 * belongs to the VM. They point at each other from fcfs_request_start()
 * until the task ends or is cancelled, and both links are cut before the
 * request is answered, so that answering cannot cancel the task that is
 * answering. */
#include "request.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "vm.h"

/* Registry key of the request tables' metatable (one per VM): its address is unique. */
static char req_mt_key;

/* ---- response headers ------------------------------------------------------ */

/* Headers the host writes itself: a handler setting one is an error. */
static const struct {
  const char *name;
  size_t len;
} host_owned[] = {{"Content-Length", 14},
                  {"Transfer-Encoding", 17},
                  {"Connection", 10},
                  {"Date", 4},
                  {"Server", 6}};

/* Byte classes, looked up once per byte: a name byte must be a token
 * character (RFC 9110 5.6.2), a value byte anything but a control
 * character other than tab. */
enum { TCHAR = 1, VALUE_BAD = 2 };
#define T TCHAR
#define B VALUE_BAD
/* clang-format off */
static const unsigned char byte_class[256] = {
    /* 0x00 */ B, B, B, B, B, B, B, B, B, 0, B, B, B, B, B, B,
    /* 0x10 */ B, B, B, B, B, B, B, B, B, B, B, B, B, B, B, B,
    /* 0x20  !"#$%&'()*+,-./ */ 0, T, 0, T, T, T, T, T, 0, 0, T, T, 0, T, T, 0,
    /* 0x30 0-9:;<=>? */ T, T, T, T, T, T, T, T, T, T, 0, 0, 0, 0, 0, 0,
    /* 0x40 @A-O */ 0, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
    /* 0x50 P-Z[\]^_ */ T, T, T, T, T, T, T, T, T, T, T, 0, 0, 0, T, T,
    /* 0x60 `a-o */ T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
    /* 0x70 p-z{|}~DEL */ T, T, T, T, T, T, T, T, T, T, T, 0, T, 0, T, B,
};
/* clang-format on */
#undef T
#undef B

typedef struct {
  char *buf;
  size_t cap, len;
  char *err;
  size_t errlen;
} headers_t;

static int header_fail(headers_t *h, const char *what, const char *name, size_t nl) {
  snprintf(h->err, h->errlen, "response header \"%.*s\": %s", (int)(nl > 64 ? 64 : nl), name, what);
  return -1;
}

/* One "Name: value\r\n" line; the value is the Lua value at the top of L. */
static int header_line(headers_t *h, lua_State *L, const char *k, size_t kl) {
  int t = lua_type(L, -1);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    return header_fail(h, "values must be strings or numbers (or a list of them)", k, kl);
  size_t vl;
  const char *v = lua_tolstring(L, -1, &vl);
  for (size_t i = 0; i < vl; i++)
    if (byte_class[(unsigned char)v[i]] & VALUE_BAD)
      return header_fail(h, "control character in the value", k, kl);
  if (h->len + kl + vl + 4 > h->cap) return header_fail(h, "header block too long", k, kl);
  char *p = h->buf + h->len;
  memcpy(p, k, kl);
  p[kl] = ':';
  p[kl + 1] = ' ';
  memcpy(p + kl + 2, v, vl);
  p[kl + 2 + vl] = '\r';
  p[kl + 3 + vl] = '\n';
  h->len += kl + vl + 4;
  return 0;
}

static int build_headers(lua_State *L, int idx, headers_t *h);

/* A frozen header table (lib/web.lua's web.headers) is an empty table whose
 * metatable, out of Lua's reach (__metatable), holds its content as
 * __fcfs_headers: its block is made and checked at its first answer and
 * kept in that metatable under block_key, then copied; and in the VM's
 * blocks table (push_blocks), where the request entry function finds it
 * for the next answers. 1 when the table at idx is one (its block in h), 0
 * when it is not, -1 with err. */
static char block_key;

/* Registry key of the blocks table of a VM: frozen header table -> its
 * block, weak keys. */
static char blocks_key;

static void push_blocks(lua_State *L) {
  lua_pushlightuserdata(L, &blocks_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushlightuserdata(L, &blocks_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static int frozen_headers(lua_State *L, int idx, headers_t *h) {
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pushlightuserdata(L, &block_key);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t bl;
    const char *b = lua_tolstring(L, -1, &bl);
    memcpy(h->buf, b, bl); /* made by build_headers below: bl <= cap */
    h->len = bl;
    lua_pop(L, 2);
  } else {
    lua_pop(L, 1);
    lua_pushliteral(L, "__fcfs_headers");
    lua_rawget(L, -2); /* raw: any table may come here, and its metatable run nothing */
    if (!lua_istable(L, -1)) {
      lua_pop(L, 2);
      return 0;
    }
    if (build_headers(L, lua_gettop(L), h) != 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, &block_key);
    lua_pushlstring(L, h->buf, h->len);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    push_blocks(L);
    lua_pushvalue(L, idx);
    lua_pushlstring(L, h->buf, h->len);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  if (lua_next(L, idx)) { /* rawset past its __newindex: what Lua sees is not the block */
    lua_pop(L, 2);
    return header_fail(h, "frozen header table written to", "?", 1);
  }
  return 1;
}

/* The header table at idx (nil: none) as "Name: value\r\n" lines; a list
 * value gives one line per element (several Set-Cookie). Names are tokens,
 * unique regardless of case and never one the host writes; values have no
 * control characters; the block fits in cap. 0, or -1 with err. */
static int build_headers(lua_State *L, int idx, headers_t *h) {
  if (lua_isnil(L, idx)) return 0;
  if (!lua_istable(L, idx)) return header_fail(h, "headers must be a table", "", 0);
  int frozen = frozen_headers(L, idx, h);
  if (frozen != 0) return frozen < 0 ? -1 : 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return header_fail(h, "names must be strings", "?", 1);
    }
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    int rc = 0;
    for (size_t i = 0; i < kl && rc == 0; i++)
      if (!(byte_class[(unsigned char)k[i]] & TCHAR))
        rc = header_fail(h, "name is not a token", k, kl);
    if (kl == 0) rc = header_fail(h, "empty name", k, kl);
    for (size_t i = 0; i < sizeof(host_owned) / sizeof(host_owned[0]) && rc == 0; i++)
      if (host_owned[i].len == kl && strncasecmp(host_owned[i].name, k, kl) == 0)
        rc = header_fail(h, "set by the host, not by handlers", k, kl);
    if (rc == 0 && http_head_has(h->buf, h->len, k, kl))
      rc = header_fail(h, "set twice (names are case-insensitive)", k, kl);
    if (rc == 0 && lua_istable(L, -1)) {
      int n = (int)lua_objlen(L, -1);
      if (n == 0) rc = header_fail(h, "empty list", k, kl);
      for (int i = 1; i <= n && rc == 0; i++) {
        lua_rawgeti(L, -1, i);
        rc = header_line(h, L, k, kl);
        lua_pop(L, 1);
      }
    } else if (rc == 0) {
      rc = header_line(h, L, k, kl);
    }
    if (rc != 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- the task's end ---------------------------------------------------------- */

/* The address of entry_key is the mark of the entry function's answers.
 * The entry function itself (one per VM) is kept in the registry under
 * ENTRY_REF, an integer key luaL_ref never gives (its refs are positive):
 * fetched per request, an integer key is cheaper than a light userdata
 * one. */
static char entry_key;
#define ENTRY_REF (-0x66636673)

/* A string result at idx of co, NULL when there is none. checked: the
 * entry function (entry_chunk) made it a string or nil already. */
static const char *result_string(lua_State *co, int idx, int top, int checked, size_t *len) {
  if (idx > top || (!checked && lua_type(co, idx) != LUA_TSTRING)) return NULL;
  return lua_tolstring(co, idx, len);
}

/* Answer r with the handler's results: status, body (may be NULL), route
 * (may be NULL), and a frozen header table's block or, when block is NULL,
 * the headers at index 3 of co (absent or nil: none). */
static void answer(fcfs_request_t *r, lua_State *co, int status, const char *body, size_t blen,
                   const char *route, size_t rl, const char *block, size_t hl) {
  if (status < 100 || status > 999) {
    char line[256];
    fcfs_log_req(FCFS_LOG_ERROR, r->id, r->remote, fcfs_request_line(r, line, sizeof(line)),
                 "handler returned no valid status (got %s)", luaL_typename(co, 1));
    status = 500;
  }
  if (body == NULL) blen = 0;
  if (route != NULL) {
    if (rl >= sizeof(r->route_buf)) rl = sizeof(r->route_buf) - 1;
    memcpy(r->route_buf, route, rl);
    r->route_buf[rl] = '\0';
    r->route = r->route_buf;
  }
  if (block != NULL) {
    fcfs_request_respond(r, status, block, hl, body, blen);
    return;
  }
  char hbuf[8192], err[256];
  headers_t hd = {hbuf, sizeof(hbuf), 0, err, sizeof(err)};
  if (lua_gettop(co) >= 3 && build_headers(co, 3, &hd) != 0) {
    char line[256];
    fcfs_log_req(FCFS_LOG_ERROR, r->id, r->remote, fcfs_request_line(r, line, sizeof(line)), "%s",
                 err);
    fcfs_request_fail(r, 500, NULL);
    return;
  }
  fcfs_request_respond(r, status, hbuf, hd.len, body, blen);
}

void fcfs_request_answer(void *vm, double status, const char *body, size_t body_len,
                         const char *route, size_t route_len, const char *block, size_t block_len) {
  fcfs_task_t *t = vm ? fcfs_task_current(fcfs_vm_state(vm)) : NULL;
  fcfs_request_t *r = t ? fcfs_task_request(t) : NULL;
  if (r == NULL) return;
  fcfs_answer_t *a = &r->answer;
  a->set = 1;
  /* as lua_tointeger would read it, without converting what no int holds
   * (out of 100..999 is invalid either way) */
  a->status = status >= 100 && status < 1000 ? (int)status : 0;
  a->body = body;
  a->body_len = body_len;
  a->route = route;
  a->route_len = route_len;
  a->block = block;
  a->block_len = block_len;
}

/* The handler returned: what the entry function handed over through
 * fcfs_request_answer (its results stay on co: the strings are alive), or
 * status, body, headers, route on co; from the entry function, also its
 * mark, then the header block of a frozen header table that answered
 * before (made here then: no need to read the table again) instead of the
 * headers; body, route and block are strings or nil then. */
static void request_done(void *owner, lua_State *co) {
  fcfs_request_t *r = owner;
  r->task = NULL;
  if (r->answer.set) {
    const fcfs_answer_t *a = &r->answer;
    r->answer.set = 0;
    answer(r, co, a->status, a->body, a->body_len, a->route, a->route_len, a->block, a->block_len);
    return;
  }
  int top = lua_gettop(co);
  int entry = top >= 5 && lua_touserdata(co, 5) == &entry_key;
  int status = top >= 1 ? (int)lua_tointeger(co, 1) : 0;
  size_t blen = 0, rl = 0, hl = 0;
  const char *body = result_string(co, 2, top, entry, &blen);
  const char *route = result_string(co, 4, top, entry, &rl);
  const char *block = entry ? result_string(co, 6, top, 1, &hl) : NULL;
  answer(r, co, status, body, blen, route, rl, block, hl);
}

static void request_failed(void *owner, const char *traceback) {
  fcfs_request_t *r = owner;
  char line[256];
  r->task = NULL;
  fcfs_log_req(FCFS_LOG_ERROR, r->id, r->remote, fcfs_request_line(r, line, sizeof(line)),
               "lua error: %s", traceback);
  fcfs_request_fail(r, 500, NULL);
}

static void request_dropped(void *owner, const char *why) {
  fcfs_request_t *r = owner;
  r->task = NULL;
  fcfs_request_fail(r, 503, why);
}

static void request_push(void *owner, lua_State *L);

static const fcfs_task_hooks_t request_hooks = {request_done, request_failed, request_dropped,
                                                request_push};

fcfs_request_t *fcfs_task_request(fcfs_task_t *t) {
  return fcfs_task_owner(t, &request_hooks);
}

/* ---- the request table ------------------------------------------------------- */

/* The request of the running task, when it is one (NULL otherwise). */
static const fcfs_request_t *current_request(lua_State *L) {
  fcfs_task_t *t = fcfs_task_current(L);
  return t ? fcfs_task_request(t) : NULL;
}

/* Push r's headers as a table: lower-cased names, repeated headers joined with ", ". */
static void push_headers(lua_State *L, const fcfs_request_t *r) {
  lua_newtable(L);
  if (r == NULL || r->http == NULL) return;
  const http_req_t *h = r->http;
  char name[128];
  for (size_t i = 0; i < h->nheaders; i++) {
    size_t nl = h->headers[i].name_len < sizeof(name) ? h->headers[i].name_len : sizeof(name) - 1;
    for (size_t j = 0; j < nl; j++) {
      char c = h->headers[i].name[j];
      name[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lua_pushlstring(L, name, nl);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isstring(L, -1)) { /* repeated header: join with ", " */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->headers[i].value, h->headers[i].value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h->headers[i].value, h->headers[i].value_len);
    }
    lua_rawset(L, -3);
  }
}

/* The request fields handlers seldom read (headers, query, request_id,
 * remote_addr, admin) are not set when the table is made: this __index of
 * request tables (also host.request_field, for lib/web.lua's own metatable)
 * finds them in the request of the running task and keeps them in the table
 * (a request table kept past its request finds none of them). A request
 * table is made per request: the fewer fields, the less garbage. */
int fcfs_request_field(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t kl;
  const char *k = lua_tolstring(L, 2, &kl);
  const fcfs_request_t *r;
  if (kl == 7 && memcmp(k, "headers", 7) == 0) {
    push_headers(L, current_request(L));
  } else if ((r = current_request(L)) == NULL || r->http == NULL) {
    return 0;
  } else if (kl == 5 && memcmp(k, "query", 5) == 0) {
    lua_pushlstring(L, r->http->query ? r->http->query : "", r->http->query_len);
  } else if (kl == 10 && memcmp(k, "request_id", 10) == 0) {
    lua_pushstring(L, r->id);
  } else if (kl == 11 && memcmp(k, "remote_addr", 11) == 0) {
    lua_pushstring(L, r->remote);
  } else if (kl == 5 && memcmp(k, "admin", 5) == 0 && r->admin) {
    lua_pushboolean(L, 1);
  } else {
    return 0;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* The names of the fields set when a request table is made, kept in the
 * array part of the metatable: a name is fetched, not interned anew. */
enum { KEY_METHOD = 1, KEY_PATH, KEY_BODY };

/* Push the request tables' metatable of L's VM, made on first use. */
static void push_req_mt(lua_State *L) {
  lua_pushlightuserdata(L, &req_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 3, 2);
  lua_pushcfunction(L, fcfs_request_field);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 1); /* a table made by the host for its request (lib/web.lua, host.header) */
  lua_setfield(L, -2, "__fcfs_request");
  lua_pushliteral(L, "method");
  lua_rawseti(L, -2, KEY_METHOD);
  lua_pushliteral(L, "path");
  lua_rawseti(L, -2, KEY_PATH);
  lua_pushliteral(L, "body");
  lua_rawseti(L, -2, KEY_BODY);
  lua_pushlightuserdata(L, &req_mt_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Set field key (of the metatable on top) of the table below it to s. */
static void set_field(lua_State *L, int key, const char *s, size_t len) {
  lua_rawgeti(L, -1, key);
  lua_pushlstring(L, s, len);
  lua_rawset(L, -4);
}

/* Push r's request table on co: method, path and body; the rest on first
 * use (fcfs_request_field). */
static void push_request(lua_State *co, const fcfs_request_t *r) {
  const http_req_t *h = r->http;
  /* room for what lib/web.lua and the handlers add (params, route, auth, ...) */
  lua_createtable(co, 0, 8);
  push_req_mt(co);
  set_field(co, KEY_METHOD, h->method, h->method_len);
  set_field(co, KEY_PATH, h->path, h->path_len);
  if (h->body) set_field(co, KEY_BODY, h->body, h->body_len);
  lua_setmetatable(co, -2);
}

/* The request for the app's handle_error: a table like the one the raising
 * serve got (made anew: the error path only, so the request path keeps no
 * reference to it). */
static void request_push(void *owner, lua_State *L) {
  push_request(L, owner);
}

/* The request task's function: entry(method_id, path, body) makes the
 * request table in Lua and calls handler(app, req) (its upvalues). A table
 * constructor with constant keys is one copy of a template under the JIT,
 * which can even leave it unmade (sunk) while the request does not keep it
 * (push_request's C calls, a set per field, cost some 800 instructions and
 * 256 bytes of garbage a request more); params and route are in the
 * template (then cleared) for its size: 8 hash slots, room for what
 * lib/web.lua and the handlers add (params, route, auth, ...). The method
 * comes as its id (http_req_t.method_id) and its name from a list made
 * with the function: no string interned per request. The table is
 * push_request's: same fields, same metatable. It returns the handler's
 * status, body, headers and route (body and route made strings or nil: a
 * type check is next to free in a trace, a lua_type call per value is not),
 * then its mark, which tells request_done so. A frozen header table
 * answered with is looked up in the VM's blocks (push_blocks): when it is
 * there and still empty, its block goes back instead, after the mark. */
static const char entry_chunk[] =
    "local req_mt, methods, blocks, mark, setmetatable, next, type, handler, app, vm = ...\n"
    "local answer\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if ok then\n"
    "  pcall(ffi.cdef, [[\n"
    "void fcfs_request_answer(void *vm, double status, const char *body, size_t body_len,\n"
    "                         const char *route, size_t route_len, const char *block,\n"
    "                         size_t block_len);\n"
    "]])\n"
    "  ok, answer = pcall(function() return ffi.C.fcfs_request_answer end)\n"
    "  if ok then vm = ffi.cast('void *', vm) else answer = nil end\n"
    "end\n"
    "return function(method_id, path, body)\n"
    "  local req = { method = methods[method_id], path = path, body = body, params = false,\n"
    "    route = false }\n"
    "  req.params, req.route = nil, nil\n"
    "  local status, res_body, headers, route = handler(app, setmetatable(req, req_mt))\n"
    "  if type(res_body) ~= 'string' then res_body = nil end\n"
    "  if type(route) ~= 'string' then route = nil end\n"
    "  local block = blocks[headers]\n"
    "  if block ~= nil and next(headers) ~= nil then block = nil end\n"
    "  if answer ~= nil and type(status) == 'number' then\n"
    "    answer(vm, status, res_body, res_body and #res_body or 0, route, route and #route or 0,\n"
    "      block, block and #block or 0)\n"
    "  end\n"
    "  if block ~= nil then return status, res_body, nil, route, mark, block end\n"
    "  return status, res_body, headers, route, mark\n"
    "end\n";

/* Push the entry function of vm (made on first use, with the app's request
 * method and the app, fcfs_vm_push_handler: fixed for a VM's life). */
static void push_entry(fcfs_vm_t *vm, lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ENTRY_REF);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, entry_chunk, sizeof(entry_chunk) - 1, "=host.request") != 0) lua_error(L);
  push_req_mt(L);
  lua_newtable(L); /* method id + 1 -> name */
  const char *m;
  for (int i = 0; (m = http_method_name(i)) != NULL; i++) {
    lua_pushstring(L, m);
    lua_rawseti(L, -2, i + 1);
  }
  push_blocks(L);
  lua_pushlightuserdata(L, &entry_key);
  lua_getglobal(L, "setmetatable");
  lua_getglobal(L, "next");
  lua_getglobal(L, "type");
  fcfs_vm_push_handler(vm, L);
  lua_pushlightuserdata(L, vm);
  lua_call(L, 10, 1);
  lua_pushvalue(L, -1);
  lua_rawseti(L, LUA_REGISTRYINDEX, ENTRY_REF);
}

void fcfs_request_start(fcfs_vm_t *vm, fcfs_request_t *r) {
  fcfs_task_t *t = fcfs_vm_task(vm, &request_hooks, r, r->deadline_ms);
  if (t == NULL) {
    fcfs_request_fail(r, 503, "out of memory");
    return;
  }
  r->task = t;
  r->answer.set = 0;
  lua_State *co = fcfs_task_thread(t);
  const http_req_t *h = r->http;
  push_entry(vm, co);
  lua_pushinteger(co, h->method_id + 1);
  lua_pushlstring(co, h->path, h->path_len);
  if (h->body == NULL) { /* body: nil */
    fcfs_task_start(t, 2);
    return;
  }
  lua_pushlstring(co, h->body, h->body_len);
  fcfs_task_start(t, 3);
}

void fcfs_request_cancel(fcfs_request_t *r) {
  fcfs_task_t *t = r->task;
  if (t == NULL) return;
  r->task = NULL;
  fcfs_task_cancel(t);
}

const char *fcfs_request_line(const fcfs_request_t *r, char *buf, size_t cap) {
  const http_req_t *h = r->http;
  if (h == NULL) {
    snprintf(buf, cap, "-");
    return buf;
  }
  snprintf(buf, cap, "%.*s %.*s%s%.*s HTTP/1.%d", (int)h->method_len, h->method, (int)h->path_len,
           h->path, h->query_len ? "?" : "", (int)h->query_len, h->query ? h->query : "",
           h->http_minor);
  return buf;
}

/* ---- one request header, without req.headers ------------------------------- */

int fcfs_request_header(void *vm, const char *name, size_t len, const char **value,
                        size_t *value_len) {
  /* req_index's keys: names cut to 127 bytes, lowercased */
  if (vm == NULL || name == NULL || len == 0 || len > 127 || value == NULL || value_len == NULL)
    return -1;
  fcfs_task_t *t = fcfs_task_current(fcfs_vm_state(vm));
  const fcfs_request_t *r = t ? fcfs_task_request(t) : NULL;
  if (r == NULL || r->http == NULL) return -1;
  const http_req_t *h = r->http;
  int found = 0;
  for (size_t i = 0; i < h->nheaders; i++) {
    size_t nl = h->headers[i].name_len < 128 ? h->headers[i].name_len : 127;
    if (nl != len) continue;
    const char *n = h->headers[i].name;
    size_t j = 0;
    while (j < len && (n[j] >= 'A' && n[j] <= 'Z' ? n[j] + 32 : n[j]) == name[j])
      j++;
    if (j < len) continue;
    if (found) return 2; /* repeated: req.headers joins the values */
    found = 1;
    *value = h->headers[i].value;
    *value_len = h->headers[i].value_len;
  }
  return found;
}

/* host.header(req, name) and host.header_direct(req): the chunk gets the
 * request tables' metatable and the VM. Under LuaJIT the lookup is an FFI
 * call of fcfs_request_header, for the tables header_direct tells: a table
 * made by the host (whose metatable is the host's, or one marked
 * __fcfs_request: lib/web.lua's for the host's tables) whose headers were
 * neither built nor set. Every case the call does not answer (another
 * table, a repeated header, no running request) reads req.headers, so the
 * answer is always req.headers[name]'s. */
static const char header_chunk[] =
    "local req_mt, vm = ...\n"
    "local rawget, getmetatable, type = rawget, getmetatable, type\n"
    "local function slow(req, name)\n"
    "  local h = req.headers\n"
    "  return h and h[name]\n"
    "end\n"
    "local function direct(req)\n"
    "  local mt = getmetatable(req)\n"
    "  return rawget(req, 'headers') == nil and (mt == req_mt or (mt and rawget(mt, "
    "'__fcfs_request'))) and true\n"
    "         or false\n"
    "end\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if not ok then return slow, function() return false end end\n"
    "pcall(ffi.cdef, [[\n"
    "int fcfs_request_header(void *vm, const char *name, size_t len, const char **value,\n"
    "                        size_t *value_len);\n"
    "]])\n"
    "local C, str = ffi.C, ffi.string\n"
    "vm = ffi.cast('void *', vm)\n"
    "local val, vlen = ffi.new('const char *[1]'), ffi.new('size_t[1]')\n"
    "return function(req, name)\n"
    "  if type(name) == 'string' and direct(req) then\n"
    "    local rc = C.fcfs_request_header(vm, name, #name, val, vlen)\n"
    "    if rc == 1 then return str(val[0], vlen[0]) end\n"
    "    if rc == 0 then return nil end\n"
    "  end\n"
    "  return slow(req, name)\n"
    "end, direct\n";

void fcfs_request_push_header_fns(lua_State *L) {
  if (luaL_loadbuffer(L, header_chunk, sizeof(header_chunk) - 1, "=host.header") != 0) lua_error(L);
  push_req_mt(L);
  lua_pushlightuserdata(L, fcfs_vm_of(L));
  lua_call(L, 2, 2);
}
