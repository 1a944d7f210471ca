/* test_mysql.c -- the MySQL pool (mysql.c) and migrations (migrate.c)
 * against a real mariadbd, printing TAP.
 *
 * Always starts a throwaway server under a temp dir with mysql_tmp.sh (next
 * to this file), listening on a unix socket and a free loopback port, and
 * stops it at the end, whatever FCFS_TEST_MYSQL_* say: the TCP and
 * circuit-breaker checks (which stop and restart it) need a server nobody
 * else uses. Everything goes through the C API on a uv loop.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "conf.h"
#include "migrate.h"
#include "mysql.h"
#include "tap.h"

static uv_loop_t loop;
/* Pooled connections stay watched between statements (active handles), so a
 * UV_RUN_ONCE whose callbacks all ran in its timer phase would then wait in
 * epoll for the next event; this unreferenced tick bounds that wait. */
static uv_timer_t tick;
static char tmpdir[256];
static char sockpath[320];
static char script[512];
static const char *user = "root";
static const char *password = "";

/* ---- running statements synchronously ---------------------------------- */

#define MAXCOL 8
typedef struct {
  int done;
  const char *err; /* pointer kept only when static */
  char errtext[512];
  unsigned int errnum;
  int nrows, ncols;
  char *v[MAXCOL]; /* first row, NULL for SQL NULL */
  int type[MAXCOL];
  uint64_t affected, insert_id;
} qres_t;

static void qres_clear(qres_t *q) {
  for (int i = 0; i < MAXCOL; i++)
    free(q->v[i]);
  memset(q, 0, sizeof(*q));
}

static void on_q(void *arg, const fcfs_mysql_result_t *r) {
  qres_t *q = arg;
  q->done = 1;
  q->err = r->err;
  q->errnum = r->errnum;
  if (r->err) snprintf(q->errtext, sizeof(q->errtext), "%s", r->err);
  q->affected = r->affected_rows;
  q->insert_id = r->insert_id;
  if (r->res) {
    q->nrows = (int)mysql_num_rows(r->res);
    q->ncols = (int)mysql_num_fields(r->res);
    MYSQL_FIELD *f = mysql_fetch_fields(r->res);
    MYSQL_ROW row = mysql_fetch_row(r->res);
    unsigned long *len = row ? mysql_fetch_lengths(r->res) : NULL;
    for (int i = 0; i < q->ncols && i < MAXCOL; i++) {
      q->type[i] = f[i].type;
      if (row && row[i]) {
        q->v[i] = malloc(len[i] + 1);
        memcpy(q->v[i], row[i], len[i]);
        q->v[i][len[i]] = '\0';
      }
    }
  }
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static void spin(int *done) {
  while (!*done)
    uv_run(&loop, UV_RUN_ONCE);
}

static int query(fcfs_mysql_t *m, fcfs_mysql_conn_t *c, const char *sql,
                 const fcfs_mysql_param_t *p, int n, double timeout, qres_t *q) {
  qres_clear(q);
  int rc = fcfs_mysql_query(m, c, sql, strlen(sql), p, n, timeout, on_q, q, NULL);
  if (rc == 0) spin(&q->done);
  return rc;
}

static int q_ok(fcfs_mysql_t *m, const char *sql) {
  qres_t q = {0};
  int rc = query(m, NULL, sql, NULL, 0, 5, &q);
  int ok = rc == 0 && q.err == NULL;
  if (!ok) printf("# %s: rc=%d %s\n", sql, rc, q.errtext);
  qres_clear(&q);
  return ok;
}

static long conn_id(fcfs_mysql_t *m, fcfs_mysql_conn_t *c) {
  qres_t q = {0};
  long id = -1;
  if (query(m, c, "SELECT CONNECTION_ID()", NULL, 0, 5, &q) == 0 && !q.err && q.v[0])
    id = atol(q.v[0]);
  qres_clear(&q);
  return id;
}

static void sleep_loop(double s) {
  uv_update_time(&loop);
  uint64_t until = uv_now(&loop) + (uint64_t)(s * 1000);
  while (uv_now(&loop) < until) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(5000);
    uv_update_time(&loop);
  }
}

static fcfs_mysql_opts_t base_opts(void) {
  fcfs_mysql_opts_t o;
  memset(&o, 0, sizeof(o));
  o.host = "127.0.0.1";
  o.socket = sockpath;
  o.user = user;
  o.password = password;
  o.database = "fcfs_ctest";
  o.pool_size = 4;
  o.queue_size = 16;
  o.wait_timeout = 2;
  o.connect_timeout = 2;
  o.query_timeout = 5;
  o.breaker_failures = 3;
  o.breaker_cooldown = 1;
  return o;
}

static void pool_free(fcfs_mysql_t *m) {
  fcfs_mysql_free(m);
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int server(const char *cmd) {
  char buf[1024];
  snprintf(buf, sizeof(buf), "sh '%s' %s '%s'", script, cmd, tmpdir);
  int rc = system(buf);
  uv_update_time(&loop); /* the loop was blocked meanwhile */
  return rc;
}

static fcfs_mysql_param_t pstr(const char *s) {
  fcfs_mysql_param_t p = {FCFS_MYSQL_PSTR, 0, 0, s, strlen(s)};
  return p;
}
static fcfs_mysql_param_t pint(long long i) {
  fcfs_mysql_param_t p = {FCFS_MYSQL_PINT, i, 0, NULL, 0};
  return p;
}
static fcfs_mysql_param_t pnull(void) {
  fcfs_mysql_param_t p = {FCFS_MYSQL_PNULL, 0, 0, NULL, 0};
  return p;
}

/* ---- tests -------------------------------------------------------------- */

static void test_types(void) {
  fcfs_mysql_opts_t o = base_opts();
  o.database = "";
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, NULL);
  CHECK(q_ok(m, "DROP DATABASE IF EXISTS fcfs_ctest") && q_ok(m, "CREATE DATABASE fcfs_ctest"),
        "connect by unix socket, create a database");
  pool_free(m);

  fcfs_pool_stats_t st;
  o = base_opts();
  m = fcfs_mysql_new(&loop, &o, &st);
  CHECK(q_ok(m, "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT, big BIGINT UNSIGNED,"
                " d DECIMAL(10,2), dt DATETIME, s VARCHAR(200), nul INT NULL, f DOUBLE,"
                " UNIQUE KEY (s)) DEFAULT CHARSET=utf8mb4"),
        "create a table");
  const char *korean =
      "\xec\x95\x88\xeb\x85\x95\xed\x95\x98\xec\x84\xb8\xec\x9a\x94 \xf0\x9f\x8d\xa3";
  fcfs_mysql_param_t p[7] = {pint(-42),
                             pstr("18446744073709551615"),
                             pstr("12.34"),
                             pstr("2024-01-02 03:04:05"),
                             pstr(korean),
                             pnull(),
                             {FCFS_MYSQL_PDOUBLE, 0, 1.5, NULL, 0}};
  qres_t q = {0};
  int rc = query(m, NULL, "INSERT INTO t (n, big, d, dt, s, nul, f) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 p, 7, 0, &q);
  CHECK(rc == 0 && !q.err && q.affected == 1 && q.insert_id == 1,
        "insert with placeholders: affected_rows, insert_id");
  rc = query(m, NULL, "SELECT n, big, d, dt, s, nul, f FROM t WHERE s = ?", &p[4], 1, 0, &q);
  CHECK(rc == 0 && !q.err && q.nrows == 1, "select it back by the Korean text");
  CHECK(q.v[0] && strcmp(q.v[0], "-42") == 0 && q.type[0] == MYSQL_TYPE_LONG, "INT");
  CHECK(q.v[1] && strcmp(q.v[1], "18446744073709551615") == 0 && q.type[1] == MYSQL_TYPE_LONGLONG,
        "BIGINT UNSIGNED max");
  CHECK(q.v[2] && strcmp(q.v[2], "12.34") == 0 && q.type[2] == MYSQL_TYPE_NEWDECIMAL, "DECIMAL");
  CHECK(q.v[3] && strcmp(q.v[3], "2024-01-02 03:04:05") == 0 && q.type[3] == MYSQL_TYPE_DATETIME,
        "DATETIME");
  CHECK(q.v[4] && strcmp(q.v[4], korean) == 0, "utf8mb4 Korean + emoji round trip");
  CHECK(q.ncols == 7 && q.v[5] == NULL, "NULL from host.null");
  CHECK(q.v[6] && strcmp(q.v[6], "1.5") == 0 && q.type[6] == MYSQL_TYPE_DOUBLE, "DOUBLE");

  const char *nasty[] = {"it's",          "back\\slash\\", "'; DROP TABLE t; --",
                         "\"dq\" `bt` ?", "a\\'b",         "nul\x01z"};
  int verbatim = 1;
  for (int i = 0; i < 6; i++) {
    fcfs_mysql_param_t v = pstr(nasty[i]);
    rc = query(m, NULL, "INSERT INTO t (s) VALUES (?)", &v, 1, 0, &q);
    verbatim &= rc == 0 && !q.err;
    rc = query(m, NULL, "SELECT s FROM t WHERE s = ?", &v, 1, 0, &q);
    verbatim &= rc == 0 && !q.err && q.nrows == 1 && q.v[0] && strcmp(q.v[0], nasty[i]) == 0;
  }
  CHECK(verbatim, "quotes, backslashes and '; DROP TABLE t; -- stored verbatim");
  rc = query(m, NULL, "SELECT COUNT(*) FROM t", NULL, 0, 0, &q);
  CHECK(rc == 0 && q.v[0] && strcmp(q.v[0], "7") == 0, "table still there with every row");

  fcfs_mysql_param_t two[2] = {pint(1), pint(2)};
  CHECK(query(m, NULL, "SELECT ?", two, 2, 0, &q) == FCFS_MYSQL_EARGS &&
            query(m, NULL, "SELECT ?, ?", two, 1, 0, &q) == FCFS_MYSQL_EARGS,
        "placeholder count mismatch refused");
  const char *tricky = "SELECT '?', \"?\", `?`, ? -- ?\n /* ? */ # ?\n, ?";
  CHECK(fcfs_mysql_count_placeholders(tricky, strlen(tricky)) == 2,
        "? inside literals and comments is not a placeholder");
  rc = query(m, NULL, "SELECT 'it''s ?', ? AS x", two, 1, 0, &q);
  CHECK(rc == 0 && !q.err && q.v[0] && strcmp(q.v[0], "it's ?") == 0 && q.v[1] &&
            strcmp(q.v[1], "1") == 0,
        "literal with ? left alone, placeholder after it filled");

  fcfs_mysql_param_t dup = pstr("it's");
  rc = query(m, NULL, "INSERT INTO t (s) VALUES (?)", &dup, 1, 0, &q);
  CHECK(rc == 0 && q.err && q.errnum == 1062, "duplicate key -> errnum 1062");
  rc = query(m, NULL, "SELEC nonsense", NULL, 0, 0, &q);
  CHECK(rc == 0 && q.err && q.errnum == 1064 && strstr(q.errtext, "syntax"),
        "syntax error text and code");
  CHECK(q_ok(m, "SELECT 1"), "connection still usable after server errors");
  CHECK(st.requests >= 10 && st.errors == 0 && st.up == 1 && st.circuit == FCFS_CIRCUIT_CLOSED,
        "stats: requests counted, no transport errors, up, circuit closed");
  qres_clear(&q);
  pool_free(m);
}

static void test_tcp(int port) {
  fcfs_mysql_opts_t o = base_opts();
  o.socket = "";
  o.port = port;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, NULL);
  qres_t q = {0};
  int rc = query(m, NULL, "SELECT @@port", NULL, 0, 0, &q);
  char want[16];
  snprintf(want, sizeof(want), "%d", port);
  CHECK(rc == 0 && !q.err && q.v[0] && strcmp(q.v[0], want) == 0, "connect by IP and port");
  qres_clear(&q);
  pool_free(m);
}

static void test_exhausted(void) {
  fcfs_pool_stats_t st;
  fcfs_mysql_opts_t o = base_opts();
  o.pool_size = 1;
  o.queue_size = 1;
  o.wait_timeout = 0.2;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, &st);
  qres_t a = {0}, b = {0}, c = {0};
  CHECK(q_ok(m, "SELECT 1") && st.size == 1 && st.in_use == 0, "pool of one, warm");
  CHECK(fcfs_mysql_query(m, NULL, "SELECT SLEEP(1)", 15, NULL, 0, 5, on_q, &a, NULL) == 0 &&
            fcfs_mysql_query(m, NULL, "SELECT 2", 8, NULL, 0, 5, on_q, &b, NULL) == 0,
        "second caller queued behind the only connection");
  CHECK(st.waiting == 1 && st.in_use == 1, "stats: one in use, one waiting");
  CHECK(fcfs_mysql_query(m, NULL, "SELECT 3", 8, NULL, 0, 5, on_q, &c, NULL) == FCFS_MYSQL_EBUSY,
        "queue full -> busy at once");
  spin(&b.done);
  CHECK(b.err == fcfs_mysql_e_timeout && !a.done,
        "queued caller -> timeout while the pool is exhausted");
  spin(&a.done);
  CHECK(!a.err && a.v[0] && strcmp(a.v[0], "0") == 0, "the long query still finished");
  CHECK(st.timeouts == 1 && st.waits >= 2 && st.waiting == 0, "stats: timeouts, waits");
  qres_clear(&a);
  qres_clear(&b);
  pool_free(m);
}

static double mono(void) {
  uv_update_time(&loop);
  return (double)uv_now(&loop) / 1000.0;
}

/* Statements running on the server that match like (other than ours). */
static int running(fcfs_mysql_t *m, const char *like) {
  qres_t q = {0};
  fcfs_mysql_param_t p = pstr(like);
  int n = -1;
  if (query(m, NULL,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND "
            "ID <> CONNECTION_ID()",
            &p, 1, 0, &q) == 0 &&
      q.v[0])
    n = atoi(q.v[0]);
  qres_clear(&q);
  return n;
}

/* A statement whose caller is gone (timeout, cancel) is stopped with KILL
 * QUERY and its connection pooled again, reset: no reconnect. */
static void test_abandoned(void) {
  fcfs_pool_stats_t st;
  fcfs_mysql_opts_t o = base_opts();
  o.pool_size = 1;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, &st);
  qres_t q = {0};
  CHECK(q_ok(m, "SET @marker = 42"), "session variable set");
  long id1 = conn_id(m, NULL);
  uint64_t connects = st.connects;
  double t0 = mono();
  int rc = query(m, NULL, "SELECT SLEEP(5) AS ct_abandoned", NULL, 0, 0.2, &q);
  CHECK(rc == 0 && q.err == fcfs_mysql_e_timeout, "SLEEP(5) with a 0.2 s timeout -> timeout");
  rc = query(m, NULL, "SELECT CONNECTION_ID(), @marker", NULL, 0, 0, &q);
  double took = mono() - t0;
  CHECK(rc == 0 && !q.err && q.v[0] && atol(q.v[0]) == id1 && q.v[1] == NULL,
        "timed-out statement killed: its connection serves the next query, reset");
  printf("# timeout + next query took %.3f s\n", took);
  CHECK(took < 1.0, "...at once, not after the 5 s statement");
  CHECK(st.timeouts == 1 && st.size == 1 && st.connects == connects + 1,
        "stats: one timeout, one pooled connection, only the side connection was opened");

  /* cancelled mid-flight */
  fcfs_mysql_req_t *req = NULL;
  qres_t c = {0};
  t0 = mono();
  rc =
      fcfs_mysql_query(m, NULL, "SELECT SLEEP(5) AS ct_cancelled", 31, NULL, 0, 10, on_q, &c, &req);
  sleep_loop(0.05);
  fcfs_mysql_cancel(req);
  long id3 = conn_id(m, NULL);
  took = mono() - t0;
  CHECK(rc == 0 && !c.done && id3 == id1 && took < 1.0,
        "cancelled statement: killed, callback never called, connection reused");
  CHECK(running(m, "%ct\\_abandoned%") == 0 && running(m, "%ct\\_cancelled%") == 0,
        "no abandoned statement still runs on the server");
  CHECK(st.connects == connects + 1, "still no reconnect");

  /* many abandoned at once on a pool of 8 */
  fcfs_mysql_free(m);
  uv_run(&loop, UV_RUN_DEFAULT);
  o.pool_size = 8;
  o.queue_size = 64;
  m = fcfs_mysql_new(&loop, &o, &st);
  q_ok(m, "SELECT 1");
  connects = st.connects;
  fcfs_mysql_req_t *reqs[40];
  qres_t many[40];
  memset(many, 0, sizeof(many));
  for (int i = 0; i < 40; i++)
    fcfs_mysql_query(m, NULL, "SELECT SLEEP(5) AS ct_many", 26, NULL, 0, 10, on_q, &many[i],
                     &reqs[i]);
  t0 = mono();
  for (int i = 0; i < 40; i++) {
    sleep_loop(0.01);
    fcfs_mysql_cancel(reqs[i]);
  }
  int called = 0;
  for (int i = 0; i < 40; i++)
    called += many[i].done;
  CHECK(q_ok(m, "SELECT 1") && called == 0 && mono() - t0 < 2.0,
        "40 cancelled statements on a pool of 8: none answered, pool serves again");
  while (st.in_use > 0) /* every abandoned one back */
    uv_run(&loop, UV_RUN_ONCE);
  CHECK(st.connects <= connects + 8 && running(m, "%ct\\_many%") == 0,
        "...at most the pool's 7 new connections and the side one, nothing left running");

  /* batches that all time out while running, each batch right after the last */
  connects = st.connects;
  uint64_t req0 = st.requests;
  int timeouts = 0;
  for (int b = 0; b < 25; b++) {
    for (int i = 0; i < 8; i++)
      fcfs_mysql_query(m, NULL, "SELECT SLEEP(1) AS ct_batch", 27, NULL, 0, 0.2, on_q, &many[i],
                       NULL);
    for (int i = 0; i < 8; i++) {
      spin(&many[i].done);
      timeouts += many[i].err == fcfs_mysql_e_timeout;
      qres_clear(&many[i]);
    }
    while (st.in_use > 0) /* the abandoned ones come back */
      uv_run(&loop, UV_RUN_ONCE);
  }
  printf("# 200 timed out: %d, started %d, connects %d\n", timeouts, (int)(st.requests - req0),
         (int)(st.connects - connects));
  CHECK(timeouts == 200 && st.requests - req0 == 200 && st.connects == connects &&
            running(m, "%ct\\_batch%") == 0,
        "25 batches of 8 statements timed out mid-SLEEP: no reconnect, nothing left running");
  qres_clear(&q);
  pool_free(m);
}

typedef struct {
  int done;
  fcfs_mysql_conn_t *conn;
  const char *err;
} acq_t;

static void on_acq(void *arg, fcfs_mysql_conn_t *conn, const char *err, unsigned int errnum) {
  acq_t *a = arg;
  a->done = 1;
  a->conn = conn;
  a->err = err;
}

static void on_other_readable(uv_poll_t *p, int status, int events) {
  char b[8];
  if (read(p->io_watcher.fd, b, sizeof(b)) > 0) ++*(int *)p->data;
}

static fcfs_mysql_conn_t *acquire(fcfs_mysql_t *m) {
  acq_t a = {0};
  if (fcfs_mysql_acquire(m, 5, on_acq, &a, NULL) != 0) return NULL;
  spin(&a.done);
  return a.conn;
}

/* Session state left by one statement never reaches the next caller: the
 * connection is reset (not replaced) before it is pooled again. */
static void test_session_reset(void) {
  fcfs_mysql_opts_t o = base_opts();
  o.pool_size = 1;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, NULL);
  qres_t q = {0};
  long id = conn_id(m, NULL);
  CHECK(q_ok(m, "SELECT GET_LOCK('ct_lock', 0)") && q_ok(m, "SELECT 7 INTO @into") &&
            q_ok(m, "SELECT @assigned := 8") && q_ok(m, "SET @v = 1") &&
            q_ok(m, "CREATE TEMPORARY TABLE ct_tmp (a INT)") &&
            q_ok(m, "SET SESSION sql_mode = ''"),
        "lock, user variables, temporary table, session setting, one statement each");
  int rc = query(m, NULL,
                 "SELECT IS_USED_LOCK('ct_lock'), IS_FREE_LOCK('ct_lock'), @into, @assigned, @v, "
                 "@@sql_mode <> '', CONNECTION_ID()",
                 NULL, 0, 0, &q);
  CHECK(rc == 0 && !q.err && !q.v[0] && q.v[1] && !strcmp(q.v[1], "1") && !q.v[2] && !q.v[3] &&
            !q.v[4] && q.v[5] && !strcmp(q.v[5], "1"),
        "the next statement sees none of it");
  CHECK(q.v[6] && atol(q.v[6]) == id, "on the same connection: reset, not reconnected");
  rc = query(m, NULL, "SELECT * FROM ct_tmp", NULL, 0, 0, &q);
  CHECK(rc == 0 && q.errnum == 1146, "the temporary table is gone");
  fcfs_mysql_conn_t *c = acquire(m);
  rc = query(m, c, "SET @in_tx = 1", NULL, 0, 0, &q);
  rc |= query(m, c, "SELECT @in_tx", NULL, 0, 0, &q);
  CHECK(rc == 0 && q.v[0] && !strcmp(q.v[0], "1"), "a pinned connection keeps its session");
  fcfs_mysql_release(c, 1);
  rc = query(m, NULL, "SELECT @in_tx, CONNECTION_ID()", NULL, 0, 0, &q);
  CHECK(rc == 0 && !q.v[0] && q.v[1] && atol(q.v[1]) == id, "...until it is released");
  qres_clear(&q);
  pool_free(m);
}

static void test_pinned(void) {
  fcfs_mysql_opts_t o = base_opts();
  o.pool_size = 2;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, NULL);
  qres_t q = {0};
  CHECK(q_ok(m, "CREATE TABLE tx (id INT PRIMARY KEY) ENGINE=InnoDB"), "tx table");
  fcfs_mysql_conn_t *c = acquire(m);
  long pid = conn_id(m, c);
  fcfs_mysql_param_t one = pint(1), two = pint(2);
  int rc = query(m, c, "START TRANSACTION", NULL, 0, 0, &q);
  rc |= query(m, c, "INSERT INTO tx VALUES (?)", &one, 1, 0, &q);
  rc |= query(m, c, "COMMIT", NULL, 0, 0, &q);
  CHECK(c && rc == 0 && !q.err, "pinned connection: begin, insert, commit");
  fcfs_mysql_release(c, 1);
  c = acquire(m);
  CHECK(c && conn_id(m, c) == pid, "clean connection went back to the pool and is reused");
  rc = query(m, c, "START TRANSACTION", NULL, 0, 0, &q);
  rc |= query(m, c, "INSERT INTO tx VALUES (?)", &two, 1, 0, &q);
  CHECK(rc == 0 && !q.err, "second transaction left open");
  fcfs_mysql_release(c, 1);
  rc = query(m, NULL, "SELECT COUNT(*), MAX(id) FROM tx", NULL, 0, 0, &q);
  CHECK(rc == 0 && q.v[0] && strcmp(q.v[0], "1") == 0,
        "released with an open transaction: rolled back");
  CHECK(conn_id(m, NULL) != pid, "...and that connection was closed, not pooled");

  c = acquire(m);
  char was_open[256];
  for (int fd = 0; fd < 256; fd++)
    was_open[fd] = fcntl(fd, F_GETFD) != -1;
  rc = query(m, c, "SELECT SLEEP(2)", NULL, 0, 0.1, &q);
  CHECK(rc == 0 && q.err == fcfs_mysql_e_timeout && !fcfs_mysql_conn_ok(c),
        "timeout on a pinned connection closes it");
  CHECK(query(m, c, "SELECT 1", NULL, 0, 0, &q) == FCFS_MYSQL_ECLOSED,
        "later statements on it: closed");
  /* its fd number is free now: a new socket gets it; releasing the dead
   * connection must not touch that socket's epoll registration */
  int sp[2], freed = -1;
  uv_poll_t other;
  int fired = 0;
  for (int fd = 0; fd < 256; fd++)
    if (was_open[fd] && fcntl(fd, F_GETFD) == -1) freed = fd;
  socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
  if (freed >= 0 && sp[0] != freed && dup2(sp[0], freed) == freed) {
    close(sp[0]);
    sp[0] = freed;
  }
  CHECK(freed >= 0 && sp[0] == freed, "the killed connection's fd was closed and is reused");
  uv_poll_init(&loop, &other, sp[0]);
  other.data = &fired;
  uv_poll_start(&other, UV_READABLE, on_other_readable);
  uv_run(&loop, UV_RUN_NOWAIT); /* registered with epoll now */
  fcfs_mysql_release(c, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  if (write(sp[1], "x", 1) != 1) fired = -1;
  sleep_loop(0.1);
  CHECK(fired == 1, "a socket that reused the killed connection's fd keeps its events");
  uv_close((uv_handle_t *)&other, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  close(sp[0]);
  close(sp[1]);
  CHECK(q_ok(m, "SELECT 1"), "pool fine afterwards");
  qres_clear(&q);
  pool_free(m);
}

/* A connection the server closes while nobody uses it (restart, shutdown,
 * wait_timeout, KILL) leaves the pool at once: the next caller is not handed
 * a dead socket and its statement does not fail with "gone away". */
static void test_server_closed(void) {
  fcfs_pool_stats_t st;
  fcfs_mysql_opts_t o = base_opts();
  o.pool_size = 1;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, &st);
  fcfs_mysql_t *admin = fcfs_mysql_new(&loop, &o, NULL);
  qres_t q = {0};
  char kill[64];
  long idle = conn_id(m, NULL);
  snprintf(kill, sizeof(kill), "KILL CONNECTION %ld", idle);
  CHECK(idle > 0 && st.size == 1 && q_ok(admin, kill), "the pooled connection killed server-side");
  sleep_loop(0.2);
  CHECK(st.size == 0 && st.errors == 1, "it left the pool when its socket turned readable");
  long fresh = conn_id(m, NULL);
  CHECK(fresh > 0 && fresh != idle, "the next statement works, on a new connection");

  fcfs_mysql_conn_t *c = acquire(m);
  snprintf(kill, sizeof(kill), "KILL CONNECTION %ld", conn_id(m, c));
  CHECK(q_ok(admin, kill), "a pinned connection killed server-side");
  sleep_loop(0.2);
  CHECK(!fcfs_mysql_conn_ok(c) && query(m, c, "SELECT 1", NULL, 0, 0, &q) == FCFS_MYSQL_ECLOSED,
        "its owner's next statement: closed at once");
  fcfs_mysql_release(c, 1);
  CHECK(q_ok(m, "SELECT 1"), "pool fine afterwards");
  qres_clear(&q);
  fcfs_mysql_free(admin); /* pool_free runs the loop until both are gone */
  pool_free(m);
}

static void test_breaker(void) {
  fcfs_pool_stats_t st;
  fcfs_mysql_opts_t o = base_opts();
  o.breaker_failures = 2;
  o.breaker_cooldown = 0.3;
  o.pool_size = 2;
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, &st);
  CHECK(q_ok(m, "SELECT 1") && st.size == 1, "warm connection");
  CHECK(server("stop") == 0, "server stopped");
  qres_t q = {0};
  int rc1 = query(m, NULL, "SELECT 1", NULL, 0, 0, &q);
  int e1 = rc1 == 0 && q.err && q.errnum >= 2000 && q.errnum < 3000;
  int rc2 = query(m, NULL, "SELECT 1", NULL, 0, 0, &q);
  int e2 = rc2 == 0 && q.err && q.errnum >= 2000 && q.errnum < 3000;
  printf("# errors while down: %s\n", q.errtext);
  CHECK(e1 && e2, "server down: transport/connect errors with client error codes");
  CHECK(st.circuit == FCFS_CIRCUIT_OPEN && st.up == 0, "circuit open after 2 failures");
  CHECK(query(m, NULL, "SELECT 1", NULL, 0, 0, &q) == FCFS_MYSQL_EUNAVAILABLE,
        "open circuit: unavailable at once");
  CHECK(server("start") == 0, "server restarted");
  sleep_loop(0.35);
  rc1 = query(m, NULL, "SELECT 1", NULL, 0, 0, &q);
  CHECK(rc1 == 0 && !q.err && st.circuit == FCFS_CIRCUIT_CLOSED && st.up == 1,
        "after the cooldown the half-open probe succeeds and closes the circuit");
  qres_clear(&q);
  pool_free(m);
}

/* ---- migrations ----------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static int migrate(fcfs_conf_t *c, const char *arg) {
  char *argv[2] = {(char *)arg, NULL};
  fflush(stdout);
  int saved = dup(1);
  FILE *devnull = fopen("/dev/null", "w");
  dup2(fileno(devnull), 1);
  int code = fcfs_migrate_main(c, arg ? 1 : 0, argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  fclose(devnull);
  return code;
}

static void test_migrations(void) {
  char dir[300];
  snprintf(dir, sizeof(dir), "%s/migrations", tmpdir);
  mkdir(dir, 0700);
  write_file(dir, "0001_items.sql",
             "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50));\n"
             "INSERT INTO items VALUES (1, 'a;b'), (2, 'c');\n");
  write_file(dir, "0002_more.sql", "INSERT INTO items VALUES (3, 'd');");
  write_file(dir, "README", "not a migration");
  fcfs_conf_t c;
  memset(&c, 0, sizeof(c));
  c.mysql_host = "127.0.0.1";
  c.mysql_socket = sockpath;
  c.mysql_user = (char *)user;
  c.mysql_password = (char *)password;
  c.mysql_database = "fcfs_ctest";
  c.mysql_connect_timeout = 2;
  c.migrations_dir = dir;

  CHECK(migrate(&c, "status") == 0, "status on an empty database");
  CHECK(migrate(&c, NULL) == 0, "apply two migrations");
  fcfs_mysql_opts_t o = base_opts();
  fcfs_mysql_t *m = fcfs_mysql_new(&loop, &o, NULL);
  qres_t q = {0};
  query(m, NULL,
        "SELECT COUNT(*), GROUP_CONCAT(version ORDER BY version), MIN(LENGTH(checksum)) "
        "FROM schema_migrations",
        NULL, 0, 0, &q);
  CHECK(q.v[0] && strcmp(q.v[0], "2") == 0 && q.v[1] && strcmp(q.v[1], "1,2") == 0 && q.v[2] &&
            strcmp(q.v[2], "64") == 0,
        "recorded in order with sha256 checksums");
  query(m, NULL, "SELECT COUNT(*) FROM items", NULL, 0, 0, &q);
  CHECK(q.v[0] && strcmp(q.v[0], "3") == 0, "multi-statement file ran completely");
  CHECK(migrate(&c, NULL) == 0, "re-run applies nothing");
  write_file(dir, "0003_bad.sql",
             "INSERT INTO items VALUES (4, 'e'); INSERT INTO nope VALUES (1);");
  CHECK(migrate(&c, NULL) == 1, "failing migration -> exit 1");
  query(m, NULL, "SELECT COUNT(*) FROM items", NULL, 0, 0, &q);
  CHECK(q.v[0] && strcmp(q.v[0], "3") == 0, "failing migration rolled back");
  write_file(dir, "0003_bad.sql", "INSERT INTO items VALUES (4, 'e');");
  CHECK(migrate(&c, NULL) == 0, "fixed migration applied");
  write_file(dir, "0001_items.sql", "CREATE TABLE items (id INT PRIMARY KEY);\n");
  write_file(dir, "0004_next.sql", "INSERT INTO items VALUES (5, 'f');");
  CHECK(migrate(&c, NULL) == 1 && migrate(&c, "status") == 1, "changed checksum: refused");
  query(m, NULL, "SELECT COUNT(*) FROM schema_migrations", NULL, 0, 0, &q);
  CHECK(q.v[0] && strcmp(q.v[0], "3") == 0, "nothing applied after the refusal");
  write_file(dir, "0001_items.sql",
             "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50));\n"
             "INSERT INTO items VALUES (1, 'a;b'), (2, 'c');\n");
  char path[512];
  snprintf(path, sizeof(path), "%s/0002_more.sql", dir);
  unlink(path);
  CHECK(migrate(&c, NULL) == 1, "missing applied file: refused");
  CHECK(migrate(&c, "bogus") == 2, "unknown subcommand: usage");
  qres_clear(&q);
  pool_free(m);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  snprintf(script, sizeof(script), "%s", __FILE__);
  char *slash = strrchr(script, '/');
  snprintf(slash ? slash + 1 : script, sizeof(script) - (size_t)(slash ? slash + 1 - script : 0),
           "mysql_tmp.sh");
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/fcfs-test-mysql-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  snprintf(sockpath, sizeof(sockpath), "%s/mysql.sock", tmpdir);
  /* a free port for the TCP test: bind :0, read it, release it */
  uv_tcp_t t;
  struct sockaddr_in a;
  int len = sizeof(a);
  uv_tcp_init(&loop, &t);
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
  uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len);
  int port = ntohs(a.sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  char buf[1024];
  snprintf(buf, sizeof(buf), "sh '%s' start '%s' %d", script, tmpdir, port);
  if (system(buf) != 0) {
    printf("Bail out! could not start mariadbd (%s)\n", buf);
    return 1;
  }
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  uv_unref((uv_handle_t *)&tick);
  uv_update_time(&loop);
  test_types();
  test_tcp(port);
  test_exhausted();
  test_abandoned();
  test_pinned();
  test_session_reset();
  test_server_closed();
  test_breaker();
  test_migrations();
  server("stop");
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  snprintf(buf, sizeof(buf), "rm -rf '%s'", tmpdir);
  if (system(buf) != 0) nfail++;
  uv_loop_close(&loop);
  mysql_library_end();
  printf("1..%d\n", ntests);
  return nfail ? 1 : 0;
}
