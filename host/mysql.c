/* mysql.c -- the per-worker MySQL pool: connections driven by the MariaDB
 * Connector/C non-blocking API on libuv, a bounded FIFO of waiting callers,
 * placeholder filling, and a circuit breaker.
 *
 * Each connection (conn_t) is one connection attempt: a MYSQL, a uv_poll_t on
 * its socket, a timer for our own deadline of the operation in progress and
 * a timer for the timeouts the library asks for (MYSQL_WAIT_TIMEOUT). A
 * _start()/_cont() call returns the events it waits for; conn_step() arms the
 * poll/timer for them and, once the call reports completion, moves the
 * connection on (connect -> idle, query -> store result -> idle).
 *
 * A pooled statement whose caller is gone (timed out, cancelled) is
 * abandoned, not closed: a side connection (one per pool, not counted in
 * pool_size) sends KILL QUERY for it, its result is read and dropped, and
 * the connection is reset and pooled again once the KILL was answered (so
 * that the KILL cannot hit the next caller's statement). A connection whose
 * session state changed (SET, user variables, named locks, temporary tables)
 * is reset (COM_RESET_CONNECTION) before the next caller gets it.
 *
 * A connection whose state is in doubt -- a transport error, a statement on
 * a pinned connection timed out or cancelled, a transaction left open,
 * results left unread, an abandoned statement that did not end -- is
 * closed, never pooled: mid-operation with mariadb_cancel() + mysql_close()
 * (the socket is shut down, so nothing blocks), otherwise gracefully with
 * mysql_close_start(). Reconnection happens on demand. Between operations a
 * connection's socket stays watched for reading: the server sends nothing
 * then, so readable means it closed the connection (a restart, wait_timeout,
 * KILL), and the connection is dropped before a caller could be handed it.
 *
 * Callbacks never run inside an fcfs_mysql_* call: completions that happen
 * during one (a refusal to a waiter, a statement that failed at once) are put
 * on a ready list and delivered from a zero timer. The pool owns requests
 * and connections; a req is freed just before its callback runs (the result
 * set just after), a conn when libuv closed its handles, the pool itself
 * once fcfs_mysql_free() was called and every conn is gone.
 */
#include "mysql.h"

#include <ctype.h>
#include <mariadb/errmsg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "conf.h"

const char fcfs_mysql_e_timeout[] = "timeout";
const char fcfs_mysql_e_busy[] = "busy";
const char fcfs_mysql_e_unavailable[] = "unavailable";
const char fcfs_mysql_e_closed[] = "closed";
static const char e_nomem[] = "out of memory";
static const char e_args[] = "placeholder count does not match the values";
static const char e_inuse[] = "connection busy";

enum { OP_NONE, OP_CONNECT, OP_QUERY, OP_STORE, OP_CLOSE, OP_RESET, OP_INIT };
enum { REQ_QUERY, REQ_ACQUIRE };

#define CLOSE_TIMEOUT_MS 1000
#define RESET_TIMEOUT_MS 1000
/* A KILL QUERY is answered at once, except that MariaDB keeps trying for up
 * to 2 s to wake a thread waiting on a condition (SLEEP, locks); past
 * KILL_TIMEOUT_MS a fresh side connection sends it again. An abandoned
 * statement must have ended DRAIN_TIMEOUT_MS after it was abandoned, or its
 * connection is closed. */
#define KILL_TIMEOUT_MS 3000
#define DRAIN_TIMEOUT_MS 5000
#define KILL_TRIES 2

/* Run on every new connection and again after each reset: the server then
 * flags statements that change session state (SERVER_SESSION_STATE_CHANGED);
 * times (NOW(), TIMESTAMP columns) are UTC whatever the server's zone. */
static const char init_sql[] = "SET session_track_state_change = ON, time_zone = '+00:00'";

struct fcfs_mysql_conn_s {
  fcfs_mysql_t *m;
  MYSQL my;
  uv_poll_t poll;      /* armed for what the library waits on; between operations, for reading */
  uv_timer_t timer;    /* deadline of the operation in progress (ours) */
  uv_timer_t libtimer; /* MYSQL_WAIT_TIMEOUT asked by the library */
  int poll_init;
  int poll_ev;   /* UV_* events the poll is armed for */
  int op;        /* OP_* in progress */
  int wait;      /* events the library waits for */
  int my_open;   /* mysql_init() done, mysql_close() still due */
  int connected; /* handshake done and not closed since */
  int counted;   /* counts toward pool_size */
  int pinned;    /* owned by an fcfs_mysql_acquire() caller */
  int idle;      /* on m->idle */
  int dirty;     /* session state changed: reset before it is pooled again */
  int abandoned; /* its statement's caller is gone: drained, then reset and pooled */
  int kill_wait; /* a KILL QUERY for it is queued or running: not reusable until answered */
  int side;      /* the pool's side connection that sends KILL QUERY */
  int kill_tries;
  char kill_sql[48];
  int nclose;    /* libuv handles still closing */
  int destroyed; /* conn_destroy() ran: freed when nclose drops to 0 */
  MYSQL *cret;
  int qret;
  MYSQL_RES *res;
  char *text;            /* statement being sent: the library may write from it until done */
  fcfs_mysql_req_t *req; /* statement running on it */
  fcfs_mysql_conn_t *prev, *next; /* m->conns */
  fcfs_mysql_conn_t *idle_next;   /* m->idle */
  fcfs_mysql_conn_t *kill_next;   /* m->kill_head */
};

struct fcfs_mysql_req_s {
  fcfs_mysql_t *m;
  int kind;
  fcfs_mysql_conn_t *pinned; /* statement on a pinned connection */
  fcfs_mysql_conn_t *conn;   /* connection running it */
  int where;                 /* 0 nowhere, 1 wait queue, 2 ready list */
  int probe;                 /* the half-open probe of the breaker */
  uint64_t deadline, wait_deadline;
  fcfs_mysql_query_cb qcb;
  fcfs_mysql_acquire_cb acb;
  void *arg;
  const char *sql;
  size_t sqllen;
  fcfs_mysql_param_t *params;
  int nparams;
  /* outcome, filled before delivery */
  const char *err;
  unsigned int errnum;
  MYSQL_RES *res;
  uint64_t affected, insert_id;
  fcfs_mysql_conn_t *got; /* acquired connection */
  char errbuf[512];
  fcfs_mysql_req_t *prev, *next;
};

struct fcfs_mysql_s {
  uv_loop_t *loop;
  fcfs_mysql_opts_t o;
  char *strs; /* one block holding the copied option strings */
  fcfs_pool_stats_t own_stats;
  fcfs_pool_stats_t *st;
  fcfs_mysql_conn_t *conns;
  fcfs_mysql_conn_t *idle;
  int nconns; /* counted connections (open or connecting) */
  int nconnecting;
  int nlive; /* conn structs not yet freed */
  fcfs_mysql_req_t *qhead, *qtail;
  int nwaiting;
  fcfs_mysql_req_t *rhead, *rtail; /* ready list */
  uv_timer_t wait_timer;
  uv_timer_t defer_timer;
  int timers_open;
  int closing;
  int entered; /* depth of fcfs_mysql_* calls: defer callbacks */
  int failures;
  int circuit;
  uint64_t opened_at;
  int probe_inflight;
  int last_connect_ok;
  fcfs_mysql_conn_t *side;                  /* side connection (not counted in pool_size) */
  fcfs_mysql_conn_t *kill_head, *kill_tail; /* abandoned statements to KILL QUERY */
  fcfs_mysql_conn_t *killing;               /* the one the side connection is killing now */
};

static void conn_step(fcfs_mysql_conn_t *c, int status);
static void on_op_timer(uv_timer_t *t);
static void on_defer_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *p, int status, int events);
static void on_libtimer(uv_timer_t *t);
static void conn_put(fcfs_mysql_conn_t *c);
static void conn_kill(fcfs_mysql_conn_t *c);
static void conn_close(fcfs_mysql_conn_t *c);
static void maybe_connect(fcfs_mysql_t *m);
static void side_run(fcfs_mysql_t *m);
static void conn_open(fcfs_mysql_t *m, int side);
static void req_done(fcfs_mysql_req_t *r);
static int is_transport(unsigned int errnum);

const char *fcfs_mysql_strerror(int rc) {
  switch (rc) {
  case FCFS_MYSQL_EBUSY:
    return fcfs_mysql_e_busy;
  case FCFS_MYSQL_EUNAVAILABLE:
    return fcfs_mysql_e_unavailable;
  case FCFS_MYSQL_ECLOSED:
    return fcfs_mysql_e_closed;
  case FCFS_MYSQL_EARGS:
    return e_args;
  case FCFS_MYSQL_EINUSE:
    return e_inuse;
  default:
    return e_nomem;
  }
}

void fcfs_mysql_opts_from_conf(fcfs_mysql_opts_t *o, const fcfs_conf_t *c) {
  memset(o, 0, sizeof(*o));
  o->host = c->mysql_host;
  o->port = c->mysql_port;
  o->socket = c->mysql_socket;
  o->user = c->mysql_user;
  o->password = c->mysql_password;
  o->database = c->mysql_database;
  o->pool_size = c->mysql_pool_size;
  o->queue_size = c->mysql_queue_size;
  o->wait_timeout = c->mysql_wait_timeout;
  o->connect_timeout = c->mysql_connect_timeout;
  o->query_timeout = c->mysql_query_timeout;
  o->breaker_failures = c->mysql_breaker_failures;
  o->breaker_cooldown = c->mysql_breaker_cooldown;
}

const fcfs_pool_stats_t *fcfs_mysql_stats(const fcfs_mysql_t *m) {
  return m->st;
}
const fcfs_mysql_opts_t *fcfs_mysql_options(const fcfs_mysql_t *m) {
  return &m->o;
}

static uint64_t ms_of(double s) {
  if (!(s > 0)) return 0;
  if (s > 1e9) s = 1e9;
  return (uint64_t)(s * 1000.0 + 0.5);
}

static uint64_t left_ms(fcfs_mysql_t *m, uint64_t deadline) {
  uint64_t now = uv_now(m->loop);
  return deadline > now ? deadline - now : 0;
}

/* Recompute the gauges of the stats block from the connection list. */
static void stats_sync(fcfs_mysql_t *m) {
  uint64_t size = 0, busy = 0;
  for (fcfs_mysql_conn_t *c = m->conns; c; c = c->next) {
    if (!c->connected || c->op == OP_CLOSE || c->side) continue;
    size++;
    if (c->pinned || c->req || c->abandoned || c->op == OP_RESET || c->op == OP_INIT) busy++;
  }
  m->st->size = size;
  m->st->in_use = busy;
  m->st->waiting = (uint64_t)m->nwaiting;
  m->st->circuit = (uint64_t)m->circuit;
  m->st->up = (size > 0 || m->last_connect_ok) ? 1 : 0;
}

/* ---- placeholders ------------------------------------------------------ */

/* Index of the next character at or after i that is SQL code: not inside a
 * quoted string, a quoted identifier or a comment; len when there is none. */
static size_t next_code(const char *s, size_t len, size_t i) {
  while (i < len) {
    char ch = s[i];
    if (ch == '\'' || ch == '"') {
      for (i++; i < len && s[i] != ch; i++)
        if (s[i] == '\\') i++;
      i++;
    } else if (ch == '`') {
      for (i++; i < len && s[i] != '`'; i++) {
      }
      i++;
    } else if (ch == '#' || (ch == '-' && i + 1 < len && s[i + 1] == '-' &&
                             (i + 2 >= len || isspace((unsigned char)s[i + 2]) ||
                              iscntrl((unsigned char)s[i + 2])))) {
      while (i < len && s[i] != '\n')
        i++;
    } else if (ch == '/' && i + 1 < len && s[i + 1] == '*') {
      for (i += 2; i + 1 < len && !(s[i] == '*' && s[i + 1] == '/'); i++) {
      }
      i += 2;
    } else {
      return i;
    }
  }
  return len;
}

/* Index of the next `?` placeholder at or after i; len when there is none. */
static size_t next_placeholder(const char *s, size_t len, size_t i) {
  for (i = next_code(s, len, i); i < len && s[i] != '?'; i = next_code(s, len, i + 1)) {
  }
  return i;
}

static int is_word_char(char ch) {
  return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* 1 when a statement may leave session state the server does not flag
 * with SERVER_SESSION_STATE_CHANGED: a user variable (`SELECT @v := 1`,
 * `... INTO @v`), a named lock (GET_LOCK), LOCK TABLES, a procedure CALL. */
static int may_change_session(const char *s, size_t len) {
  static const char *const words[] = {"GET_LOCK", "LOCK", "CALL"};
  size_t i = next_code(s, len, 0);
  while (i < len) {
    if (s[i] == '@') {
      if (i + 1 >= len || s[i + 1] != '@') return 1;
      i += 2; /* @@system_variable: flagged by the server when set */
    } else if (is_word_char(s[i])) {
      size_t j = i;
      while (j < len && is_word_char(s[j]))
        j++;
      for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
        if (strlen(words[k]) == j - i && strncasecmp(s + i, words[k], j - i) == 0) return 1;
      i = j;
    } else {
      i++;
    }
    i = next_code(s, len, i);
  }
  return 0;
}

int fcfs_mysql_count_placeholders(const char *sql, size_t len) {
  int n = 0;
  for (size_t i = next_placeholder(sql, len, 0); i < len; i = next_placeholder(sql, len, i + 1))
    n++;
  return n;
}

/* The statement text for r with its values escaped for c's connection
 * (charset and NO_BACKSLASH_ESCAPES mode). Caller frees. */
static char *build_sql(fcfs_mysql_conn_t *c, fcfs_mysql_req_t *r, size_t *outlen) {
  size_t cap = r->sqllen + 1;
  for (int k = 0; k < r->nparams; k++)
    cap += r->params[k].type == FCFS_MYSQL_PSTR ? 2 * r->params[k].len + 3 : 32;
  char *out = malloc(cap);
  if (!out) return NULL;
  size_t n = 0, from = 0;
  int k = 0;
  for (size_t i = next_placeholder(r->sql, r->sqllen, 0); i < r->sqllen && k < r->nparams;
       i = next_placeholder(r->sql, r->sqllen, i + 1), k++) {
    memcpy(out + n, r->sql + from, i - from);
    n += i - from;
    from = i + 1;
    const fcfs_mysql_param_t *p = &r->params[k];
    switch (p->type) {
    case FCFS_MYSQL_PSTR: {
      out[n++] = '\'';
      unsigned long e = mysql_real_escape_string(&c->my, out + n, p->s, (unsigned long)p->len);
      if (e == (unsigned long)-1) {
        free(out);
        return NULL;
      }
      n += e;
      out[n++] = '\'';
      break;
    }
    case FCFS_MYSQL_PINT:
      n += (size_t)snprintf(out + n, 32, "%lld", p->i);
      break;
    case FCFS_MYSQL_PDOUBLE:
      n += (size_t)snprintf(out + n, 32, "%.17g", p->d);
      break;
    default:
      memcpy(out + n, "NULL", 4);
      n += 4;
      break;
    }
  }
  memcpy(out + n, r->sql + from, r->sqllen - from);
  n += r->sqllen - from;
  out[n] = '\0';
  *outlen = n;
  return out;
}

/* ---- breaker ------------------------------------------------------------ */

/* 0 when a new call may go ahead (*probe set when it is the half-open probe). */
static int breaker_admit(fcfs_mysql_t *m, int *probe) {
  *probe = 0;
  if (m->o.breaker_failures <= 0 || m->circuit == FCFS_CIRCUIT_CLOSED) return 0;
  if (m->circuit == FCFS_CIRCUIT_OPEN) {
    if (uv_now(m->loop) < m->opened_at + ms_of(m->o.breaker_cooldown)) return -1;
    m->circuit = FCFS_CIRCUIT_HALF_OPEN;
    m->probe_inflight = 0;
  }
  if (m->probe_inflight) return -1;
  m->probe_inflight = 1;
  m->st->probes++;
  *probe = 1;
  return 0;
}

static void breaker_success(fcfs_mysql_t *m) {
  m->failures = 0;
  m->circuit = FCFS_CIRCUIT_CLOSED;
  m->probe_inflight = 0;
}

static void purge_idle(fcfs_mysql_t *m) {
  while (m->idle) {
    fcfs_mysql_conn_t *c = m->idle;
    m->idle = c->idle_next;
    c->idle = 0;
    conn_close(c);
  }
}

static void fail_waiters(fcfs_mysql_t *m, const char *err);

/* A connect or transport failure. Opens the circuit after
 * breaker_failures in a row, or at once when it was the half-open probe. */
static void breaker_failure(fcfs_mysql_t *m) {
  m->failures++;
  m->st->errors++;
  if (m->o.breaker_failures <= 0) return;
  if (m->circuit == FCFS_CIRCUIT_HALF_OPEN ||
      (m->circuit == FCFS_CIRCUIT_CLOSED && m->failures >= m->o.breaker_failures)) {
    m->circuit = FCFS_CIRCUIT_OPEN;
    m->opened_at = uv_now(m->loop);
    m->probe_inflight = 0;
    m->last_connect_ok = 0;
    purge_idle(m);
    fail_waiters(m, fcfs_mysql_e_unavailable);
  }
}

/* ---- requests ----------------------------------------------------------- */

static void list_unlink(fcfs_mysql_req_t **head, fcfs_mysql_req_t **tail, fcfs_mysql_req_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    *head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    *tail = r->prev;
  r->prev = r->next = NULL;
}

static void list_append(fcfs_mysql_req_t **head, fcfs_mysql_req_t **tail, fcfs_mysql_req_t *r) {
  r->next = NULL;
  r->prev = *tail;
  if (*tail)
    (*tail)->next = r;
  else
    *head = r;
  *tail = r;
}

static void on_wait_timer(uv_timer_t *t);

static void rearm_wait_timer(fcfs_mysql_t *m) {
  uint64_t min = UINT64_MAX;
  for (fcfs_mysql_req_t *r = m->qhead; r; r = r->next)
    if (r->wait_deadline < min) min = r->wait_deadline;
  if (min == UINT64_MAX || m->closing)
    uv_timer_stop(&m->wait_timer);
  else
    uv_timer_start(&m->wait_timer, on_wait_timer, left_ms(m, min), 0);
}

static void queue_remove(fcfs_mysql_req_t *r) {
  fcfs_mysql_t *m = r->m;
  list_unlink(&m->qhead, &m->qtail, r);
  r->where = 0;
  m->nwaiting--;
}

static void req_free(fcfs_mysql_req_t *r) {
  free(r);
}

/* Hand the outcome in r to its owner: now, or from the defer timer when we
 * are inside an fcfs_mysql_* call. */
static void deliver(fcfs_mysql_req_t *r) {
  fcfs_mysql_t *m = r->m;
  if (r->probe && m->circuit == FCFS_CIRCUIT_HALF_OPEN && r->err &&
      (r->err == fcfs_mysql_e_timeout || r->err == fcfs_mysql_e_closed))
    m->probe_inflight = 0; /* the probe never reached the server: allow another */
  if (r->kind == REQ_ACQUIRE) {
    fcfs_mysql_acquire_cb cb = r->acb;
    void *arg = r->arg;
    fcfs_mysql_conn_t *got = r->got;
    const char *err = r->err;
    unsigned int errnum = r->errnum;
    char buf[sizeof(r->errbuf)];
    if (err == r->errbuf) {
      memcpy(buf, r->errbuf, sizeof(buf));
      err = buf;
    }
    req_free(r);
    cb(arg, got, err, errnum);
    return;
  }
  fcfs_mysql_result_t res = {r->err, r->errnum, r->res, r->affected, r->insert_id};
  char buf[sizeof(r->errbuf)];
  if (res.err == r->errbuf) {
    memcpy(buf, r->errbuf, sizeof(buf));
    res.err = buf;
  }
  fcfs_mysql_query_cb cb = r->qcb;
  void *arg = r->arg;
  req_free(r);
  cb(arg, &res);
  if (res.res) mysql_free_result(res.res);
}

static void req_done(fcfs_mysql_req_t *r) {
  fcfs_mysql_t *m = r->m;
  if (m->entered > 0) {
    r->where = 2;
    list_append(&m->rhead, &m->rtail, r);
    uv_timer_start(&m->defer_timer, on_defer_timer, 0, 0);
    return;
  }
  deliver(r);
}

static void req_fail(fcfs_mysql_req_t *r, const char *err, unsigned int errnum, const char *text) {
  if (r->where == 1) queue_remove(r);
  r->err = err;
  r->errnum = errnum;
  if (text) {
    snprintf(r->errbuf, sizeof(r->errbuf), "%s", text);
    r->err = r->errbuf;
  }
  req_done(r);
}

static void fail_waiters(fcfs_mysql_t *m, const char *err) {
  while (m->qhead)
    req_fail(m->qhead, err, 0, NULL);
  stats_sync(m);
}

static void on_wait_timer(uv_timer_t *t) {
  fcfs_mysql_t *m = t->data;
  for (;;) {
    uint64_t now = uv_now(m->loop);
    fcfs_mysql_req_t *r = m->qhead;
    while (r && r->wait_deadline > now)
      r = r->next;
    if (!r) break;
    m->st->timeouts++;
    req_fail(r, fcfs_mysql_e_timeout, 0, NULL);
  }
  stats_sync(m);
  rearm_wait_timer(m);
}

static void on_defer_timer(uv_timer_t *t) {
  fcfs_mysql_t *m = t->data;
  while (m->rhead) {
    fcfs_mysql_req_t *r = m->rhead;
    list_unlink(&m->rhead, &m->rtail, r);
    r->where = 0;
    deliver(r);
  }
}

/* ---- connections -------------------------------------------------------- */

static void maybe_free_pool(fcfs_mysql_t *m) {
  if (m->closing && m->nlive == 0 && m->timers_open == 0) {
    free(m->strs);
    free(m);
  }
}

static void on_conn_handle_closed(uv_handle_t *h) {
  fcfs_mysql_conn_t *c = h->data;
  if (--c->nclose > 0 || !c->destroyed) return;
  fcfs_mysql_t *m = c->m;
  free(c);
  m->nlive--;
  maybe_free_pool(m);
}

static void conn_uncount(fcfs_mysql_conn_t *c) {
  if (c->counted) {
    c->counted = 0;
    c->m->nconns--;
  }
  if (c->op == OP_CONNECT && !c->side) c->m->nconnecting--;
}

/* Free c once its handles are closed. MYSQL must be closed already. */
static void conn_destroy(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  if (c->prev)
    c->prev->next = c->next;
  else
    m->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->destroyed = 1;
  c->nclose += 2;
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->libtimer, on_conn_handle_closed);
}

/* The socket is about to be closed (or just was, with nothing opened since):
 * close its poll handle now. Closing it later, once the fd number may belong
 * to another socket, would epoll_ctl(DEL) that socket. */
static void conn_close_poll(fcfs_mysql_conn_t *c) {
  if (!c->poll_init) return;
  c->poll_init = 0;
  c->nclose++;
  uv_close((uv_handle_t *)&c->poll, on_conn_handle_closed);
}

static void conn_stop_io(fcfs_mysql_conn_t *c) {
  if (c->poll_init) uv_poll_stop(&c->poll);
  uv_timer_stop(&c->libtimer);
  uv_timer_stop(&c->timer);
}

/* ---- abandoned statements: KILL QUERY from the side connection --------- */

/* c no longer waits for a KILL QUERY (it is being closed). */
static void kill_forget(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  if (!c->kill_wait) return;
  c->kill_wait = 0;
  if (m->killing == c) {
    m->killing = NULL;
    return;
  }
  fcfs_mysql_conn_t **pp = &m->kill_head, *prev = NULL;
  while (*pp && *pp != c) {
    prev = *pp;
    pp = &(*pp)->kill_next;
  }
  if (!*pp) return;
  *pp = c->kill_next;
  if (m->kill_tail == c) m->kill_tail = prev;
  c->kill_next = NULL;
}

/* The abandoned statement on c is over and nothing will KILL it any more:
 * give the connection back (conn_put resets it first). */
static void abandon_done(fcfs_mysql_conn_t *c) {
  c->abandoned = 0;
  uv_timer_stop(&c->timer);
  conn_put(c);
  stats_sync(c->m);
}

/* The KILL QUERY for target was answered (or will never be sent). */
static void kill_answered(fcfs_mysql_conn_t *target) {
  target->kill_wait = 0;
  if (target->abandoned && target->op == OP_NONE) abandon_done(target);
}

/* Every queued kill is dropped: their statements end by themselves or by
 * the drain timeout. */
static void kill_drop_all(fcfs_mysql_t *m) {
  fcfs_mysql_conn_t *t = m->killing;
  m->killing = NULL;
  if (t) kill_answered(t);
  while ((t = m->kill_head)) {
    m->kill_head = t->kill_next;
    if (!m->kill_head) m->kill_tail = NULL;
    t->kill_next = NULL;
    kill_answered(t);
  }
}

static void kill_enqueue(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  c->kill_wait = 1;
  c->kill_next = NULL;
  if (m->kill_tail)
    m->kill_tail->kill_next = c;
  else
    m->kill_head = c;
  m->kill_tail = c;
}

/* The side connection is gone. A KILL QUERY that got no answer (the server
 * can be slow to kill a thread waiting on a condition; MariaDB's own advice
 * is a second KILL) is queued again for a fresh side connection; a side
 * connection that could not connect drops every queued kill. */
static void side_lost(fcfs_mysql_t *m, int connected) {
  fcfs_mysql_conn_t *t = m->killing;
  m->side = NULL;
  m->killing = NULL;
  if (t && connected && ++t->kill_tries < KILL_TRIES) {
    kill_enqueue(t);
    t = NULL;
  }
  if (t) kill_answered(t);
  if (!connected)
    kill_drop_all(m);
  else
    side_run(m);
}

/* Send the next queued KILL QUERY, connecting the side connection first. */
static void side_run(fcfs_mysql_t *m) {
  if (m->closing || m->killing || !m->kill_head) return;
  fcfs_mysql_conn_t *s = m->side;
  if (!s) {
    conn_open(m, 1);
    return;
  }
  if (s->op != OP_NONE) return; /* still connecting */
  fcfs_mysql_conn_t *t = m->kill_head;
  m->kill_head = t->kill_next;
  if (!m->kill_head) m->kill_tail = NULL;
  t->kill_next = NULL;
  m->killing = t;
  int n = snprintf(s->kill_sql, sizeof(s->kill_sql), "KILL QUERY %lu", mysql_thread_id(&t->my));
  s->op = OP_QUERY;
  uv_timer_start(&s->timer, on_op_timer, KILL_TIMEOUT_MS, 0);
  conn_step(s, mysql_real_query_start(&s->qret, &s->my, s->kill_sql, (unsigned long)n));
}

static void side_done(fcfs_mysql_conn_t *s) {
  fcfs_mysql_t *m = s->m;
  uv_timer_stop(&s->timer);
  s->op = OP_NONE;
  unsigned int errnum = s->qret ? mysql_errno(&s->my) : 0;
  fcfs_mysql_conn_t *t = m->killing;
  m->killing = NULL;
  if (t) kill_answered(t);
  if (is_transport(errnum))
    conn_kill(s);
  else
    side_run(m);
}

/* The caller of the statement running on the pooled connection c is gone
 * (cancelled, or its deadline passed): stop the statement server-side with
 * KILL QUERY from the side connection, read whatever it still returns, then
 * reset the connection and pool it again. Bounded by DRAIN_TIMEOUT_MS, after
 * which the connection is closed. */
static void conn_abandon(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  c->req = NULL;
  c->abandoned = 1;
  c->dirty = 1; /* whatever the statement did before it stopped */
  uv_timer_start(&c->timer, on_op_timer, DRAIN_TIMEOUT_MS, 0);
  if (c->op == OP_QUERY) { /* possibly still executing (OP_STORE: only reading rows) */
    c->kill_tries = 0;
    kill_enqueue(c);
    side_run(m);
  }
}

/* Close at once, whatever is in progress (the socket is shut down first so
 * that mysql_close() cannot block). A pinned connection stays allocated,
 * disconnected, until its owner releases it. */
static void conn_kill(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  int was_connected = c->connected;
  conn_stop_io(c);
  conn_uncount(c);
  kill_forget(c);
  c->abandoned = 0;
  if (c->idle) {
    fcfs_mysql_conn_t **pp = &m->idle;
    while (*pp != c)
      pp = &(*pp)->idle_next;
    *pp = c->idle_next;
    c->idle = 0;
  }
  if (c->res) {
    mysql_free_result(c->res);
    c->res = NULL;
  }
  free(c->text);
  c->text = NULL;
  conn_close_poll(c);
  if (c->my_open) {
    if (c->op != OP_NONE) mariadb_cancel(&c->my);
    mysql_close(&c->my);
    c->my_open = 0;
  }
  c->connected = 0;
  c->op = OP_NONE;
  if (!c->pinned) conn_destroy(c);
  if (c->side) side_lost(m, was_connected);
  stats_sync(m);
}

/* Close an idle connection politely (COM_QUIT), without waiting on it. */
static void conn_close(fcfs_mysql_conn_t *c) {
  if (!c->my_open || c->op != OP_NONE) {
    conn_kill(c);
    return;
  }
  conn_uncount(c);
  c->op = OP_CLOSE;
  uv_timer_start(&c->timer, on_op_timer, CLOSE_TIMEOUT_MS, 0);
  conn_step(c, mysql_close_start(&c->my));
}

static void close_done(fcfs_mysql_conn_t *c) {
  conn_stop_io(c);
  conn_close_poll(c);
  if (c->side) c->m->side = NULL;
  c->my_open = 0;
  c->connected = 0;
  c->op = OP_NONE;
  if (!c->pinned) conn_destroy(c);
  stats_sync(c->m);
}

/* Arm c's poll for ev, initialising it on first use. A poll already armed
 * for ev is left alone: each re-arm costs epoll_ctl calls, and a statement
 * mostly waits for reading, as the watch between operations does. */
static void poll_arm(fcfs_mysql_conn_t *c, int ev) {
  if (!c->poll_init) {
    if (uv_poll_init(c->m->loop, &c->poll, mysql_get_socket(&c->my)) != 0) return;
    c->poll.data = c;
    c->poll_init = 1;
  } else if (c->poll_ev == ev && uv_is_active((uv_handle_t *)&c->poll)) {
    return;
  }
  c->poll_ev = ev;
  uv_poll_start(&c->poll, ev, on_poll);
}

static void conn_wait(fcfs_mysql_conn_t *c, int status) {
  c->wait = status;
  int ev = 0;
  if (status & MYSQL_WAIT_READ) ev |= UV_READABLE;
  if (status & MYSQL_WAIT_WRITE) ev |= UV_WRITABLE;
  if (status & MYSQL_WAIT_EXCEPT) ev |= UV_PRIORITIZED;
  if (ev)
    poll_arm(c, ev);
  else if (c->poll_init)
    uv_poll_stop(&c->poll);
  if (status & MYSQL_WAIT_TIMEOUT)
    uv_timer_start(&c->libtimer, on_libtimer, mysql_get_timeout_value_ms(&c->my), 0);
  else
    uv_timer_stop(&c->libtimer);
}

static void conn_continue(fcfs_mysql_conn_t *c, int ready) {
  int st = 0;
  uv_timer_stop(&c->libtimer);
  switch (c->op) {
  case OP_CONNECT:
    st = mysql_real_connect_cont(&c->cret, &c->my, ready);
    break;
  case OP_QUERY:
    st = mysql_real_query_cont(&c->qret, &c->my, ready);
    break;
  case OP_STORE:
    st = mysql_store_result_cont(&c->res, &c->my, ready);
    break;
  case OP_CLOSE:
    st = mysql_close_cont(&c->my, ready);
    break;
  case OP_RESET:
    st = mysql_reset_connection_cont(&c->qret, &c->my, ready);
    break;
  case OP_INIT:
    st = mysql_real_query_cont(&c->qret, &c->my, ready);
    break;
  default:
    return;
  }
  conn_step(c, st);
}

/* Nothing was asked of the server, yet c's socket is readable: the server
 * closed the connection (restart, shutdown, wait_timeout, KILL), maybe after
 * an error packet. Dropped now, not handed to the next caller, whose
 * statement would fail with "server has gone away"; a pinned one stays
 * allocated, disconnected, and its owner's next statement gets "closed". */
static void conn_gone(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  m->st->errors++;
  conn_kill(c);
  maybe_connect(m);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  fcfs_mysql_conn_t *c = p->data;
  if (c->op == OP_NONE) {
    conn_gone(c);
    return;
  }
  int ready = 0;
  if (status < 0) {
    ready = c->wait & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  } else {
    if (events & UV_READABLE) ready |= MYSQL_WAIT_READ;
    if (events & UV_WRITABLE) ready |= MYSQL_WAIT_WRITE;
    if (events & UV_PRIORITIZED) ready |= MYSQL_WAIT_EXCEPT;
  }
  conn_continue(c, ready);
}

static void on_libtimer(uv_timer_t *t) {
  conn_continue(t->data, MYSQL_WAIT_TIMEOUT);
}

static int is_transport(unsigned int errnum) {
  return errnum >= CR_MIN_ERROR && errnum <= CR_MAX_ERROR;
}

static void connect_done(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  uv_timer_stop(&c->timer);
  c->op = OP_NONE;
  if (c->side) {
    if (!c->cret) {
      conn_kill(c); /* drops the queued kills */
      return;
    }
    c->connected = 1;
    side_run(m);
    return;
  }
  m->nconnecting--;
  if (!c->cret) {
    char text[sizeof(((fcfs_mysql_req_t *)0)->errbuf)];
    unsigned int errnum = mysql_errno(&c->my);
    snprintf(text, sizeof(text), "%s", mysql_error(&c->my));
    conn_kill(c);
    m->last_connect_ok = 0;
    if (m->qhead) req_fail(m->qhead, NULL, errnum ? errnum : CR_CONNECTION_ERROR, text);
    breaker_failure(m);
    stats_sync(m);
    maybe_connect(m);
    return;
  }
  c->connected = 1;
  m->last_connect_ok = 1;
  breaker_success(m);
  conn_put(c);
}

/* A reset (COM_RESET_CONNECTION, then init_sql again) finished a step. */
static void reset_step(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  if (c->qret != 0) {
    conn_kill(c);
    maybe_connect(m);
    return;
  }
  if (c->op == OP_RESET) {
    c->op = OP_INIT;
    conn_step(c, mysql_real_query_start(&c->qret, &c->my, init_sql, sizeof(init_sql) - 1));
    return;
  }
  uv_timer_stop(&c->timer);
  c->op = OP_NONE;
  c->dirty = 0;
  conn_put(c);
}

/* The statement of an abandoned connection ended: nobody wants its result. */
static void abandoned_finish(fcfs_mysql_conn_t *c, MYSQL_RES *res) {
  fcfs_mysql_t *m = c->m;
  c->op = OP_NONE;
  c->res = NULL;
  if (res) mysql_free_result(res);
  int failed = res == NULL && (c->qret != 0 || mysql_field_count(&c->my) > 0);
  if ((failed && is_transport(mysql_errno(&c->my))) || mysql_more_results(&c->my)) {
    conn_kill(c);
    maybe_connect(m);
  } else if (!c->kill_wait) {
    abandon_done(c);
  } /* else parked until the KILL QUERY is answered: it must not hit the next statement */
  stats_sync(m);
}

static void query_finish(fcfs_mysql_conn_t *c, MYSQL_RES *res) {
  fcfs_mysql_t *m = c->m;
  fcfs_mysql_req_t *r = c->req;
  if (c->abandoned) {
    abandoned_finish(c, res);
    return;
  }
  uv_timer_stop(&c->timer);
  c->op = OP_NONE;
  c->req = NULL;
  c->res = NULL;
  unsigned int errnum = mysql_errno(&c->my);
  int failed = res == NULL && (c->qret != 0 || mysql_field_count(&c->my) > 0);
  r->conn = NULL;
  r->res = NULL;
  if (failed) {
    r->errnum = errnum ? errnum : CR_UNKNOWN_ERROR;
    snprintf(r->errbuf, sizeof(r->errbuf), "%s", mysql_error(&c->my));
    r->err = r->errbuf;
  } else {
    r->err = NULL;
    r->errnum = 0;
    r->res = res;
    r->affected = res ? 0 : mysql_affected_rows(&c->my);
    r->insert_id = res ? 0 : mysql_insert_id(&c->my);
  }
  unsigned int status = 0;
  mariadb_get_infov(&c->my, MARIADB_CONNECTION_SERVER_STATUS, &status);
  int transport = failed && is_transport(errnum);
  int broken =
      transport || mysql_more_results(&c->my) ||
      (!r->pinned && ((status & SERVER_STATUS_IN_TRANS) || !(status & SERVER_STATUS_AUTOCOMMIT)));
  if ((status & SERVER_SESSION_STATE_CHANGED) || may_change_session(r->sql, r->sqllen))
    c->dirty = 1;
  if (transport) {
    breaker_failure(m);
    purge_idle(m);
  } else {
    breaker_success(m);
  }
  if (broken)
    conn_kill(c);
  else if (!c->pinned)
    conn_put(c);
  stats_sync(m);
  req_done(r);
}

static void conn_step(fcfs_mysql_conn_t *c, int status) {
  if (status != 0) {
    conn_wait(c, status);
    return;
  }
  uv_timer_stop(&c->libtimer);
  if (c->op == OP_QUERY) {
    free(c->text);
    c->text = NULL;
  }
  switch (c->op) {
  case OP_CONNECT:
    connect_done(c);
    break;
  case OP_QUERY:
    if (c->side) {
      side_done(c);
    } else if (c->qret == 0 && mysql_field_count(&c->my) > 0) {
      c->op = OP_STORE;
      conn_step(c, mysql_store_result_start(&c->res, &c->my));
    } else {
      query_finish(c, NULL);
    }
    break;
  case OP_STORE:
    query_finish(c, c->res);
    break;
  case OP_CLOSE:
    close_done(c);
    break;
  case OP_RESET:
  case OP_INIT:
    reset_step(c);
    break;
  default:
    break;
  }
  /* between operations the server has nothing to send: watch for it closing */
  if (c->op == OP_NONE && c->connected) poll_arm(c, UV_READABLE);
}

static void on_op_timer(uv_timer_t *t) {
  fcfs_mysql_conn_t *c = t->data;
  fcfs_mysql_t *m = c->m;
  switch (c->op) {
  case OP_CONNECT:
    m->st->timeouts++;
    conn_kill(c);
    m->last_connect_ok = 0;
    if (m->qhead) req_fail(m->qhead, fcfs_mysql_e_timeout, 0, NULL);
    breaker_failure(m);
    maybe_connect(m);
    break;
  case OP_QUERY:
  case OP_STORE: {
    fcfs_mysql_req_t *r = c->req;
    m->st->timeouts++;
    if (!r) { /* an abandoned statement that did not end, or the side connection stuck */
      conn_kill(c);
      maybe_connect(m);
      break;
    }
    c->req = NULL;
    r->conn = NULL;
    if (c->pinned)
      conn_kill(c); /* its owner's transaction is lost: the server rolls it back */
    else
      conn_abandon(c);
    req_fail(r, fcfs_mysql_e_timeout, 0, NULL);
    maybe_connect(m);
    break;
  }
  case OP_CLOSE:
    conn_kill(c);
    break;
  case OP_RESET:
  case OP_INIT:
    m->st->timeouts++;
    conn_kill(c);
    maybe_connect(m);
    break;
  case OP_NONE:
    if (c->abandoned) { /* drained, but the KILL QUERY was never answered */
      conn_kill(c);
      maybe_connect(m);
    }
    break;
  default:
    break;
  }
  stats_sync(m);
}

/* Start a connection: one of the pool's, or (side) the one that sends
 * KILL QUERY, which counts toward nothing and is never handed out. */
static void conn_open(fcfs_mysql_t *m, int side) {
  fcfs_mysql_conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    if (side)
      kill_drop_all(m);
    else if (m->qhead)
      req_fail(m->qhead, e_nomem, 0, NULL);
    return;
  }
  c->m = m;
  uv_timer_init(m->loop, &c->timer);
  uv_timer_init(m->loop, &c->libtimer);
  c->timer.data = c->libtimer.data = c;
  c->next = m->conns;
  if (m->conns) m->conns->prev = c;
  m->conns = c;
  m->nlive++;
  m->st->connects++;
  if (side) {
    c->side = 1;
    m->side = c;
  } else {
    m->nconns++;
    m->nconnecting++;
    c->counted = 1;
  }
  c->op = OP_CONNECT;
  mysql_init(&c->my);
  c->my_open = 1;
  mysql_options(&c->my, MYSQL_OPT_NONBLOCK, 0);
  mysql_options(&c->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_options(&c->my, MYSQL_INIT_COMMAND, init_sql);
  unsigned int ct = (unsigned int)ceil(m->o.connect_timeout > 0 ? m->o.connect_timeout : 1);
  mysql_options(&c->my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
  int sock = m->o.socket && m->o.socket[0];
  unsigned int proto = sock ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
  mysql_options(&c->my, MYSQL_OPT_PROTOCOL, &proto);
  uv_timer_start(&c->timer, on_op_timer, ms_of(m->o.connect_timeout > 0 ? m->o.connect_timeout : 1),
                 0);
  const char *db = m->o.database && m->o.database[0] ? m->o.database : NULL;
  int st = mysql_real_connect_start(&c->cret, &c->my, sock ? "localhost" : m->o.host, m->o.user,
                                    m->o.password, db, sock ? 0 : (unsigned int)m->o.port,
                                    sock ? m->o.socket : NULL, 0);
  conn_step(c, st);
}

static void maybe_connect(fcfs_mysql_t *m) {
  while (!m->closing && m->circuit != FCFS_CIRCUIT_OPEN && m->nwaiting > m->nconnecting &&
         m->nconns < m->o.pool_size) {
    if (m->circuit == FCFS_CIRCUIT_HALF_OPEN && m->nconnecting > 0) break;
    conn_open(m, 0);
  }
}

static void start_query(fcfs_mysql_conn_t *c, fcfs_mysql_req_t *r) {
  fcfs_mysql_t *m = c->m;
  size_t len = 0;
  if (left_ms(m, r->deadline) == 0) {
    m->st->timeouts++;
    if (!r->pinned) conn_put(c);
    req_fail(r, fcfs_mysql_e_timeout, 0, NULL);
    return;
  }
  char *text = build_sql(c, r, &len);
  if (!text) {
    if (!r->pinned) conn_put(c);
    req_fail(r, e_nomem, 0, NULL);
    return;
  }
  c->req = r;
  r->conn = c;
  c->op = OP_QUERY;
  m->st->requests++;
  uv_timer_start(&c->timer, on_op_timer, left_ms(m, r->deadline), 0);
  int st = mysql_real_query_start(&c->qret, &c->my, text, (unsigned long)len);
  c->text = text;
  conn_step(c, st);
}

/* c is connected and free: hand it to the first waiter, or park it. A
 * connection whose session state changed is reset first (the server then
 * drops user variables, named locks, temporary tables, session settings). */
static void conn_put(fcfs_mysql_conn_t *c) {
  fcfs_mysql_t *m = c->m;
  if (m->closing) {
    conn_close(c);
    return;
  }
  if (c->dirty) {
    c->op = OP_RESET;
    uv_timer_start(&c->timer, on_op_timer, RESET_TIMEOUT_MS, 0);
    conn_step(c, mysql_reset_connection_start(&c->qret, &c->my));
    return;
  }
  fcfs_mysql_req_t *r = m->qhead;
  if (!r) {
    c->idle = 1;
    c->idle_next = m->idle;
    m->idle = c;
    stats_sync(m);
    return;
  }
  queue_remove(r);
  rearm_wait_timer(m);
  if (r->kind == REQ_ACQUIRE) {
    c->pinned = 1;
    r->got = c;
    r->err = NULL;
    stats_sync(m);
    req_done(r);
  } else {
    start_query(c, r);
  }
  stats_sync(m);
}

/* ---- public entry points ------------------------------------------------- */

fcfs_mysql_t *fcfs_mysql_new(uv_loop_t *loop, const fcfs_mysql_opts_t *o,
                             fcfs_pool_stats_t *stats) {
  fcfs_mysql_t *m = calloc(1, sizeof(*m));
  if (!m) return NULL;
  const char *src[6] = {o->host, o->socket, o->user, o->password, o->database, NULL};
  size_t total = 0;
  for (int i = 0; i < 5; i++)
    total += (src[i] ? strlen(src[i]) : 0) + 1;
  m->strs = malloc(total);
  if (!m->strs) {
    free(m);
    return NULL;
  }
  const char *dst[5];
  char *p = m->strs;
  for (int i = 0; i < 5; i++) {
    size_t n = src[i] ? strlen(src[i]) : 0;
    memcpy(p, src[i] ? src[i] : "", n);
    p[n] = '\0';
    dst[i] = p;
    p += n + 1;
  }
  m->o = *o;
  m->o.host = dst[0];
  m->o.socket = dst[1];
  m->o.user = dst[2];
  m->o.password = dst[3];
  m->o.database = dst[4];
  if (m->o.pool_size < 1) m->o.pool_size = 1;
  if (m->o.queue_size < 0) m->o.queue_size = 0;
  m->loop = loop;
  m->st = stats ? stats : &m->own_stats;
  memset(m->st, 0, sizeof(*m->st));
  uv_timer_init(loop, &m->wait_timer);
  uv_timer_init(loop, &m->defer_timer);
  m->wait_timer.data = m->defer_timer.data = m;
  m->timers_open = 2;
  return m;
}

static void on_pool_timer_closed(uv_handle_t *h) {
  fcfs_mysql_t *m = h->data;
  m->timers_open--;
  maybe_free_pool(m);
}

void fcfs_mysql_free(fcfs_mysql_t *m) {
  if (!m || m->closing) return;
  m->closing = 1;
  fail_waiters(m, fcfs_mysql_e_closed);
  purge_idle(m);
  /* forget the queued kills without side effects: every conn is closed below */
  for (fcfs_mysql_conn_t *c = m->conns; c; c = c->next)
    c->kill_wait = 0;
  m->kill_head = m->kill_tail = m->killing = NULL;
  fcfs_mysql_conn_t *c = m->conns;
  while (c) {
    fcfs_mysql_conn_t *next = c->next;
    fcfs_mysql_req_t *r = c->req;
    if (r) {
      c->req = NULL;
      r->conn = NULL;
      conn_kill(c);
      req_fail(r, fcfs_mysql_e_closed, 0, NULL);
    } else if (c->side && c->op == OP_NONE) {
      conn_close(c);
    } else if ((c->op != OP_NONE && c->op != OP_CLOSE) || c->abandoned || c->side) {
      conn_kill(c);
    }
    c = next;
  }
  /* deliver whatever is still deferred, then let the timers go */
  on_defer_timer(&m->defer_timer);
  uv_close((uv_handle_t *)&m->wait_timer, on_pool_timer_closed);
  uv_close((uv_handle_t *)&m->defer_timer, on_pool_timer_closed);
}

static fcfs_mysql_req_t *req_new(fcfs_mysql_t *m, int kind, const char *sql, size_t len,
                                 const fcfs_mysql_param_t *params, int nparams, double timeout) {
  size_t total = sizeof(fcfs_mysql_req_t) + (size_t)nparams * sizeof(fcfs_mysql_param_t) + len + 1;
  for (int k = 0; k < nparams; k++)
    if (params[k].type == FCFS_MYSQL_PSTR) total += params[k].len;
  fcfs_mysql_req_t *r = calloc(1, total);
  if (!r) return NULL;
  r->m = m;
  r->kind = kind;
  r->params = (fcfs_mysql_param_t *)(r + 1);
  char *p = (char *)(r->params + nparams);
  memcpy(p, sql ? sql : "", len);
  p[len] = '\0';
  r->sql = p;
  r->sqllen = len;
  p += len + 1;
  for (int k = 0; k < nparams; k++) {
    r->params[k] = params[k];
    if (params[k].type == FCFS_MYSQL_PSTR) {
      memcpy(p, params[k].s, params[k].len);
      r->params[k].s = p;
      p += params[k].len;
    }
  }
  r->nparams = nparams;
  if (!(timeout > 0)) timeout = m->o.query_timeout > 0 ? m->o.query_timeout : 10;
  uv_update_time(m->loop); /* deadlines from now, not from the start of this loop turn */
  uint64_t now = uv_now(m->loop);
  r->deadline = now + ms_of(timeout);
  uint64_t w = now + ms_of(m->o.wait_timeout);
  r->wait_deadline = w < r->deadline ? w : r->deadline;
  return r;
}

/* Find a pooled connection for r, or queue it. 0 or a negative code. */
static int pool_submit(fcfs_mysql_t *m, fcfs_mysql_req_t *r) {
  if (m->idle) {
    fcfs_mysql_conn_t *c = m->idle;
    m->idle = c->idle_next;
    c->idle = 0;
    if (r->kind == REQ_ACQUIRE) {
      c->pinned = 1;
      r->got = c;
      req_done(r); /* deferred: we are inside a call */
    } else {
      start_query(c, r);
    }
    stats_sync(m);
    return 0;
  }
  int room = m->nconns < m->o.pool_size;
  if (!room && m->nwaiting - m->nconnecting >= m->o.queue_size) return FCFS_MYSQL_EBUSY;
  r->where = 1;
  list_append(&m->qhead, &m->qtail, r);
  m->nwaiting++;
  m->st->waits++;
  rearm_wait_timer(m);
  maybe_connect(m);
  stats_sync(m);
  return 0;
}

static int submit(fcfs_mysql_t *m, fcfs_mysql_req_t *r, fcfs_mysql_req_t **out) {
  int probe = 0, rc;
  if (breaker_admit(m, &probe) != 0) {
    free(r);
    return FCFS_MYSQL_EUNAVAILABLE;
  }
  r->probe = probe;
  rc = pool_submit(m, r);
  if (rc < 0) {
    if (probe) m->probe_inflight = 0;
    free(r);
    return rc;
  }
  if (out) *out = r;
  return 0;
}

int fcfs_mysql_query(fcfs_mysql_t *m, fcfs_mysql_conn_t *conn, const char *sql, size_t len,
                     const fcfs_mysql_param_t *params, int nparams, double timeout,
                     fcfs_mysql_query_cb cb, void *arg, fcfs_mysql_req_t **out) {
  int rc = 0;
  if (out) *out = NULL;
  if (m->closing) return FCFS_MYSQL_ECLOSED;
  if (nparams < 0 || fcfs_mysql_count_placeholders(sql, len) != nparams) return FCFS_MYSQL_EARGS;
  if (conn) {
    if (!conn->connected || !conn->pinned) return FCFS_MYSQL_ECLOSED;
    if (conn->op != OP_NONE || conn->req) return FCFS_MYSQL_EINUSE;
  }
  fcfs_mysql_req_t *r = req_new(m, REQ_QUERY, sql, len, params, nparams, timeout);
  if (!r) return FCFS_MYSQL_ENOMEM;
  r->qcb = cb;
  r->arg = arg;
  m->entered++;
  if (conn) {
    r->pinned = conn;
    if (out) *out = r;
    start_query(conn, r);
  } else {
    rc = submit(m, r, out);
  }
  m->entered--;
  return rc;
}

int fcfs_mysql_acquire(fcfs_mysql_t *m, double timeout, fcfs_mysql_acquire_cb cb, void *arg,
                       fcfs_mysql_req_t **out) {
  if (out) *out = NULL;
  if (m->closing) return FCFS_MYSQL_ECLOSED;
  fcfs_mysql_req_t *r = req_new(m, REQ_ACQUIRE, NULL, 0, NULL, 0, timeout);
  if (!r) return FCFS_MYSQL_ENOMEM;
  r->acb = cb;
  r->arg = arg;
  m->entered++;
  int rc = submit(m, r, out);
  m->entered--;
  return rc;
}

int fcfs_mysql_conn_ok(const fcfs_mysql_conn_t *conn) {
  return conn && conn->connected;
}

void fcfs_mysql_release(fcfs_mysql_conn_t *c, int reuse) {
  if (!c) return;
  fcfs_mysql_t *m = c->m;
  m->entered++;
  c->pinned = 0;
  if (!c->my_open) {
    conn_destroy(c);
  } else if (!reuse || !c->connected || c->op != OP_NONE || c->req) {
    if (c->req) { /* still running: the owner must fcfs_mysql_cancel() it, which frees it */
      c->req->conn = NULL;
      c->req = NULL;
    }
    conn_close(c);
  } else {
    unsigned int status = 0;
    mariadb_get_infov(&c->my, MARIADB_CONNECTION_SERVER_STATUS, &status);
    if ((status & SERVER_STATUS_IN_TRANS) || !(status & SERVER_STATUS_AUTOCOMMIT) ||
        mysql_more_results(&c->my))
      conn_close(c);
    else
      conn_put(c);
  }
  /* a closed connection leaves room in the pool: requests waiting for one
   * must not wait for their timeout (every rolled-back transaction closes) */
  maybe_connect(m);
  stats_sync(m);
  m->entered--;
}

void fcfs_mysql_cancel(fcfs_mysql_req_t *r) {
  if (!r) return;
  fcfs_mysql_t *m = r->m;
  m->entered++;
  if (r->probe && m->circuit == FCFS_CIRCUIT_HALF_OPEN) m->probe_inflight = 0;
  if (r->where == 1) {
    queue_remove(r);
    rearm_wait_timer(m);
  } else if (r->where == 2) {
    list_unlink(&m->rhead, &m->rtail, r);
    if (r->res) mysql_free_result(r->res);
    if (r->got) fcfs_mysql_release(r->got, 1);
  } else if (r->conn) {
    fcfs_mysql_conn_t *c = r->conn;
    c->req = NULL;
    if (c->pinned)
      conn_kill(c); /* mid-statement in its owner's transaction */
    else
      conn_abandon(c); /* stopped server-side, drained, pooled again */
    maybe_connect(m);
  }
  free(r);
  stats_sync(m);
  m->entered--;
}
