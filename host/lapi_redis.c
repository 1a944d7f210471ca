/* lapi_redis.c -- host.redis: the Lua face of the Redis pool (redis.c).
 *
 *   host.redis.call(cmd, ...)            -> value | nil, err
 *   host.redis.pipeline({{cmd, ...}, ...}) -> {value, ...} | nil, err
 *   host.redis.script(src)               -> script (no I/O: fine at require time)
 *   script.sha, script:run(keys, args)   -> value | nil, err
 *   script:run_values(keys, args)        -> v1, v2, ... | nil, err
 *   host.redis.pin()                     -> pin | nil, err
 *   pin:call(...), pin:pipeline(...), pin:run(script, keys, args), pin:read_reply(),
 *   pin:set_timeout(s), pin:release()
 *
 * A pipeline entry is {cmd, ...} or {script, keys, args} (sent as EVAL, so
 * that the commands after it see its effects whatever the server's script
 * cache holds). Scripts are
 * content-addressed (redis.c): the handle names the pool's entry for its
 * SHA1, so VMs of different generations never replace each other's scripts.
 * Numbers become command arguments exactly: integers (up to 2^53 and beyond
 * while integral) as "%lld", others with 15 significant digits, or 17 when 15 are not exact.
 *
 * Replies map as in lua-resty-redis: status and bulk -> string, integer ->
 * number, nil -> host.null (lightuserdata NULL), array -> table, a server
 * error -> nil, "ERR ..." (inside an array or a pipeline: {false, "ERR ..."}).
 * run_values answers an array reply with its elements as the values (no
 * table: for a hot caller that reads them at once), any other as run does.
 * Transport errors are "timeout", "closed", "unavailable", "busy".
 *
 * Each call yields its task (task.h). The op handed to fcfs_task_wait() is
 * the pool's command handle (cancel = fcfs_redis_cancel) or a pipeline
 * record owned here (freed on completion or cancel). A pin record is shared
 * by its Lua userdata and the task's on_end slot: the connection goes back to
 * the pool at pin:release() or when the task ends, and the record is freed
 * when both the userdata is collected and the connection released.
 */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "task.h"

#define PIN_MT "fcfs.redis.pin"
#define SCRIPT_MT "fcfs.redis.script"
#define ARGV_STACK 32
#define MAX_DEPTH 32
#define NUM_MAX 32 /* the text of one number argument: "%.17g" and its sign fit */

/* The arguments of one command: pointers and lengths, and the text of the
 * number arguments (written here, not made Lua strings: no interning, no
 * garbage). Strings point into Lua; the caller keeps them anchored. */
typedef struct {
  int n;
  const char **v;
  size_t *l;
  char *num; /* NUM_MAX bytes per argument */
  const char *sv[ARGV_STACK];
  size_t sl[ARGV_STACK];
  char snum[ARGV_STACK * NUM_MAX];
} args_t;

static int args_alloc(args_t *a, int n) {
  a->n = n;
  a->v = a->sv;
  a->l = a->sl;
  a->num = a->snum;
  if (n <= ARGV_STACK) return 0;
  a->v = malloc((size_t)n * sizeof *a->v);
  a->l = malloc((size_t)n * sizeof *a->l);
  a->num = malloc((size_t)n * NUM_MAX);
  if (a->v && a->l && a->num) return 0;
  free((void *)a->v);
  free(a->l);
  free(a->num);
  a->v = a->sv;
  a->l = a->sl;
  a->num = a->snum;
  return -1;
}

static void args_free(args_t *a) {
  if (a->v != a->sv) {
    free((void *)a->v);
    free(a->l);
    free(a->num);
  }
}

static int arg_ok(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TSTRING || t == LUA_TNUMBER;
}

/* Argument i of a is the string or number at idx, of type type (a string
 * stays where it is: the caller keeps it anchored); a number is written
 * exactly, in a's own buffer (lua_tolstring would keep only 14 digits). */
static void arg_put(lua_State *L, int idx, int type, args_t *a, int i) {
  if (type != LUA_TNUMBER) {
    a->v[i] = lua_tolstring(L, idx, &a->l[i]);
    return;
  }
  lua_Number d = lua_tonumber(L, idx);
  char *buf = a->num + (size_t)i * NUM_MAX, *p = buf + NUM_MAX;
  if (d == floor(d) && fabs(d) < 9.2e18) { /* integral: digits by hand, two a step, no printf */
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    long long v = (long long)d;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    for (; u >= 100; u /= 100) {
      p -= 2;
      memcpy(p, pairs + 2 * (u % 100), 2);
    }
    if (u >= 10) {
      p -= 2;
      memcpy(p, pairs + 2 * u, 2);
    } else {
      *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    a->v[i] = p;
    a->l[i] = (size_t)(buf + NUM_MAX - p);
    return;
  }
  if (snprintf(buf, NUM_MAX, "%.15g", (double)d) > 0 && strtod(buf, NULL) != d)
    snprintf(buf, NUM_MAX, "%.17g", (double)d); /* the shortest of the two that is exact */
  a->v[i] = buf;
  a->l[i] = strlen(buf);
}

static void arg_set(lua_State *L, int idx, args_t *a, int i) {
  arg_put(L, idx, lua_type(L, idx), a, i);
}

static int push_err(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, fcfs_redis_strerror(rc));
  return 2;
}

static double timeout_for(fcfs_redis_t *r, fcfs_task_t *t, double want) {
  double to = want > 0 ? want : fcfs_redis_default_timeout(r);
  double left = fcfs_task_time_left(t);
  if (left < to) to = left;
  return to > 0.001 ? to : 0.001;
}

/* Arguments first..top of the stack (strings or numbers). */
static void args_from_stack(lua_State *L, int first, const char *what, args_t *a) {
  int top = lua_gettop(L);
  if (top < first) fcfs_task_error(L, "%s: no command given", what);
  if (args_alloc(a, top - first + 1) < 0) fcfs_task_error(L, "%s: out of memory", what);
  for (int i = first; i <= top; i++) { /* one lua_type per argument: every command comes here */
    int type = lua_type(L, i);
    if (type != LUA_TSTRING && type != LUA_TNUMBER) {
      args_free(a);
      fcfs_task_error(L, "%s: argument #%d is a %s (strings and numbers only)", what, i - first + 1,
                      luaL_typename(L, i));
    }
    arg_put(L, i, type, a, i - first);
  }
}

/* Check t[1..n] are strings or numbers and, when a is given, point
 * a->v[off..] at them (as list_to_args); raises (a freed first). Returns n. */
static int check_list(lua_State *L, int tidx, const char *what, const char *label, int num,
                      args_t *a, int off) {
  int n = (int)lua_objlen(L, tidx);
  for (int j = 1; j <= n; j++) {
    lua_rawgeti(L, tidx, j);
    if (!arg_ok(L, -1)) {
      if (a) args_free(a);
      if (num)
        luaL_error(L, "%s: %s #%d, element #%d is a %s (strings and numbers only)", what, label,
                   num, j, luaL_typename(L, -1));
      luaL_error(L, "%s: %s element #%d is a %s (strings and numbers only)", what, label, j,
                 luaL_typename(L, -1));
    }
    if (a) arg_set(L, -1, a, off + j - 1);
    lua_pop(L, 1);
  }
  return n;
}

/* Point a->v[off..] at t[1..n] (checked: strings or numbers). The strings
 * stay anchored by t, which the caller holds and no Lua code runs to change
 * before the command is formatted. Cannot raise. */
static void list_to_args(lua_State *L, int tidx, int n, args_t *a, int off) {
  for (int j = 1; j <= n; j++) {
    lua_rawgeti(L, tidx, j);
    arg_set(L, -1, a, off + j - 1);
    lua_pop(L, 1);
  }
}

/* ---- replies ---- */

static void push_reply(lua_State *L, const redisReply *rep, int depth) {
  switch (rep->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, rep->str, rep->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushnumber(L, (lua_Number)rep->integer);
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(L, 2, 0);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, rep->str, rep->len);
    lua_rawseti(L, -2, 2);
    break;
  case REDIS_REPLY_ARRAY:
    if (depth >= MAX_DEPTH || !lua_checkstack(L, 4)) {
      lua_pushlightuserdata(L, NULL); /* absurd nesting: never sent by Redis itself */
      break;
    }
    lua_createtable(L, rep->elements < INT_MAX ? (int)rep->elements : 0, 0);
    for (size_t i = 0; i < rep->elements; i++) {
      push_reply(L, rep->element[i], depth + 1);
      lua_rawseti(L, -2, (int)(i + 1));
    }
    break;
  default:
    lua_pushlightuserdata(L, NULL); /* nil bulk / nil array: host.null */
  }
}

/* Push the results of one command; frees rep. */
static int push_result(lua_State *L, redisReply *rep, const char *err) {
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  int n = 1;
  if (rep->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushlstring(L, rep->str, rep->len);
    n = 2;
  } else {
    push_reply(L, rep, 0);
  }
  fcfs_redis_reply_free(rep);
  return n;
}

static void on_done(void *arg, redisReply *rep, const char *err) {
  fcfs_task_t *t = arg;
  int n = push_result(fcfs_task_thread(t), rep, err);
  fcfs_task_resume(t, n);
}

/* As on_done, an array reply's elements as the values (script:run_values). */
static void on_done_values(void *arg, redisReply *rep, const char *err) {
  fcfs_task_t *t = arg;
  lua_State *L = fcfs_task_thread(t);
  if (err || rep->type != REDIS_REPLY_ARRAY) {
    fcfs_task_resume(t, push_result(L, rep, err));
    return;
  }
  int n = rep->elements < INT_MAX - 8 ? (int)rep->elements : -1;
  if (n < 0 || !lua_checkstack(L, n + 8)) {
    fcfs_redis_reply_free(rep);
    fcfs_task_resume(t, push_err(L, FCFS_REDIS_ENOMEM));
    return;
  }
  for (int i = 0; i < n; i++)
    push_reply(L, rep->element[i], 1);
  fcfs_redis_reply_free(rep);
  fcfs_task_resume(t, n);
}

static void cancel_cmd(void *op) {
  fcfs_redis_cancel(op);
}

/* ---- pipelines ---- */

typedef struct pipe_s pipe_t;
typedef struct {
  pipe_t *p;
  void *handle;
  redisReply *reply;
  int done;
} slot_t;

struct pipe_s {
  fcfs_task_t *t;
  int n, left;
  const char *err;
  slot_t s[];
};

static void pipe_free(pipe_t *p) {
  for (int i = 0; i < p->n; i++)
    if (p->s[i].reply) fcfs_redis_reply_free(p->s[i].reply);
  free(p);
}

static void on_pipe_slot(void *arg, redisReply *rep, const char *err) {
  slot_t *s = arg;
  pipe_t *p = s->p;
  s->done = 1;
  s->reply = rep;
  if (err && !p->err) p->err = err;
  if (--p->left > 0) return;
  fcfs_task_t *t = p->t;
  lua_State *L = fcfs_task_thread(t);
  int nres = 1;
  if (p->err) {
    lua_pushnil(L);
    lua_pushstring(L, p->err);
    nres = 2;
  } else {
    lua_createtable(L, p->n, 0);
    for (int i = 0; i < p->n; i++) {
      push_reply(L, p->s[i].reply, 0); /* errors come as {false, "ERR ..."} */
      lua_rawseti(L, -2, i + 1);
    }
  }
  pipe_free(p);
  fcfs_task_resume(t, nres);
}

static void cancel_pipe(void *op) {
  pipe_t *p = op;
  for (int i = 0; i < p->n; i++)
    if (!p->s[i].done) fcfs_redis_cancel(p->s[i].handle);
  pipe_free(p);
}

/* ---- scripts ---- */

typedef struct {
  fcfs_redis_t *r;
  int id;
} script_ud_t;

/* The script handle at idx, or NULL when it is something else. */
static script_ud_t *to_script(lua_State *L, int idx) {
  script_ud_t *s = lua_touserdata(L, idx);
  if (!s || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, SCRIPT_MT);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? s : NULL;
}

/* keys and args of a script call at kidx, aidx (tables or nil): checked and,
 * when a is given, made its arguments in one pass (keys first; the caller
 * frees a); raises. Returns their count. */
static int check_script_lists(lua_State *L, int kidx, int aidx, const char *what, int *nk,
                              args_t *a) {
  int n[2] = {0, 0}, idx[2] = {kidx, aidx};
  const char *label[2] = {"keys", "args"};
  for (int k = 0; k < 2; k++) {
    if (lua_isnoneornil(L, idx[k])) continue;
    if (!lua_istable(L, idx[k])) luaL_error(L, "%s: %s must be a table", what, label[k]);
    n[k] = (int)lua_objlen(L, idx[k]);
  }
  if (a && args_alloc(a, n[0] + n[1]) < 0) luaL_error(L, "%s: out of memory", what);
  for (int k = 0; k < 2; k++)
    if (n[k]) check_list(L, idx[k], what, label[k], 0, a, k ? n[0] : 0);
  *nk = n[0];
  return n[0] + n[1];
}

/* Queue script s of a pipeline (sent as EVAL: ordered) with the lists at
 * kidx/aidx (checked) on c. */
static int send_script(lua_State *L, script_ud_t *s, fcfs_redis_conn_t *c, int kidx, int aidx,
                       int nk, int n, double timeout, fcfs_redis_cb cb, void *arg, void **handle) {
  args_t a;
  if (args_alloc(&a, n) < 0) return FCFS_REDIS_ENOMEM;
  if (nk) list_to_args(L, kidx, nk, &a, 0);
  if (n > nk) list_to_args(L, aidx, n - nk, &a, nk);
  int rc = fcfs_redis_run(s->r, c, s->id, 1, nk, n, a.v, a.l, timeout, cb, arg, handle);
  args_free(&a);
  return rc;
}

/* script:run(keys, args), script:run_values(keys, args) (done: on_done_values)
 * and pin:run(script, keys, args). */
static int run_script(lua_State *L, script_ud_t *s, fcfs_redis_conn_t *c, fcfs_task_t *t, int first,
                      double want, fcfs_redis_cb done, const char *what) {
  args_t a;
  int nk;
  check_script_lists(L, first, first + 1, what, &nk, &a);
  void *h = NULL;
  int rc =
      fcfs_redis_run(s->r, c, s->id, 0, nk, a.n, a.v, a.l, timeout_for(s->r, t, want), done, t, &h);
  args_free(&a);
  if (rc < 0) return push_err(L, rc);
  return fcfs_task_wait(L, t, h, cancel_cmd);
}

static int script_run(lua_State *L) {
  script_ud_t *s = luaL_checkudata(L, 1, SCRIPT_MT);
  fcfs_task_t *t = fcfs_task_require(L, "script:run");
  return run_script(L, s, NULL, t, 2, 0, on_done, "script:run");
}

static int script_run_values(lua_State *L) {
  script_ud_t *s = luaL_checkudata(L, 1, SCRIPT_MT);
  fcfs_task_t *t = fcfs_task_require(L, "script:run_values");
  return run_script(L, s, NULL, t, 2, 0, on_done_values, "script:run_values");
}

/* __index; upvalues: script_run, script_run_values, made once (a C function
 * pushed per script:run would be a new closure each time: garbage). */
static int script_index(lua_State *L) {
  script_ud_t *s = luaL_checkudata(L, 1, SCRIPT_MT);
  const char *k = lua_tostring(L, 2);
  if (k && !strcmp(k, "run"))
    lua_pushvalue(L, lua_upvalueindex(1));
  else if (k && !strcmp(k, "run_values"))
    lua_pushvalue(L, lua_upvalueindex(2));
  else if (k && !strcmp(k, "sha"))
    lua_pushstring(L, fcfs_redis_script_sha(s->r, s->id));
  else
    lua_pushnil(L);
  return 1;
}

/* ---- pipelines (continued) ---- */

/* cmds at stack index idx; c == NULL: a shared connection. An entry is
 * {cmd, ...} or {script, keys, args}. */
static int do_pipeline(lua_State *L, fcfs_redis_t *r, fcfs_task_t *t, fcfs_redis_conn_t *c, int idx,
                       double want, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_objlen(L, idx);
  /* Check everything first: once a command is queued no Lua error may be raised. */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    int e = lua_gettop(L);
    if (!lua_istable(L, e)) luaL_error(L, "%s: command #%d is not a table", what, i);
    lua_rawgeti(L, e, 1);
    script_ud_t *sc = to_script(L, -1);
    lua_pop(L, 1);
    if (sc) {
      int nk;
      lua_rawgeti(L, e, 2);
      lua_rawgeti(L, e, 3);
      check_script_lists(L, e + 1, e + 2, what, &nk, NULL);
      lua_settop(L, e - 1);
      continue;
    }
    int m = check_list(L, e, what, "command", i, NULL, 0);
    if (m < 1) luaL_error(L, "%s: command #%d is empty", what, i);
    if (!c) {
      args_t a;
      if (args_alloc(&a, m) < 0) luaL_error(L, "%s: out of memory", what);
      list_to_args(L, e, m, &a, 0);
      int pin = fcfs_redis_needs_pin(a.n, a.v, a.l);
      args_free(&a);
      if (pin) {
        lua_rawgeti(L, e, 1);
        luaL_error(L, "%s: command #%d (%s) needs a connection of its own: use host.redis.pin()",
                   what, i, lua_tostring(L, -1));
      }
    }
    lua_settop(L, e - 1);
  }
  if (n == 0) {
    lua_newtable(L);
    return 1;
  }
  if (!c && !(c = fcfs_redis_shared(r))) return push_err(L, FCFS_REDIS_EUNAVAILABLE);
  pipe_t *p = calloc(1, sizeof *p + (size_t)n * sizeof(slot_t));
  if (!p) return push_err(L, FCFS_REDIS_ENOMEM);
  p->t = t;
  p->n = n;
  double to = timeout_for(r, t, want);
  int base = lua_gettop(L), rc = 0, queued = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    lua_rawgeti(L, idx, i + 1);
    lua_rawgeti(L, base + 1, 1);
    script_ud_t *sc = to_script(L, base + 2);
    p->s[i].p = p;
    if (sc) {
      lua_rawgeti(L, base + 1, 2);
      lua_rawgeti(L, base + 1, 3);
      int nk = lua_istable(L, base + 3) ? (int)lua_objlen(L, base + 3) : 0;
      int m = nk + (lua_istable(L, base + 4) ? (int)lua_objlen(L, base + 4) : 0);
      rc = send_script(L, sc, c, base + 3, base + 4, nk, m, to, on_pipe_slot, &p->s[i],
                       &p->s[i].handle);
    } else {
      args_t a;
      int m = (int)lua_objlen(L, base + 1);
      lua_settop(L, base + 1);
      if (args_alloc(&a, m) < 0) {
        rc = FCFS_REDIS_ENOMEM;
        break;
      }
      list_to_args(L, base + 1, m, &a, 0);
      rc = fcfs_redis_conn_command_argv(c, a.n, a.v, a.l, to, on_pipe_slot, &p->s[i],
                                        &p->s[i].handle);
      args_free(&a);
    }
    queued += rc == 0;
    lua_settop(L, base);
  }
  if (rc < 0) { /* the first command, or memory, or redis_queue_max reached */
    lua_settop(L, base);
    for (int k = 0; k < queued; k++)
      fcfs_redis_cancel(p->s[k].handle);
    pipe_free(p);
    return push_err(L, rc);
  }
  p->left = n;
  return fcfs_task_wait(L, t, p, cancel_pipe);
}

/* ---- host.redis.* ---- */

static fcfs_redis_t *pool(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int l_call(lua_State *L) {
  fcfs_redis_t *r = pool(L);
  fcfs_task_t *t = fcfs_task_require(L, "host.redis.call");
  args_t a;
  void *h = NULL;
  args_from_stack(L, 1, "host.redis.call", &a);
  if (fcfs_redis_needs_pin(a.n, a.v, a.l)) {
    args_free(&a);
    return fcfs_task_error(
        L, "host.redis.call: %s needs a connection of its own: use host.redis.pin()",
        lua_tostring(L, 1));
  }
  int rc = fcfs_redis_command_argv(r, a.n, a.v, a.l, timeout_for(r, t, 0), on_done, t, &h);
  args_free(&a);
  if (rc < 0) return push_err(L, rc);
  return fcfs_task_wait(L, t, h, cancel_cmd);
}

static int l_pipeline(lua_State *L) {
  fcfs_redis_t *r = pool(L);
  fcfs_task_t *t = fcfs_task_require(L, "host.redis.pipeline");
  return do_pipeline(L, r, t, NULL, 1, 0, "host.redis.pipeline");
}

static int l_script(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  int id = fcfs_redis_script(pool(L), src, len);
  if (id < 0) return luaL_error(L, "host.redis.script: out of memory");
  script_ud_t *s = lua_newuserdata(L, sizeof *s);
  s->r = pool(L);
  s->id = id;
  luaL_getmetatable(L, SCRIPT_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* ---- pinned connections ---- */

typedef struct {
  fcfs_redis_t *r;
  fcfs_redis_conn_t *c;
  fcfs_task_t *t;
  double timeout; /* pin:set_timeout(); 0: the default */
  int released, ud_alive;
} pin_t;

static void pin_release(void *res) {
  pin_t *p = res;
  if (!p->released) {
    p->released = 1;
    fcfs_redis_unpin(p->c);
  }
  if (!p->ud_alive) free(p);
}

static int l_pin(lua_State *L) {
  fcfs_redis_t *r = pool(L);
  fcfs_task_t *t = fcfs_task_require(L, "host.redis.pin");
  pin_t **ud = lua_newuserdata(L, sizeof *ud);
  *ud = NULL;
  pin_t *p = calloc(1, sizeof *p);
  if (!p) return push_err(L, FCFS_REDIS_ENOMEM);
  int rc = fcfs_redis_pin(r, &p->c);
  if (rc < 0) {
    free(p);
    return push_err(L, rc);
  }
  p->r = r;
  p->t = t;
  p->ud_alive = 1;
  if (fcfs_task_on_end(t, pin_release, p) < 0) {
    fcfs_redis_unpin(p->c);
    free(p);
    return push_err(L, FCFS_REDIS_ENOMEM);
  }
  *ud = p;
  luaL_getmetatable(L, PIN_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static pin_t *check_pin(lua_State *L, const char *what) {
  pin_t *p = *(pin_t **)luaL_checkudata(L, 1, PIN_MT);
  if (!p || p->released) luaL_error(L, "%s: the connection was released", what);
  if (fcfs_task_current(L) != p->t)
    luaL_error(L, "%s: a pinned connection belongs to the request that took it", what);
  return p;
}

static int pin_call(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "pin:call");
  pin_t *p = check_pin(L, "pin:call");
  args_t a;
  void *h = NULL;
  args_from_stack(L, 2, "pin:call", &a);
  int rc = fcfs_redis_conn_command_argv(p->c, a.n, a.v, a.l, timeout_for(p->r, t, p->timeout),
                                        on_done, t, &h);
  args_free(&a);
  if (rc < 0) return push_err(L, rc);
  return fcfs_task_wait(L, t, h, cancel_cmd);
}

static int pin_pipeline(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "pin:pipeline");
  pin_t *p = check_pin(L, "pin:pipeline");
  return do_pipeline(L, p->r, t, p->c, 2, p->timeout, "pin:pipeline");
}

static int pin_run(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "pin:run");
  pin_t *p = check_pin(L, "pin:run");
  script_ud_t *s = to_script(L, 2);
  if (!s) return luaL_argerror(L, 2, "a script from host.redis.script() expected");
  return run_script(L, s, p->c, t, 3, p->timeout, on_done, "pin:run");
}

static int pin_read_reply(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "pin:read_reply");
  pin_t *p = check_pin(L, "pin:read_reply");
  redisReply *ready = NULL;
  void *h = NULL;
  int rc = fcfs_redis_conn_read(p->c, timeout_for(p->r, t, p->timeout), on_done, t, &h, &ready);
  if (ready) return push_result(L, ready, NULL);
  if (rc < 0) return push_err(L, rc);
  return fcfs_task_wait(L, t, h, cancel_cmd);
}

static int pin_set_timeout(lua_State *L) {
  pin_t *p = check_pin(L, "pin:set_timeout");
  double s = luaL_checknumber(L, 2);
  luaL_argcheck(L, s > 0, 2, "seconds > 0 expected");
  p->timeout = s;
  lua_pushboolean(L, 1);
  return 1;
}

static int pin_release_l(lua_State *L) {
  pin_t *p = *(pin_t **)luaL_checkudata(L, 1, PIN_MT);
  if (!p || p->released) return 0;
  check_pin(L, "pin:release");
  fcfs_task_off_end(p->t, pin_release, p);
  p->released = 1;
  fcfs_redis_unpin(p->c);
  return 0;
}

static int pin_gc(lua_State *L) {
  pin_t **ud = luaL_checkudata(L, 1, PIN_MT);
  pin_t *p = *ud;
  *ud = NULL;
  if (!p) return 0;
  p->ud_alive = 0;
  if (p->released) free(p); /* else the task's on_end slot frees it */
  return 0;
}

/* host.redis.call: l_call behind this Lua function, for LuaJIT's sake. A
 * trace that meets a C function stitches across it (the code after the call
 * starts a trace of its own, entered when the call returns -- when the task
 * is resumed with the reply) unless the call's results go straight into
 * another call, as in check(redis.call(...)), and such a trace cannot return
 * out of a vararg function: here l_call is called from a fixed-argument
 * function with a fixed count of arguments (n, counted by select, so trailing
 * nils are passed as given), and what a handler does with the reply runs
 * compiled instead of in the interpreter. The same values as l_call: v, or
 * nil, err; more than 6 arguments go to l_call directly. */
static const char call_chunk[] = "local call, select = ...\n"
                                 "local function fixed(n, a, b, c, d, e, f)\n"
                                 "  local v, err\n"
                                 "  if n == 2 then v, err = call(a, b)\n"
                                 "  elseif n == 3 then v, err = call(a, b, c)\n"
                                 "  elseif n == 1 then v, err = call(a)\n"
                                 "  elseif n == 4 then v, err = call(a, b, c, d)\n"
                                 "  elseif n == 5 then v, err = call(a, b, c, d, e)\n"
                                 "  else v, err = call(a, b, c, d, e, f) end\n"
                                 "  if err == nil then return v end\n"
                                 "  return v, err\n"
                                 "end\n"
                                 "return function(...)\n"
                                 "  local n = select('#', ...)\n"
                                 "  if n == 0 or n > 6 then return call(...) end\n"
                                 "  return fixed(n, ...)\n"
                                 "end\n";

int fcfs_lapi_redis_open(lua_State *L, fcfs_redis_t *r) {
  static const luaL_Reg fns[] = {{"call", l_call},
                                 {"pipeline", l_pipeline},
                                 {"script", l_script},
                                 {"pin", l_pin},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {{"call", pin_call},
                                     {"pipeline", pin_pipeline},
                                     {"run", pin_run},
                                     {"read_reply", pin_read_reply},
                                     {"set_timeout", pin_set_timeout},
                                     {"release", pin_release_l},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, PIN_MT)) {
    lua_createtable(L, 0, 5);
    for (const luaL_Reg *m = methods; m->name; m++) {
      lua_pushcfunction(L, m->func);
      lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pin_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "redis pinned connection");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SCRIPT_MT)) {
    lua_pushcfunction(L, script_run);
    lua_pushcfunction(L, script_run_values);
    lua_pushcclosure(L, script_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "redis script");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 5);
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  if (luaL_loadbuffer(L, call_chunk, sizeof(call_chunk) - 1, "=host.redis") != 0) lua_error(L);
  lua_getfield(L, -2, "call");
  lua_getglobal(L, "select");
  lua_call(L, 2, 1);
  lua_setfield(L, -2, "call");
  return 1;
}
