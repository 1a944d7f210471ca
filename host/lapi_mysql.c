/* lapi_mysql.c -- host.mysql: the Lua face of the MySQL pool (mysql.c).
 *
 *   rows | {affected_rows=, insert_id=} | nil, err[, errno]
 *       = host.mysql.query(sql, ...)          -- `?` filled with the values
 *
 * rows is a list of row tables (column name -> value) marked as a JSON
 * array (metatable __name "json.array", see lua/lib/json.lua), so that an
 * empty result encodes as [].
 *   ... = host.mysql.tx(function(tx) ... tx:query(sql, ...) ... end)
 *
 * Each call runs inside a task (request or timer coroutine) and yields
 * through fcfs_task_wait(); the pool callback pushes the results on the task
 * thread and resumes it. An op_t is one such wait; it is freed by its
 * completion callback or by the scheduler's cancel, whichever comes first.
 *
 * A transaction (tx_t, malloc'd) pins one connection for the task. It is
 * registered with fcfs_task_on_end() so that however the task ends the
 * connection is closed (the server rolls back) unless it was committed or
 * rolled back first. The Lua userdata the handler sees only points at the
 * tx_t; the tx_t is freed when both the userdata is collected and the task
 * no longer holds it (has_ud == 0 && registered == 0). tx() itself is a small
 * Lua function (a C function cannot call a Lua function that yields under
 * LuaJIT) over two C primitives, begin() and finish(tx, commit).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "mysql.h"
#include "task.h"

#define TX_MT "fcfs.mysql.tx"
#define ROWS_MT                                                                                    \
  "fcfs.mysql.rows"           /* __name "json.array": lib/json encodes it as an array, even empty */
#define MAX_EXACT (1LL << 53) /* integers up to here are exact as doubles */

enum { K_QUERY, K_ACQUIRE, K_BEGIN, K_FINISH };

typedef struct op_s op_t;

typedef struct tx_s {
  fcfs_mysql_t *m;
  fcfs_mysql_conn_t *conn;
  fcfs_task_t *task;
  op_t *op;       /* in flight */
  int registered; /* with fcfs_task_on_end */
  int has_ud;     /* a Lua userdata points here */
  int done;
} tx_t;

struct op_s {
  fcfs_task_t *task;
  fcfs_mysql_req_t *req;
  tx_t *tx;
  int kind;
  int commit;
};

/* ---- values ---------------------------------------------------------------- */

static void push_value(lua_State *L, const MYSQL_FIELD *f, const char *v, unsigned long len) {
  if (!v) {
    lua_pushlightuserdata(L, NULL); /* host.null */
    return;
  }
  switch (f->type) {
  case MYSQL_TYPE_TINY:
  case MYSQL_TYPE_SHORT:
  case MYSQL_TYPE_INT24:
  case MYSQL_TYPE_LONG:
  case MYSQL_TYPE_LONGLONG:
  case MYSQL_TYPE_YEAR: {
    char *end = NULL;
    if (f->flags & UNSIGNED_FLAG) {
      unsigned long long u = strtoull(v, &end, 10);
      if (end != v && u <= (unsigned long long)MAX_EXACT) {
        lua_pushnumber(L, (lua_Number)u);
        return;
      }
    } else {
      long long i = strtoll(v, &end, 10);
      if (end != v && i <= MAX_EXACT && i >= -MAX_EXACT) {
        lua_pushnumber(L, (lua_Number)i);
        return;
      }
    }
    lua_pushlstring(L, v, len); /* beyond 2^53: exact as a string */
    return;
  }
  case MYSQL_TYPE_FLOAT:
  case MYSQL_TYPE_DOUBLE:
    lua_pushnumber(L, strtod(v, NULL));
    return;
  default: /* DECIMAL, dates and times, text, blobs, BIT, JSON */
    lua_pushlstring(L, v, len);
    return;
  }
}

/* Push what a statement returned; the count of values pushed. */
static int push_result(lua_State *L, const fcfs_mysql_result_t *r) {
  if (r->err) {
    lua_pushnil(L);
    lua_pushstring(L, r->err);
    if (!r->errnum) return 2;
    lua_pushinteger(L, (lua_Integer)r->errnum);
    return 3;
  }
  if (!r->res) {
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (lua_Number)r->affected_rows);
    lua_setfield(L, -2, "affected_rows");
    lua_pushnumber(L, (lua_Number)r->insert_id);
    lua_setfield(L, -2, "insert_id");
    return 1;
  }
  MYSQL_RES *res = r->res;
  unsigned int nf = mysql_num_fields(res);
  MYSQL_FIELD *f = mysql_fetch_fields(res);
  uint64_t nr = mysql_num_rows(res);
  lua_createtable(L, nr < 1u << 26 ? (int)nr : 0, 0);
  int rows = lua_gettop(L);
  luaL_getmetatable(L, ROWS_MT);
  lua_setmetatable(L, rows);
  luaL_checkstack(L, (int)nf + 4, "too many columns");
  for (unsigned int j = 0; j < nf; j++)
    lua_pushlstring(L, f[j].name, f[j].name_length);
  MYSQL_ROW row;
  int i = 0;
  while ((row = mysql_fetch_row(res)) != NULL) {
    unsigned long *lens = mysql_fetch_lengths(res);
    lua_createtable(L, 0, (int)nf);
    for (unsigned int j = 0; j < nf; j++) {
      lua_pushvalue(L, rows + 1 + (int)j);
      push_value(L, &f[j], row[j], lens[j]);
      lua_rawset(L, -3);
    }
    lua_rawseti(L, rows, ++i);
  }
  lua_settop(L, rows);
  return 1;
}

/* Convert the values at first..top into params; raises a Lua error for a
 * value SQL cannot hold. */
static void get_params(lua_State *L, int first, fcfs_mysql_param_t *p, int n, const char *what) {
  for (int k = 0; k < n; k++) {
    int idx = first + k;
    memset(&p[k], 0, sizeof(p[k]));
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
      lua_Number d = lua_tonumber(L, idx);
      if (!isfinite(d)) luaL_error(L, "%s: value %d is not a finite number", what, k + 1);
      if (d == floor(d) && fabs(d) < 9.2e18) {
        p[k].type = FCFS_MYSQL_PINT;
        p[k].i = (long long)d;
      } else {
        p[k].type = FCFS_MYSQL_PDOUBLE;
        p[k].d = d;
      }
      break;
    }
    case LUA_TSTRING:
      p[k].type = FCFS_MYSQL_PSTR;
      p[k].s = lua_tolstring(L, idx, &p[k].len);
      break;
    case LUA_TBOOLEAN:
      p[k].type = FCFS_MYSQL_PINT;
      p[k].i = lua_toboolean(L, idx) ? 1 : 0;
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        p[k].type = FCFS_MYSQL_PNULL;
        break;
      }
      /* fall through */
    default:
      luaL_error(L, "%s: value %d has type %s (use host.null for NULL)", what, k + 1,
                 luaL_typename(L, idx));
    }
  }
}

static double op_timeout(fcfs_mysql_t *m, fcfs_task_t *t) {
  double q = fcfs_mysql_options(m)->query_timeout;
  double left = fcfs_task_time_left(t);
  if (!(q > 0) || left < q) q = left;
  return q > 0.001 ? q : 0.001;
}

/* ---- transactions: lifetime ---------------------------------------------- */

static void tx_maybe_free(tx_t *tx) {
  if (!tx->has_ud && !tx->registered) free(tx);
}

/* Task ended (or was cancelled) with the transaction still pinned. */
static void tx_on_end(void *p) {
  tx_t *tx = p;
  tx->registered = 0;
  if (tx->op) { /* the scheduler cancels the op itself; stop it reaching the pool */
    op_t *op = tx->op;
    if (op->req) fcfs_mysql_cancel(op->req);
    op->req = NULL;
    op->tx = NULL;
    tx->op = NULL;
  }
  if (tx->conn) fcfs_mysql_release(tx->conn, 0); /* closed: the server rolls back */
  tx->conn = NULL;
  tx->done = 1;
  tx_maybe_free(tx);
}

/* Transaction over by commit/rollback or a failed begin. */
static void tx_end(tx_t *tx, int reuse) {
  if (tx->conn) fcfs_mysql_release(tx->conn, reuse);
  tx->conn = NULL;
  tx->done = 1;
  if (tx->registered) {
    fcfs_task_off_end(tx->task, tx_on_end, tx);
    tx->registered = 0;
  }
  tx_maybe_free(tx);
}

static int tx_gc(lua_State *L) {
  tx_t **ud = luaL_checkudata(L, 1, TX_MT);
  if (*ud) {
    (*ud)->has_ud = 0;
    tx_maybe_free(*ud);
    *ud = NULL;
  }
  return 0;
}

/* ---- ops ------------------------------------------------------------------ */

/* A transaction step that could not start: end the transaction (its
 * connection is closed, so the server rolls back) and answer nil, err. */
static int tx_fail(lua_State *L, tx_t *tx, const char *err) {
  tx_end(tx, 0);
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static void op_cancel(void *p) {
  op_t *op = p;
  if (op->tx) op->tx->op = NULL;
  if (op->req) fcfs_mysql_cancel(op->req);
  free(op);
}

static void on_query_done(void *arg, const fcfs_mysql_result_t *r) {
  op_t *op = arg;
  fcfs_task_t *t = op->task;
  if (op->tx) op->tx->op = NULL;
  free(op);
  int n = push_result(fcfs_task_thread(t), r);
  fcfs_task_resume(t, n);
}

static int start_query(lua_State *L, fcfs_mysql_t *m, fcfs_task_t *t, tx_t *tx, int first,
                       const char *what) {
  size_t len;
  const char *sql = luaL_checklstring(L, first, &len);
  int n = lua_gettop(L) - first;
  int want = fcfs_mysql_count_placeholders(sql, len);
  if (want != n) return luaL_error(L, "%s: %d placeholder(s) but %d value(s)", what, want, n);
  fcfs_mysql_param_t small[8];
  fcfs_mysql_param_t *p = n <= 8 ? small : lua_newuserdata(L, sizeof(*p) * (size_t)n);
  get_params(L, first + 1, p, n, what);
  op_t *op = calloc(1, sizeof(*op));
  if (!op) return luaL_error(L, "%s: out of memory", what);
  op->task = t;
  op->kind = K_QUERY;
  int rc = fcfs_mysql_query(m, tx ? tx->conn : NULL, sql, len, p, n, op_timeout(m, t),
                            on_query_done, op, &op->req);
  if (rc < 0) {
    free(op);
    lua_pushnil(L);
    lua_pushstring(L, fcfs_mysql_strerror(rc));
    return 2;
  }
  if (tx) {
    op->tx = tx;
    tx->op = op;
  }
  return fcfs_task_wait(L, t, op, op_cancel);
}

static int l_query(lua_State *L) {
  fcfs_mysql_t *m = lua_touserdata(L, lua_upvalueindex(1));
  fcfs_task_t *t = fcfs_task_require(L, "host.mysql.query");
  return start_query(L, m, t, NULL, 1, "host.mysql.query");
}

static tx_t *check_tx(lua_State *L, int idx, fcfs_task_t *t) {
  tx_t **ud = luaL_checkudata(L, idx, TX_MT);
  tx_t *tx = *ud;
  if (!tx || tx->done) luaL_error(L, "host.mysql.tx: the transaction is over");
  if (tx->task != t) luaL_error(L, "host.mysql.tx: the transaction belongs to another request");
  return tx;
}

static int l_tx_query(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "tx:query");
  tx_t *tx = check_tx(L, 1, t);
  if (!fcfs_mysql_conn_ok(tx->conn)) {
    lua_pushnil(L);
    lua_pushstring(L, fcfs_mysql_e_closed);
    return 2;
  }
  return start_query(L, tx->m, t, tx, 2, "tx:query");
}

/* begin(): pin a connection, START TRANSACTION, return the tx userdata. */
static void begin_fail(op_t *op, const char *err, unsigned int errnum) {
  fcfs_task_t *t = op->task;
  tx_t *tx = op->tx;
  tx->op = NULL;
  free(op);
  tx_end(tx, 0);
  lua_State *T = fcfs_task_thread(t);
  lua_pushnil(T);
  lua_pushstring(T, err);
  int n = 2;
  if (errnum) {
    lua_pushinteger(T, (lua_Integer)errnum);
    n = 3;
  }
  fcfs_task_resume(t, n);
}

static void on_begun(void *arg, const fcfs_mysql_result_t *r) {
  op_t *op = arg;
  if (r->err) {
    begin_fail(op, r->err, r->errnum);
    return;
  }
  fcfs_task_t *t = op->task;
  tx_t *tx = op->tx;
  tx->op = NULL;
  free(op);
  lua_State *T = fcfs_task_thread(t);
  tx_t **ud = lua_newuserdata(T, sizeof(*ud));
  *ud = tx;
  tx->has_ud = 1;
  luaL_getmetatable(T, TX_MT);
  lua_setmetatable(T, -2);
  fcfs_task_resume(t, 1);
}

static void on_acquired(void *arg, fcfs_mysql_conn_t *conn, const char *err, unsigned int errnum) {
  op_t *op = arg;
  tx_t *tx = op->tx;
  op->req = NULL;
  if (!conn) {
    begin_fail(op, err, errnum);
    return;
  }
  tx->conn = conn;
  op->kind = K_BEGIN;
  int rc = fcfs_mysql_query(tx->m, conn, "START TRANSACTION", 17, NULL, 0,
                            op_timeout(tx->m, op->task), on_begun, op, &op->req);
  if (rc < 0) begin_fail(op, fcfs_mysql_strerror(rc), 0);
}

static int l_begin(lua_State *L) {
  fcfs_mysql_t *m = lua_touserdata(L, lua_upvalueindex(1));
  fcfs_task_t *t = fcfs_task_require(L, "host.mysql.tx");
  tx_t *tx = calloc(1, sizeof(*tx));
  op_t *op = calloc(1, sizeof(*op));
  if (!tx || !op || fcfs_task_on_end(t, tx_on_end, tx) != 0) {
    free(tx);
    free(op);
    return luaL_error(L, "host.mysql.tx: out of memory");
  }
  tx->m = m;
  tx->task = t;
  tx->registered = 1;
  op->task = t;
  op->tx = tx;
  op->kind = K_ACQUIRE;
  int rc = fcfs_mysql_acquire(m, op_timeout(m, t), on_acquired, op, &op->req);
  if (rc < 0) {
    free(op);
    return tx_fail(L, tx, fcfs_mysql_strerror(rc));
  }
  tx->op = op;
  return fcfs_task_wait(L, t, op, op_cancel);
}

/* finish(tx, commit): COMMIT or ROLLBACK, then give the connection back. */
static void on_finished(void *arg, const fcfs_mysql_result_t *r) {
  op_t *op = arg;
  fcfs_task_t *t = op->task;
  tx_t *tx = op->tx;
  int commit = op->commit;
  tx->op = NULL;
  free(op);
  tx_end(tx, r->err == NULL && commit);
  lua_State *T = fcfs_task_thread(t);
  if (r->err) {
    fcfs_mysql_result_t e = *r;
    fcfs_task_resume(t, push_result(T, &e));
    return;
  }
  lua_pushboolean(T, 1);
  fcfs_task_resume(t, 1);
}

static int l_finish(lua_State *L) {
  fcfs_task_t *t = fcfs_task_require(L, "host.mysql.tx");
  tx_t *tx = check_tx(L, 1, t);
  int commit = lua_toboolean(L, 2);
  if (!fcfs_mysql_conn_ok(tx->conn)) return tx_fail(L, tx, fcfs_mysql_e_closed);
  op_t *op = calloc(1, sizeof(*op));
  if (!op) return luaL_error(L, "host.mysql.tx: out of memory");
  op->task = t;
  op->tx = tx;
  op->kind = K_FINISH;
  op->commit = commit;
  const char *sql = commit ? "COMMIT" : "ROLLBACK";
  int rc = fcfs_mysql_query(tx->m, tx->conn, sql, strlen(sql), NULL, 0, op_timeout(tx->m, t),
                            on_finished, op, &op->req);
  if (rc < 0) {
    free(op);
    return tx_fail(L, tx, fcfs_mysql_strerror(rc));
  }
  tx->op = op;
  return fcfs_task_wait(L, t, op, op_cancel);
}

/* tx(fn): begin, pcall(fn, tx) (fn may yield), commit and return fn's
 * values; on an error roll back and re-raise the very same error value. */
static const char tx_lua[] =
    "local begin, finish, pcall, error, select, unpack, type = ...\n"
    "local function pack(...) return { n = select('#', ...), ... } end\n"
    "return function(fn)\n"
    "  if type(fn) ~= 'function' then error('host.mysql.tx: a function expected', 2) end\n"
    "  local tx, err, errno = begin()\n"
    "  if not tx then return nil, err, errno end\n"
    "  local res = pack(pcall(fn, tx))\n"
    "  if not res[1] then\n"
    "    finish(tx, false)\n"
    "    error(res[2], 0)\n"
    "  end\n"
    "  local ok, cerr, cerrno = finish(tx, true)\n"
    "  if not ok then return nil, cerr, cerrno end\n"
    "  return unpack(res, 2, res.n)\n"
    "end\n";

int fcfs_lapi_mysql_open(lua_State *L, fcfs_mysql_t *m) {
  if (luaL_newmetatable(L, ROWS_MT)) {
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, TX_MT)) {
    lua_pushcfunction(L, tx_gc);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_tx_query);
    lua_setfield(L, -2, "query");
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "fcfs.mysql.tx");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);

  lua_createtable(L, 0, 2);
  lua_pushlightuserdata(L, m);
  lua_pushcclosure(L, l_query, 1);
  lua_setfield(L, -2, "query");

  if (luaL_loadbuffer(L, tx_lua, sizeof(tx_lua) - 1, "=host.mysql.tx") != 0) return lua_error(L);
  lua_pushlightuserdata(L, m);
  lua_pushcclosure(L, l_begin, 1);
  lua_pushcfunction(L, l_finish);
  lua_getglobal(L, "pcall");
  lua_getglobal(L, "error");
  lua_getglobal(L, "select");
  lua_getglobal(L, "unpack");
  lua_getglobal(L, "type");
  lua_call(L, 7, 1);
  lua_setfield(L, -2, "tx");
  return 1;
}
