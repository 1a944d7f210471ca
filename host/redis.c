/* redis.c -- the per-worker Redis pool (see redis.h for the API).
 *
 * Shared connections: conf->redis_connections streams used by every request.
 * A command is formatted as RESP by hand straight into the connection's
 * output buffer (no intermediate copy, no allocation once the buffer has
 * grown to its working size) and appended to its FIFO of slots; a uv_check/uv_prepare
 * pair flushes every buffer once per loop iteration, so the commands of all
 * requests that ran in one iteration leave in one write (uv_try_write, the
 * rest by uv_write). Commands queued by I/O callbacks wait one more
 * iteration whose poll does not block (a uv_idle handle): requests already
 * waiting on other sockets run first and their commands join the same write.
 * Each write wakes Redis, and on a busy machine a wake-up costs it more than
 * a GET. Replies come back through a redisReader and are matched to slots in
 * FIFO order.
 *
 * Timeouts on a pipelined connection: a command past its deadline gets
 * "timeout" at once but keeps its slot; its reply, when it comes, is read and
 * dropped, so later replies stay matched (the server may merely be slow).
 * If the oldest slot is still unanswered STALL past its deadline the
 * connection is closed and everything pending gets "closed". Cancelled
 * commands are handled the same way.
 *
 * A shared connection that fails is reconnected after a backoff (50 ms
 * doubling to 1 s); while no shared connection is up calls fail at once with
 * "unavailable" (before the very first connect attempt ends they are queued).
 *
 * Every connection starts with AUTH (redis_password) and SELECT (redis_db)
 * when configured, queued ahead of any command; an error reply to either
 * closes it. A shared connection owing redis_queue_max replies refuses new
 * commands with "busy" (the caller fails fast instead of queueing behind a
 * stalled server).
 *
 * A new command goes on the first shared connection that is up while it owes
 * fewer than FCFS_REDIS_FILL (256) replies, and on the one owing the fewest
 * past that (fcfs_redis_shared()): Redis runs every command in turn whatever
 * its connection, so at ordinary load a worker's commands of one iteration
 * leave in one write and wake the server once. 256 is above what one
 * iteration owes at a few hundred HTTP connections per worker, and 256 short
 * commands (26-70 bytes of RESP) are about what Redis reads from a client at
 * once (16 KB): past that Redis is behind, and a second connection bounds the
 * queue of calls stuck behind a slow reply.
 *
 * Sentinel (conf->redis_sentinels): the address of the master is asked for
 * (SENTINEL get-master-addr-by-name, one sentinel after the other, each with
 * redis_connect_timeout for connect + answer) before the first connect and
 * before every connect that follows the loss of a connection (a failover
 * closes the clients of the old master: they reconnect and ask again); one
 * query at a time, the connections waiting for it stay "connecting". Every
 * connection then starts with ROLE: one to a server that is not a master is
 * closed, and the next connect asks again. The sentinels are also asked every
 * SENTINEL_RECHECK_MS: a graceful failover (SENTINEL FAILOVER) leaves the old
 * master up and accepting writes until the sentinels demote it, seconds
 * later; when the answer names another master, the shared and idle pinned
 * connections are closed and reconnect to it.
 *
 * Pinned connections (up to conf->redis_pinned_max, bound or idle) are
 * handed to one caller; given back, they go to an idle list if clean and are
 * closed otherwise; they are never reconnected.
 *
 * Memory: the pool owns conns, slots (cmd_t, recycled through a free list,
 * each keeping its EVALSHA copy buffer), output buffers, the script table and
 * the sentinel addresses and query (one stream, one timer, one reader).
 * Replies are built by the connections' readers in blocks of the pool's
 * reply arena and pass to the callback, which gives them back with
 * fcfs_redis_reply_free(); the arena outlives the pool until its last reply
 * is back. A conn is freed when its handles are closed and nobody holds it
 * (pinned: unpinned; shared: pool closed); the pool is freed once its last
 * handle is closed.
 */
#include "redis.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

const char fcfs_redis_etimeout[] = "timeout";
const char fcfs_redis_eclosed[] = "closed";
const char fcfs_redis_eunavailable[] = "unavailable";
const char fcfs_redis_ebusy[] = "busy";

enum { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSING };
enum { K_CMD, K_READ, K_LOAD };

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define STALL_MIN_MS 1000 /* STALL = max(2 * redis_timeout, 1 s) */
#define READ_BUF_SIZE 65536
#define INBOX_MAX 4096
#define EARLY_FLUSH                                                                                \
  32768 /* bytes queued in one iteration that leave without waiting for its end                    \
         */
#define FREE_CMDS_MAX 4096
#define FREE_REPLIES_MAX 4096
#define REPLY_INLINE 48  /* string replies up to this size live inside their block */
#define KEEP_CMD_MAX 512 /* a recycled slot keeps an EVALSHA copy buffer up to this size */
#define ARGV_STACK 32
#define SENTINEL_RECHECK_MS 1000

typedef struct cmd_s cmd_t;
struct cmd_s {
  cmd_t *next;
  fcfs_redis_conn_t *conn;
  fcfs_redis_cb cb; /* NULL once timed out or cancelled: the reply is dropped */
  void *arg;
  uint64_t deadline; /* uv_now() ms */
  int kind;          /* K_CMD: a reply is owed; K_READ: waits for an unsolicited one */
  int script;        /* run(): index + 1 in r->scripts */
  int retried;       /* run(): SCRIPT LOAD already tried once */
  char *evalsha;     /* run(): the formatted EVALSHA, resent after NOSCRIPT */
  size_t evalshalen;
  size_t evalshacap;    /* evalsha's size: the buffer stays with the slot when it is recycled */
  cmd_t *owner;         /* K_LOAD: the run() slot it loads the script for */
  redisReply *load_err; /* the SCRIPT LOAD error, given instead of NOSCRIPT */
};

typedef struct {
  uv_write_t req;
  fcfs_redis_conn_t *conn;
  char *data;
  size_t cap;
} wreq_t;

struct fcfs_redis_conn_s {
  fcfs_redis_t *r;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_connect_t creq;
  uv_timer_t timer; /* connect deadline, command deadlines, reconnect backoff */
  redisReader *reader;
  int state;
  int nhandles; /* of h and timer, not yet closed */
  unsigned gen; /* bumped on teardown: loops over slots stop when it moves */
  int pinned, bound, destroying, busy_counted, flush_queued, in_idle, was_up;
  int awaiting;             /* connecting: waits for a sentinel's answer before dialling */
  int counted;              /* pinned: counts against redis_pinned_max (bound or idle) */
  int multi, watch, sticky; /* pinned: state that forbids reuse */
  cmd_t *head, *tail;       /* slots in send order */
  size_t npending;          /* K_CMD slots (replies owed) */
  char *out;                /* formatted commands not written yet */
  size_t outlen, outcap;
  uint64_t connect_deadline;
  uint64_t timer_due; /* 0: timer not armed */
  unsigned backoff_ms;
  redisReply **inbox; /* pinned: replies no slot was waiting for */
  size_t inbox_first, inbox_len, inbox_cap;
  fcfs_redis_conn_t *next_flush, *next_idle, *next_pinned;
};

typedef struct {
  char *src;
  size_t srclen;
  char sha[41];
} script_t;

/* The sentinel query of a pool: one at a time, on one stream. */
typedef struct {
  struct sockaddr_storage *addrs;
  int n;
  int index, tried; /* the sentinel asked now; how many were asked in this query */
  int active;       /* a query is under way (an attempt, or its stream closing) */
  int open;         /* the stream is initialised and not closing */
  int found;        /* the attempt got the master's address */
  int moved;        /* ... and it is not the one the connections used */
  int known;        /* some sentinel answered once */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
  } h;
  uv_connect_t creq;
  uv_write_t wreq;
  uv_timer_t timer;
  redisReader *reader;
  char *cmd; /* SENTINEL get-master-addr-by-name NAME, formatted once */
  int cmdlen;
} sentinel_t;

/* Reply blocks: the readers of the pool's connections build replies in
 * blocks recycled through the arena's free list, so a reply costs no
 * allocation once warm (strings up to REPLY_INLINE - 1 bytes live inside
 * the block). The arena outlives the pool while replies are out: the last
 * one freed after the pool is gone frees it. */
typedef struct rblock_s rblock_t;
typedef struct {
  rblock_t *free;
  int nfree;
  int orphan;  /* the pool is gone */
  size_t nout; /* blocks handed out, not freed yet */
} arena_t;

struct rblock_s {
  redisReply rep; /* first: a reply is its block */
  arena_t *arena;
  rblock_t *next;
  char small[REPLY_INLINE];
};

struct fcfs_redis_s {
  uv_loop_t *loop;
  const fcfs_conf_t *conf;
  fcfs_pool_stats_t *stats;
  fcfs_pool_stats_t own_stats; /* when the caller passes none */
  int is_unix;
  char *path; /* unix socket */
  struct sockaddr_storage addr;
  char name[80];    /* addr as text, for the logs */
  sentinel_t sq;    /* sq.n > 0: addr comes from the sentinels */
  int master_fresh; /* addr was asked for after the last connection loss */
  fcfs_redis_conn_t **shared;
  int nshared, nup_shared, starting;
  fcfs_redis_conn_t *pinned; /* every pinned conn alive */
  fcfs_redis_conn_t *idle;   /* clean pinned conns ready for reuse */
  int npinned;
  fcfs_redis_conn_t *flush_head;
  uv_prepare_t prepare;
  uv_check_t check;
  uv_idle_t one_more_poll; /* active: the write is deferred, the next poll does not block */
  int flush_active;
  cmd_t *free_cmds;
  int nfree_cmds;
  script_t *scripts;
  int nscripts, scripts_cap;
  int closing, handles;
  void (*done)(void *);
  void *done_arg;
  arena_t *arena;
  char readbuf[READ_BUF_SIZE]; /* shared: each read is fed to a reader at once */
};

static void conn_connect(fcfs_redis_conn_t *c);
static void conn_teardown(fcfs_redis_conn_t *c, const char *err);
static void conn_sweep(fcfs_redis_conn_t *c);
static void on_timer(uv_timer_t *t);
static void pinned_destroy(fcfs_redis_conn_t *c);
static void sentinel_ask(fcfs_redis_t *r);

const char *fcfs_redis_strerror(int rc) {
  switch (rc) {
  case 0:
    return "ok";
  case FCFS_REDIS_EUNAVAILABLE:
    return fcfs_redis_eunavailable;
  case FCFS_REDIS_ECLOSED:
    return fcfs_redis_eclosed;
  case FCFS_REDIS_EBUSY:
    return fcfs_redis_ebusy;
  case FCFS_REDIS_ENOSCRIPT:
    return "unknown script";
  case FCFS_REDIS_EINVAL:
    return "invalid argument";
  case FCFS_REDIS_ENOMEM:
    return "out of memory";
  default:
    return "error";
  }
}

/* ---- replies ---- */

void fcfs_redis_reply_free(redisReply *rep) {
  if (!rep) return;
  rblock_t *b = (rblock_t *)rep;
  if (rep->type == REDIS_REPLY_ARRAY && rep->element) {
    for (size_t i = 0; i < rep->elements; i++)
      fcfs_redis_reply_free(rep->element[i]);
    free(rep->element);
  } else if (rep->str && rep->str != b->small) {
    free(rep->str);
  }
  arena_t *a = b->arena;
  a->nout--;
  if (a->orphan || a->nfree >= FREE_REPLIES_MAX) {
    free(b);
    if (a->orphan && !a->nout) free(a);
    return;
  }
  b->next = a->free;
  a->free = b;
  a->nfree++;
}

static redisReply *reply_new(const redisReadTask *task, int type) {
  arena_t *a = task->privdata;
  rblock_t *b = a->free;
  if (b) {
    a->free = b->next;
    a->nfree--;
  } else if (!(b = malloc(sizeof *b))) {
    return NULL;
  }
  memset(&b->rep, 0, sizeof b->rep);
  b->rep.type = type;
  b->arena = a;
  a->nout++;
  return &b->rep;
}

/* Link a finished reply into its parent array, as hiredis' own do. */
static void *reply_link(const redisReadTask *task, redisReply *rep) {
  if (rep && task->parent) ((redisReply *)task->parent->obj)->element[task->idx] = rep;
  return rep;
}

static void *reply_string(const redisReadTask *task, char *str, size_t len) {
  redisReply *rep = reply_new(task, task->type);
  if (!rep) return NULL;
  rblock_t *b = (rblock_t *)rep;
  rep->str = len < REPLY_INLINE ? b->small : malloc(len + 1);
  if (!rep->str) {
    fcfs_redis_reply_free(rep);
    return NULL;
  }
  memcpy(rep->str, str, len);
  rep->str[len] = 0;
  rep->len = len;
  return reply_link(task, rep);
}

static void *reply_array(const redisReadTask *task, int n) {
  redisReply *rep = reply_new(task, REDIS_REPLY_ARRAY);
  if (!rep) return NULL;
  if (n > 0 && !(rep->element = calloc((size_t)n, sizeof *rep->element))) {
    fcfs_redis_reply_free(rep);
    return NULL;
  }
  rep->elements = n > 0 ? (size_t)n : 0;
  return reply_link(task, rep);
}

static void *reply_integer(const redisReadTask *task, long long v) {
  redisReply *rep = reply_new(task, REDIS_REPLY_INTEGER);
  if (rep) rep->integer = v;
  return reply_link(task, rep);
}

static void *reply_nil(const redisReadTask *task) {
  return reply_link(task, reply_new(task, REDIS_REPLY_NIL));
}

static void reply_free_fn(void *rep) {
  fcfs_redis_reply_free(rep);
}

static redisReplyObjectFunctions reply_fns = {reply_string, reply_array, reply_integer, reply_nil,
                                              reply_free_fn};

/* The pool is gone: free the idle blocks; the arena goes with the last reply. */
static void arena_close(arena_t *a) {
  while (a->free) {
    rblock_t *b = a->free;
    a->free = b->next;
    free(b);
  }
  a->nfree = 0;
  a->orphan = 1;
  if (!a->nout) free(a);
}

/* ---- small helpers ---- */

static uint64_t ms_of(double s) {
  if (s <= 0) return 1;
  if (s > 1e9) s = 1e9;
  uint64_t ms = (uint64_t)(s * 1000.0 + 0.5);
  return ms ? ms : 1;
}

static uint64_t stall_ms(const fcfs_redis_t *r) {
  uint64_t ms = 2 * ms_of(r->conf->redis_timeout);
  return ms < STALL_MIN_MS ? STALL_MIN_MS : ms;
}

double fcfs_redis_default_timeout(const fcfs_redis_t *r) {
  return r->conf->redis_timeout > 0 ? r->conf->redis_timeout : 1.0;
}

static cmd_t *cmd_alloc(fcfs_redis_t *r) {
  cmd_t *q = r->free_cmds;
  char *keep = NULL;
  size_t keepcap = 0;
  if (q) {
    r->free_cmds = q->next;
    r->nfree_cmds--;
    keep = q->evalsha;
    keepcap = q->evalshacap;
  } else if (!(q = malloc(sizeof *q))) {
    return NULL;
  }
  memset(q, 0, sizeof *q);
  q->evalsha = keep;
  q->evalshacap = keepcap;
  return q;
}

static void cmd_free(fcfs_redis_t *r, cmd_t *q) {
  if (q->load_err) fcfs_redis_reply_free(q->load_err);
  q->load_err = NULL;
  if (q->evalshacap > KEEP_CMD_MAX || r->nfree_cmds >= FREE_CMDS_MAX) {
    free(q->evalsha);
    q->evalsha = NULL;
    q->evalshacap = 0;
  }
  if (r->nfree_cmds >= FREE_CMDS_MAX) {
    free(q);
    return;
  }
  q->next = r->free_cmds;
  r->free_cmds = q;
  r->nfree_cmds++;
}

/* run(): keep the bytes of the EVALSHA just queued for a resend after
 * NOSCRIPT, in the slot's own buffer (kept across recycling). */
static int cmd_keep(cmd_t *q, const char *p, size_t len) {
  if (len > q->evalshacap) {
    char *n = realloc(q->evalsha, len);
    if (!n) return FCFS_REDIS_ENOMEM;
    q->evalsha = n;
    q->evalshacap = len;
  }
  memcpy(q->evalsha, p, len);
  q->evalshalen = len;
  return 0;
}

static void busy_update(fcfs_redis_conn_t *c) {
  int busy = c->pinned ? c->bound : c->npending > 0;
  if (busy == c->busy_counted) return;
  c->busy_counted = busy;
  if (busy)
    c->r->stats->in_use++;
  else
    c->r->stats->in_use--;
}

static void maybe_finish(fcfs_redis_t *r) {
  if (!r->closing || r->handles > 0) return;
  for (int i = 0; i < r->nshared; i++)
    free(r->shared[i]);
  free(r->shared);
  while (r->free_cmds) {
    cmd_t *q = r->free_cmds;
    r->free_cmds = q->next;
    free(q->evalsha);
    free(q);
  }
  for (int i = 0; i < r->nscripts; i++) {
    free(r->scripts[i].src);
  }
  free(r->scripts);
  free(r->path);
  free(r->sq.addrs);
  free(r->sq.cmd);
  arena_close(r->arena);
  void (*done)(void *) = r->done;
  void *arg = r->done_arg;
  free(r);
  if (done) done(arg);
}

/* ---- timer: connect deadline, command deadlines, backoff ---- */

static void timer_arm_at(fcfs_redis_conn_t *c, uint64_t due) {
  if (c->timer_due && c->timer_due <= due) return;
  uint64_t now = uv_now(c->r->loop);
  c->timer_due = due;
  uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  fcfs_redis_conn_t *c = t->data;
  c->timer_due = 0;
  if (c->state == ST_DOWN) {
    if (!c->pinned && !c->r->closing) conn_connect(c);
    return;
  }
  if (c->state == ST_CONNECTING && uv_now(c->r->loop) >= c->connect_deadline) {
    c->r->stats->errors++;
    conn_teardown(c, fcfs_redis_etimeout);
    return;
  }
  conn_sweep(c);
}

/* ---- flushing ---- */

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  fcfs_redis_conn_t *c = w->conn;
  if (!c->out && c->state != ST_CLOSING) { /* keep the buffer as the next one */
    c->out = w->data;
    c->outcap = w->cap;
  } else {
    free(w->data);
  }
  free(w);
  if (status < 0 && status != UV_ECANCELED && c->state == ST_UP) {
    c->r->stats->errors++;
    fcfs_log(FCFS_LOG_WARN, "redis: write failed: %s", uv_strerror(status));
    conn_teardown(c, fcfs_redis_eclosed);
  }
}

static void conn_write(fcfs_redis_conn_t *c) {
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->outlen);
  c->r->stats->writes++;
  int n = uv_try_write(&c->h.stream, &b, 1);
  if (n >= 0 && (size_t)n == c->outlen) {
    c->outlen = 0;
    return;
  }
  if (n < 0 && n != UV_EAGAIN) goto fail;
  if (n < 0) n = 0;
  wreq_t *w = malloc(sizeof *w);
  if (!w) goto fail;
  w->conn = c;
  w->data = c->out;
  w->cap = c->outcap;
  b = uv_buf_init(c->out + n, (unsigned)(c->outlen - (size_t)n));
  c->out = NULL;
  c->outlen = c->outcap = 0;
  n = uv_write(&w->req, &c->h.stream, &b, 1, on_write);
  if (n < 0) {
    free(w->data);
    free(w);
    goto fail;
  }
  return;
fail:
  c->r->stats->errors++;
  fcfs_log(FCFS_LOG_WARN, "redis: write failed: %s", uv_strerror(n));
  conn_teardown(c, fcfs_redis_eclosed);
}

/* A burst of requests in one loop iteration (thousands of entries at the
 * opening of a sale) would hold its commands until the iteration ends, and
 * their replies until the next: past EARLY_FLUSH bytes what the socket takes
 * leaves at once, so Redis works while the loop still reads requests. Only a
 * non-blocking write with nothing queued before it; a failure is left to
 * the end-of-iteration flush, which reports it. */
static void write_early(fcfs_redis_conn_t *c) {
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->outlen);
  int n = uv_try_write(&c->h.stream, &b, 1);
  if (n <= 0) return;
  c->r->stats->writes++;
  c->outlen -= (size_t)n;
  memmove(c->out, c->out + n, c->outlen);
}

static void flush_all(fcfs_redis_t *r) {
  fcfs_redis_conn_t *c;
  while ((c = r->flush_head)) {
    r->flush_head = c->next_flush;
    c->flush_queued = 0;
    if (c->state == ST_UP && c->outlen) conn_write(c);
  }
  if (r->flush_active) {
    uv_prepare_stop(&r->prepare);
    uv_check_stop(&r->check);
    r->flush_active = 0;
  }
  uv_idle_stop(&r->one_more_poll);
}

static void on_one_more_poll(uv_idle_t *h) {
  (void)h; /* being active is its whole job */
}

/* Before the poll: commands queued outside I/O callbacks (timers, closes)
 * leave now; deferred ones wait for the non-blocking poll's check. */
static void on_prepare(uv_prepare_t *h) {
  fcfs_redis_t *r = h->data;
  if (!uv_is_active((uv_handle_t *)&r->one_more_poll)) flush_all(r);
}

/* After the poll's I/O callbacks: the first time, defer by one iteration
 * (see the top comment); the second, write. */
static void on_check(uv_check_t *h) {
  fcfs_redis_t *r = h->data;
  if (r->flush_head && !uv_is_active((uv_handle_t *)&r->one_more_poll)) {
    uv_idle_start(&r->one_more_poll, on_one_more_poll);
    return;
  }
  flush_all(r);
}

static void queue_flush(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  if (c->flush_queued || r->closing) return;
  c->flush_queued = 1;
  c->next_flush = r->flush_head;
  r->flush_head = c;
  if (!r->flush_active) {
    uv_prepare_start(&r->prepare, on_prepare);
    uv_check_start(&r->check, on_check);
    r->flush_active = 1;
  }
}

/* ---- slots ---- */

/* Room for len more bytes in the output buffer. */
static int out_reserve(fcfs_redis_conn_t *c, size_t len) {
  if (len > SIZE_MAX / 2 - c->outlen) return FCFS_REDIS_ENOMEM;
  if (c->outlen + len > c->outcap) {
    size_t cap = c->outcap ? c->outcap : 4096;
    while (cap < c->outlen + len)
      cap *= 2;
    char *n = realloc(c->out, cap);
    if (!n) return FCFS_REDIS_ENOMEM;
    c->out = n;
    c->outcap = cap;
  }
  return 0;
}

static int out_append(fcfs_redis_conn_t *c, const char *p, size_t len) {
  int rc = out_reserve(c, len);
  if (rc < 0) return rc;
  memcpy(c->out + c->outlen, p, len);
  c->outlen += len;
  return 0;
}

/* RESP by hand: *<argc>\r\n then $<len>\r\n<arg>\r\n per argument. */
static size_t dec_len(size_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    n++;
  }
  return n;
}

/* The decimal digits of v at p (n = dec_len(v) of them); returns p + n. */
static char *dec_put(char *p, size_t v, size_t n) {
  for (size_t i = n; i-- > 0; v /= 10)
    p[i] = (char)('0' + v % 10);
  return p + n;
}

/* The digits of v at p; returns their end (most counts and lengths of a
 * command have one digit). */
static char *dec_out(char *p, size_t v) {
  if (v < 10) {
    *p = (char)('0' + v);
    return p + 1;
  }
  return dec_put(p, v, dec_len(v));
}

/* The size of the command, 0 if it does not fit a size_t. */
static size_t resp_len(int argc, const size_t *argvlen) {
  size_t n = 3 + dec_len((size_t)argc);
  for (int i = 0; i < argc; i++) {
    size_t one = 5 + (argvlen[i] < 10 ? 1 : dec_len(argvlen[i]));
    if (argvlen[i] > SIZE_MAX / 2 - one || n > SIZE_MAX / 2 - one - argvlen[i]) return 0;
    n += one + argvlen[i];
  }
  return n;
}

static char *resp_put(char *p, int argc, const char **argv, const size_t *argvlen) {
  *p++ = '*';
  p = dec_out(p, (size_t)argc);
  *p++ = '\r';
  *p++ = '\n';
  for (int i = 0; i < argc; i++) {
    *p++ = '$';
    p = dec_out(p, argvlen[i]);
    *p++ = '\r';
    *p++ = '\n';
    if (argvlen[i]) memcpy(p, argv[i], argvlen[i]);
    p += argvlen[i];
    *p++ = '\r';
    *p++ = '\n';
  }
  return p;
}

/* Format one command at the end of the output buffer. */
static int out_command(fcfs_redis_conn_t *c, int argc, const char **argv, const size_t *argvlen) {
  size_t len = resp_len(argc, argvlen);
  int rc = len ? out_reserve(c, len) : FCFS_REDIS_ENOMEM;
  if (rc < 0) return rc;
  resp_put(c->out + c->outlen, argc, argv, argvlen);
  c->outlen += len;
  return 0;
}

static void slot_push(fcfs_redis_conn_t *c, cmd_t *q) {
  q->conn = c;
  q->next = NULL;
  if (c->tail)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  if (q->kind != K_READ) {
    c->npending++;
    busy_update(c);
  }
  timer_arm_at(c, q->deadline);
}

/* Queue one command, formatted into the output buffer, and its slot (a
 * run() slot keeps a copy of its bytes). A shared connection owing
 * redis_queue_max replies already refuses with FCFS_REDIS_EBUSY. */
static int conn_send(fcfs_redis_conn_t *c, cmd_t *q, int argc, const char **argv,
                     const size_t *argvlen) {
  int max = c->r->conf->redis_queue_max;
  if (!c->pinned && max > 0 && c->npending >= (size_t)max) return FCFS_REDIS_EBUSY;
  size_t mark = c->outlen;
  int rc = out_command(c, argc, argv, argvlen);
  if (rc == 0 && q->script) rc = cmd_keep(q, c->out + mark, c->outlen - mark);
  if (rc < 0) {
    c->outlen = mark;
    return rc;
  }
  slot_push(c, q);
  c->r->stats->requests++;
  if (c->state == ST_UP) {
    queue_flush(c);
    if (c->outlen >= EARLY_FLUSH) write_early(c);
  }
  return 0;
}

/* Drop K_READ slots nobody waits for any more (they are owed no reply). */
static void purge_dead_reads(fcfs_redis_conn_t *c) {
  cmd_t *prev = NULL, *q = c->head;
  while (q) {
    cmd_t *next = q->next;
    if (q->kind == K_READ && !q->cb) {
      if (prev)
        prev->next = next;
      else
        c->head = next;
      if (c->tail == q) c->tail = prev;
      cmd_free(c->r, q);
    } else {
      prev = q;
    }
    q = next;
  }
}

static void conn_sweep(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  uint64_t now = uv_now(r->loop);
  unsigned gen = c->gen;
  for (cmd_t *q = c->head; q; q = q->next) {
    if (!q->cb || q->deadline > now) continue;
    fcfs_redis_cb cb = q->cb;
    q->cb = NULL;
    if (q->kind != K_READ) r->stats->timeouts++;
    cb(q->arg, NULL, fcfs_redis_etimeout);
    /* Only a teardown frees slots during a callback; it bumps gen. */
    if (c->gen != gen) return;
  }
  purge_dead_reads(c);
  uint64_t due = UINT64_MAX;
  cmd_t *h = c->head;
  if (h && !h->cb) {
    uint64_t stall = h->deadline + stall_ms(r);
    if (now >= stall) {
      r->stats->errors++;
      fcfs_log(FCFS_LOG_WARN, "redis: no reply for %llu ms, closing the connection",
               (unsigned long long)(now - h->deadline + ms_of(r->conf->redis_timeout)));
      conn_teardown(c, fcfs_redis_eclosed);
      return;
    }
    due = stall;
  }
  for (cmd_t *q = c->head; q; q = q->next)
    if (q->cb && q->deadline < due) due = q->deadline;
  if (c->state == ST_CONNECTING && c->connect_deadline < due) due = c->connect_deadline;
  if (due != UINT64_MAX) timer_arm_at(c, due);
}

static void inbox_clear(fcfs_redis_conn_t *c) {
  for (size_t i = 0; i < c->inbox_len; i++)
    fcfs_redis_reply_free(c->inbox[c->inbox_first + i]);
  free(c->inbox);
  c->inbox = NULL;
  c->inbox_first = c->inbox_len = c->inbox_cap = 0;
}

static int inbox_push(fcfs_redis_conn_t *c, redisReply *rep) {
  if (c->inbox_len >= INBOX_MAX) return -1;
  if (c->inbox_first + c->inbox_len == c->inbox_cap) {
    if (c->inbox_first) {
      memmove(c->inbox, c->inbox + c->inbox_first, c->inbox_len * sizeof *c->inbox);
      c->inbox_first = 0;
    } else {
      size_t cap = c->inbox_cap ? c->inbox_cap * 2 : 16;
      redisReply **n = realloc(c->inbox, cap * sizeof *n);
      if (!n) return -1;
      c->inbox = n;
      c->inbox_cap = cap;
    }
  }
  c->inbox[c->inbox_first + c->inbox_len++] = rep;
  return 0;
}

static int is_noscript(const redisReply *rep) {
  return rep->type == REDIS_REPLY_ERROR && rep->len >= 8 && !memcmp(rep->str, "NOSCRIPT", 8);
}

/* run() got NOSCRIPT: send SCRIPT LOAD and the same EVALSHA again, back to
 * back on this connection. Returns 0 if q is back in the FIFO. */
static int script_retry(fcfs_redis_conn_t *c, cmd_t *q) {
  fcfs_redis_t *r = c->r;
  script_t *s = &r->scripts[q->script - 1];
  const char *argv[3] = {"SCRIPT", "LOAD", s->src};
  size_t argvlen[3] = {6, 4, s->srclen};
  size_t mark = c->outlen;
  cmd_t *l = cmd_alloc(r);
  if (!l || out_command(c, 3, argv, argvlen) < 0 || out_append(c, q->evalsha, q->evalshalen) < 0) {
    c->outlen = mark;
    if (l) cmd_free(r, l);
    return -1;
  }
  l->kind = K_LOAD;
  l->owner = q;
  l->deadline = q->deadline;
  q->retried = 1;
  slot_push(c, l);
  slot_push(c, q);
  r->stats->requests += 2;
  if (c->state == ST_UP) queue_flush(c);
  return 0;
}

/* One reply read: give it to the oldest slot. */
static void deliver(fcfs_redis_conn_t *c, redisReply *rep) {
  fcfs_redis_t *r = c->r;
  cmd_t *q;
  while ((q = c->head) && q->kind == K_READ && !q->cb) { /* abandoned reads */
    c->head = q->next;
    if (!c->head) c->tail = NULL;
    cmd_free(r, q);
  }
  if (!q) {
    if (c->pinned && inbox_push(c, rep) == 0) return;
    fcfs_redis_reply_free(rep);
    r->stats->errors++;
    fcfs_log(FCFS_LOG_WARN, "redis: %s",
             c->pinned ? "too many unread replies on a pinned connection"
                       : "reply with no command pending");
    conn_teardown(c, fcfs_redis_eclosed);
    return;
  }
  c->head = q->next;
  if (!c->head) c->tail = NULL;
  if (q->kind != K_READ) {
    c->npending--;
    busy_update(c);
  }
  if (q->kind == K_LOAD) {
    if (rep->type == REDIS_REPLY_ERROR && q->owner && !q->owner->load_err) {
      q->owner->load_err = rep;
      rep = NULL;
    }
    if (rep) fcfs_redis_reply_free(rep);
    cmd_free(r, q);
    return;
  }
  if (q->script && !q->retried && q->cb && is_noscript(rep)) {
    if (script_retry(c, q) == 0) {
      fcfs_redis_reply_free(rep);
      return;
    }
  }
  if (q->load_err && is_noscript(rep)) {
    fcfs_redis_reply_free(rep);
    rep = q->load_err;
    q->load_err = NULL;
  }
  fcfs_redis_cb cb = q->cb;
  void *arg = q->arg;
  cmd_free(r, q);
  if (cb)
    cb(arg, rep, NULL);
  else
    fcfs_redis_reply_free(rep);
}

/* ---- connection life ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  fcfs_redis_conn_t *c = h->data;
  *buf = uv_buf_init(c->r->readbuf, sizeof c->r->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  fcfs_redis_conn_t *c = s->data;
  fcfs_redis_t *r = c->r;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) r->stats->errors++;
    fcfs_log(c->pinned ? FCFS_LOG_INFO : FCFS_LOG_WARN, "redis: connection lost: %s",
             uv_strerror((int)nread));
    conn_teardown(c, fcfs_redis_eclosed);
    return;
  }
  if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) goto proto;
  unsigned gen = c->gen;
  for (;;) {
    void *rep = NULL;
    if (redisReaderGetReply(c->reader, &rep) != REDIS_OK) goto proto;
    if (!rep) break;
    deliver(c, rep);
    if (c->gen != gen) return; /* torn down by a callback */
  }
  return;
proto:
  r->stats->errors++;
  fcfs_log(FCFS_LOG_ERROR, "redis: protocol error: %s", c->reader ? c->reader->errstr : "");
  conn_teardown(c, fcfs_redis_eclosed);
}

static void on_stream_closed(uv_handle_t *h) {
  fcfs_redis_conn_t *c = h->data;
  fcfs_redis_t *r = c->r;
  c->state = ST_DOWN;
  c->nhandles--;
  r->handles--;
  if (c->destroying) {
    if (!c->nhandles && c->pinned) free(c);
  } else if (c->pinned) {
    if (!c->bound) pinned_destroy(c);
  } else if (!r->closing) {
    unsigned ms = c->was_up ? BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (ms < BACKOFF_MIN_MS) ms = BACKOFF_MIN_MS;
    if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
    c->backoff_ms = ms;
    c->was_up = 0;
    c->timer_due = 0;
    uv_timer_start(&c->timer, on_timer, ms, 0);
  }
  maybe_finish(r);
}

static void on_timer_closed(uv_handle_t *h) {
  fcfs_redis_conn_t *c = h->data;
  fcfs_redis_t *r = c->r;
  c->nhandles--;
  r->handles--;
  if (!c->nhandles && c->pinned) free(c);
  maybe_finish(r);
}

static void idle_remove(fcfs_redis_conn_t *c) {
  if (!c->in_idle) return;
  for (fcfs_redis_conn_t **p = &c->r->idle; *p; p = &(*p)->next_idle)
    if (*p == c) {
      *p = c->next_idle;
      break;
    }
  c->in_idle = 0;
}

/* Close the stream and fail every slot with err. Safe to call from any
 * callback; slots are handed back before their callbacks run. */
static void conn_teardown(fcfs_redis_conn_t *c, const char *err) {
  fcfs_redis_t *r = c->r;
  if (c->state != ST_UP && c->state != ST_CONNECTING) return;
  c->gen++;
  if (c->state == ST_UP) {
    r->stats->size--;
    if (!c->pinned && --r->nup_shared == 0) {
      r->stats->up = 0;
      if (!r->closing) fcfs_log(FCFS_LOG_ERROR, "redis: no connection up, calls fail fast");
    }
  }
  if (!c->pinned && c->state == ST_CONNECTING) r->starting = 0;
  /* a loss (not a clean unpin or the pool closing): the next connect asks the sentinels */
  if (!r->closing && (!c->pinned || c->bound)) r->master_fresh = 0;
  c->awaiting = 0;
  c->state = ST_CLOSING;
  idle_remove(c);
  uv_timer_stop(&c->timer);
  c->timer_due = 0;
  if (c->reader) redisReaderFree(c->reader);
  c->reader = NULL;
  c->outlen = 0;
  inbox_clear(c);
  uv_close(&c->h.handle, on_stream_closed);
  cmd_t *q = c->head;
  c->head = c->tail = NULL;
  c->npending = 0;
  busy_update(c);
  while (q) {
    cmd_t *next = q->next;
    fcfs_redis_cb cb = q->cb;
    void *arg = q->arg;
    cmd_free(r, q);
    if (cb) cb(arg, NULL, err);
    q = next;
  }
}

static void on_connect(uv_connect_t *req, int status) {
  fcfs_redis_conn_t *c = req->data;
  fcfs_redis_t *r = c->r;
  if (status == UV_ECANCELED || c->state != ST_CONNECTING) return;
  if (status < 0) {
    r->stats->errors++;
    if (!c->pinned && r->starting)
      fcfs_log(FCFS_LOG_WARN, "redis: connect to %s failed: %s", r->name, uv_strerror(status));
    conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  if (!(c->reader = redisReaderCreateWithFunctions(&reply_fns)) ||
      uv_read_start(&c->h.stream, on_alloc, on_read) < 0) {
    r->stats->errors++;
    conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  c->reader->privdata = r->arena;
  c->state = ST_UP;
  c->was_up = 1;
  r->stats->size++;
  if (!c->pinned) {
    r->starting = 0;
    if (r->nup_shared++ == 0) {
      r->stats->up = 1;
      fcfs_log(FCFS_LOG_INFO, "redis: connected to %s", r->name);
    }
  }
  if (c->outlen) queue_flush(c);
  c->timer_due = 0;
  uv_timer_stop(&c->timer);
  conn_sweep(c); /* re-arm for the command deadlines */
}

/* The reply to AUTH or SELECT sent first on every connection: an error
 * closes the connection (it reconnects with backoff if shared). */
static void on_setup_reply(void *arg, redisReply *rep, const char *err) {
  fcfs_redis_conn_t *c = arg;
  if (err) { /* "closed": gone already; "timeout": not usable without it */
    if (err == fcfs_redis_etimeout) conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  if (rep->type == REDIS_REPLY_ERROR) {
    c->r->stats->errors++;
    fcfs_log(FCFS_LOG_ERROR, "redis: connection setup refused: %.*s", (int)rep->len, rep->str);
    fcfs_redis_reply_free(rep);
    conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  fcfs_redis_reply_free(rep);
}

/* The reply to ROLE (Sentinel only): a server that is not the master (a
 * sentinel answered with an old address, or it was demoted since) is left. */
static void on_role_reply(void *arg, redisReply *rep, const char *err) {
  fcfs_redis_conn_t *c = arg;
  if (err) {
    if (err == fcfs_redis_etimeout) conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  int master = rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
               rep->element[0]->type == REDIS_REPLY_STRING &&
               !strcmp(rep->element[0]->str, "master");
  if (!master) {
    c->r->stats->errors++;
    fcfs_log(FCFS_LOG_WARN, "redis: %s is not the master, asking the sentinels again", c->r->name);
    conn_teardown(c, fcfs_redis_eunavailable);
  }
  fcfs_redis_reply_free(rep);
}

/* Queue AUTH, SELECT and (Sentinel) ROLE ahead of anything else on a
 * connection being opened. */
static int conn_setup(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  char db[16];
  const char *argv[2];
  size_t argvlen[2];
  for (int k = 0; k < 3; k++) {
    int argc = 2;
    if (k == 0) {
      if (!r->conf->redis_password || !r->conf->redis_password[0]) continue;
      argv[0] = "AUTH";
      argv[1] = r->conf->redis_password;
    } else if (k == 1) {
      if (r->conf->redis_db <= 0) continue;
      size_t n = dec_len((size_t)r->conf->redis_db);
      *dec_put(db, (size_t)r->conf->redis_db, n) = 0;
      argv[0] = "SELECT";
      argv[1] = db;
    } else {
      if (!r->sq.n) continue;
      argv[0] = "ROLE";
      argc = 1;
    }
    for (int i = 0; i < argc; i++)
      argvlen[i] = strlen(argv[i]);
    cmd_t *q = cmd_alloc(r);
    if (!q || out_command(c, argc, argv, argvlen) < 0) {
      if (q) cmd_free(r, q);
      return FCFS_REDIS_ENOMEM;
    }
    q->kind = K_CMD;
    q->cb = k == 2 ? on_role_reply : on_setup_reply;
    q->arg = c;
    q->deadline = c->connect_deadline;
    slot_push(c, q);
  }
  return 0;
}

static void conn_dial(fcfs_redis_conn_t *c);

static void conn_connect(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  int rc;
  rc = r->is_unix ? uv_pipe_init(r->loop, &c->h.pipe, 0) : uv_tcp_init(r->loop, &c->h.tcp);
  if (rc < 0) { /* nothing to close: retry later like a failed connect */
    r->stats->errors++;
    if (!c->pinned) uv_timer_start(&c->timer, on_timer, BACKOFF_MAX_MS, 0);
    return;
  }
  c->h.handle.data = c;
  c->creq.data = c;
  c->nhandles++;
  r->handles++;
  r->stats->connects++;
  c->state = ST_CONNECTING;
  c->connect_deadline = uv_now(r->loop) + ms_of(r->conf->redis_connect_timeout);
  c->timer_due = 0;
  timer_arm_at(c, c->connect_deadline);
  if (conn_setup(c) < 0) {
    r->stats->errors++;
    conn_teardown(c, fcfs_redis_eunavailable);
    return;
  }
  if (r->sq.n && !r->master_fresh) { /* dialled by sentinel_done() */
    c->awaiting = 1;
    sentinel_ask(r);
    return;
  }
  conn_dial(c);
}

/* Connect the initialised stream of c to r->addr (or r->path). */
static void conn_dial(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  int rc;
  if (r->is_unix) {
    uv_pipe_connect(&c->creq, &c->h.pipe, r->path, on_connect); /* errors come to on_connect */
    return;
  }
  uv_tcp_nodelay(&c->h.tcp, 1);
  rc = uv_tcp_connect(&c->creq, &c->h.tcp, (const struct sockaddr *)&r->addr, on_connect);
  if (rc < 0) {
    r->stats->errors++;
    conn_teardown(c, fcfs_redis_eunavailable);
  }
}

static fcfs_redis_conn_t *conn_new(fcfs_redis_t *r, int pinned) {
  fcfs_redis_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->r = r;
  c->pinned = pinned;
  c->state = ST_DOWN;
  uv_timer_init(r->loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 1;
  r->handles++;
  return c;
}

/* A pinned conn nobody holds and whose stream is closed: close the timer,
 * free on its close callback. */
static void pinned_destroy(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  if (c->destroying) return;
  c->destroying = 1;
  for (fcfs_redis_conn_t **p = &r->pinned; *p; p = &(*p)->next_pinned)
    if (*p == c) {
      *p = c->next_pinned;
      break;
    }
  if (c->counted) r->npinned--;
  c->counted = 0;
  free(c->out);
  c->out = NULL;
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- Sentinel: where is the master? ---- */

static void sq_on_recheck(uv_timer_t *t) {
  sentinel_ask(t->data);
}

/* The master moved while connections were up: close them (shared ones
 * reconnect at once, to the new address). */
static void sentinel_moved(fcfs_redis_t *r) {
  fcfs_redis_conn_t *c;
  fcfs_log(FCFS_LOG_NOTICE, "redis: the master moved to %s, reconnecting", r->name);
  for (int i = 0; i < r->nshared; i++)
    if (r->shared[i]->state == ST_UP) conn_teardown(r->shared[i], fcfs_redis_eclosed);
  while ((c = r->idle)) {
    idle_remove(c);
    conn_teardown(c, fcfs_redis_eclosed);
  }
}

/* A connection that waited for the sentinels: dial, or fail it. */
static void conn_resume(fcfs_redis_conn_t *c, int found) {
  c->awaiting = 0;
  if (found)
    conn_dial(c);
  else
    conn_teardown(c, fcfs_redis_eunavailable);
}

/* The query ended: dial (found) or fail (not found) every connection waiting
 * for it. A failure tears them down: shared ones retry after their backoff. */
static void sentinel_done(fcfs_redis_t *r, int found) {
  r->sq.active = 0;
  uv_timer_start(&r->sq.timer, sq_on_recheck, SENTINEL_RECHECK_MS, 0);
  if (found && r->sq.moved) sentinel_moved(r);
  if (found)
    r->master_fresh = 1;
  else
    r->stats->errors++;
  for (int i = 0; i < r->nshared; i++)
    if (r->shared[i]->awaiting) conn_resume(r->shared[i], found);
again: /* a teardown's callbacks may unpin (and unlink) pinned connections */
  for (fcfs_redis_conn_t *c = r->pinned; c; c = c->next_pinned)
    if (c->awaiting) {
      conn_resume(c, found);
      goto again;
    }
}

static void sq_attempt(fcfs_redis_t *r);

static void sq_on_closed(uv_handle_t *h) {
  fcfs_redis_t *r = h->data;
  r->handles--;
  if (r->closing) {
    maybe_finish(r);
    return;
  }
  if (r->sq.found) {
    sentinel_done(r, 1);
  } else if (++r->sq.tried < r->sq.n) {
    r->sq.index = (r->sq.index + 1) % r->sq.n;
    sq_attempt(r);
  } else {
    fcfs_log(FCFS_LOG_WARN, "redis: no sentinel knows the master \"%s\"",
             r->conf->redis_master_name);
    sentinel_done(r, 0);
  }
}

/* End the attempt on the current sentinel (its stream closes; then the next
 * sentinel is asked, or the waiting connections are told). */
static void sq_end(fcfs_redis_t *r, int found) {
  if (!r->sq.open) return;
  r->sq.open = 0;
  r->sq.found = found;
  uv_timer_stop(&r->sq.timer);
  if (r->sq.reader) redisReaderFree(r->sq.reader);
  r->sq.reader = NULL;
  uv_close(&r->sq.h.handle, sq_on_closed);
}

static void sq_on_timeout(uv_timer_t *t) {
  fcfs_redis_t *r = t->data;
  fcfs_log(FCFS_LOG_WARN, "redis: sentinel %d: no answer in time", r->sq.index + 1);
  sq_end(r, 0);
}

/* The answer: [ip, port] (nil: the sentinel does not know the name). */
static int sq_take(fcfs_redis_t *r, const redisReply *rep) {
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
    return 0;
  char name[sizeof r->name];
  int n = snprintf(name, sizeof name, strchr(rep->element[0]->str, ':') ? "[%s]:%s" : "%s:%s",
                   rep->element[0]->str, rep->element[1]->str);
  if (n < 0 || (size_t)n >= sizeof name || fcfs_conf_ip_port(name, &r->addr) != 0) return 0;
  if (strcmp(name, r->name)) { /* a change is news; the first answer is not */
    fcfs_log(r->sq.known ? FCFS_LOG_NOTICE : FCFS_LOG_INFO,
             "redis: sentinel %d: master \"%s\" is %s", r->sq.index + 1, r->conf->redis_master_name,
             name);
    memcpy(r->name, name, (size_t)n + 1);
    r->sq.moved = r->sq.known;
  }
  r->sq.known = 1;
  return 1;
}

static void sq_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  fcfs_redis_t *r = h->data;
  (void)hint;
  *buf = uv_buf_init(r->readbuf, sizeof r->readbuf);
}

static void sq_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  fcfs_redis_t *r = s->data;
  void *rep = NULL;
  if (nread == 0) return;
  if (nread < 0 || redisReaderFeed(r->sq.reader, buf->base, (size_t)nread) != REDIS_OK ||
      redisReaderGetReply(r->sq.reader, &rep) != REDIS_OK) {
    sq_end(r, 0);
    return;
  }
  if (!rep) return; /* more to come */
  int found = sq_take(r, rep);
  if (!found)
    fcfs_log(FCFS_LOG_WARN, "redis: sentinel %d does not know the master \"%s\"", r->sq.index + 1,
             r->conf->redis_master_name);
  freeReplyObject(rep);
  sq_end(r, found);
}

static void sq_on_write(uv_write_t *req, int status) {
  fcfs_redis_t *r = req->data;
  if (status < 0 && status != UV_ECANCELED) sq_end(r, 0);
}

static void sq_on_connect(uv_connect_t *req, int status) {
  fcfs_redis_t *r = req->data;
  if (status == UV_ECANCELED || !r->sq.open) return;
  if (status < 0) {
    fcfs_log(FCFS_LOG_WARN, "redis: sentinel %d: %s", r->sq.index + 1, uv_strerror(status));
    sq_end(r, 0);
    return;
  }
  uv_buf_t b = uv_buf_init(r->sq.cmd, (unsigned)r->sq.cmdlen);
  if (!(r->sq.reader = redisReaderCreate()) ||
      uv_write(&r->sq.wreq, &r->sq.h.stream, &b, 1, sq_on_write) < 0 ||
      uv_read_start(&r->sq.h.stream, sq_on_alloc, sq_on_read) < 0)
    sq_end(r, 0);
}

/* Ask sentinel sq.index, within redis_connect_timeout. */
static void sq_attempt(fcfs_redis_t *r) {
  sentinel_t *sq = &r->sq;
  if (uv_tcp_init(r->loop, &sq->h.tcp) < 0) {
    sentinel_done(r, 0);
    return;
  }
  sq->h.handle.data = r;
  sq->creq.data = sq->wreq.data = r;
  sq->open = 1;
  sq->found = sq->moved = 0;
  r->handles++;
  uv_timer_start(&sq->timer, sq_on_timeout, ms_of(r->conf->redis_connect_timeout), 0);
  if (uv_tcp_connect(&sq->creq, &sq->h.tcp, (const struct sockaddr *)&sq->addrs[sq->index],
                     sq_on_connect) < 0)
    sq_end(r, 0);
}

/* Start a query unless one is under way; it begins with the sentinel that
 * answered last. */
static void sentinel_ask(fcfs_redis_t *r) {
  if (r->sq.active || r->closing) return;
  r->sq.active = 1;
  r->sq.tried = 0;
  sq_attempt(r);
}

/* ---- public API ---- */

static int parse_addr(fcfs_redis_t *r, const char *a) {
  if (!a || !*a) return -1;
  snprintf(r->name, sizeof r->name, "%s", a);
  if (!strncmp(a, "unix:", 5)) {
    r->is_unix = 1;
    r->path = strdup(a + 5);
    return r->path && *r->path ? 0 : -1;
  }
  return fcfs_conf_ip_port(a, &r->addr);
}

/* The sentinels of conf->redis_sentinels, and the query sent to them. */
static int sentinel_init(fcfs_redis_t *r) {
  const fcfs_conf_t *conf = r->conf;
  int n = 0;
  while (conf->redis_sentinels && conf->redis_sentinels[n])
    n++;
  if (!n) return 0;
  if (!(r->sq.addrs = calloc((size_t)n, sizeof *r->sq.addrs))) return -1;
  for (int i = 0; i < n; i++)
    if (fcfs_conf_ip_port(conf->redis_sentinels[i], &r->sq.addrs[i]) != 0) {
      fcfs_log(FCFS_LOG_ERROR, "redis: bad sentinel address \"%s\"", conf->redis_sentinels[i]);
      return -1;
    }
  const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", conf->redis_master_name};
  size_t argvlen[3] = {8, 23, strlen(conf->redis_master_name)};
  size_t len = resp_len(3, argvlen);
  if (!len || len > INT_MAX || !(r->sq.cmd = malloc(len))) return -1;
  resp_put(r->sq.cmd, 3, argv, argvlen);
  r->sq.cmdlen = (int)len;
  snprintf(r->name, sizeof r->name, "master \"%s\" (sentinels)", conf->redis_master_name);
  r->sq.n = n;
  return 0;
}

fcfs_redis_t *fcfs_redis_new(uv_loop_t *loop, const fcfs_conf_t *conf, fcfs_pool_stats_t *stats) {
  fcfs_redis_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = loop;
  r->conf = conf;
  r->stats = stats ? stats : &r->own_stats;
  if (!(r->arena = calloc(1, sizeof *r->arena))) goto fail;
  if (sentinel_init(r) < 0) goto fail;
  if (!r->sq.n && parse_addr(r, conf->redis) < 0) {
    fcfs_log(FCFS_LOG_ERROR, "redis: bad address \"%s\"", conf->redis ? conf->redis : "");
    goto fail;
  }
  r->nshared = conf->redis_connections > 0 ? conf->redis_connections : 1;
  if (!(r->shared = calloc((size_t)r->nshared, sizeof *r->shared))) goto fail;
  uv_prepare_init(loop, &r->prepare);
  uv_check_init(loop, &r->check);
  uv_idle_init(loop, &r->one_more_poll);
  r->prepare.data = r->check.data = r->one_more_poll.data = r;
  r->handles = 3;
  if (r->sq.n) {
    uv_timer_init(loop, &r->sq.timer);
    uv_unref((uv_handle_t *)&r->sq.timer); /* the recheck keeps no loop alive */
    r->sq.timer.data = r;
    r->handles++;
  }
  r->starting = 1;
  r->stats->circuit = FCFS_CIRCUIT_CLOSED;
  for (int i = 0; i < r->nshared; i++) {
    if (!(r->shared[i] = conn_new(r, 0))) {
      r->nshared = i;
      fcfs_redis_close(r, NULL, NULL);
      return NULL;
    }
  }
  for (int i = 0; i < r->nshared; i++)
    conn_connect(r->shared[i]);
  return r;
fail:
  free(r->path);
  free(r->sq.addrs);
  free(r->sq.cmd);
  free(r->arena);
  free(r);
  return NULL;
}

static void on_pool_handle_closed(uv_handle_t *h) {
  fcfs_redis_t *r = h->data;
  r->handles--;
  maybe_finish(r);
}

void fcfs_redis_close(fcfs_redis_t *r, void (*done)(void *), void *arg) {
  if (r->closing) return;
  r->closing = 1;
  r->done = done;
  r->done_arg = arg;
  r->flush_head = NULL;
  for (int i = 0; i < r->nshared; i++) {
    fcfs_redis_conn_t *c = r->shared[i];
    c->destroying = 1;
    conn_teardown(c, fcfs_redis_eclosed);
  }
  /* Pinned conns free themselves once both their handles are closed;
   * pinned_destroy() takes each off the list. */
  fcfs_redis_conn_t *c;
  while ((c = r->pinned)) {
    c->bound = 0;
    busy_update(c);
    conn_teardown(c, fcfs_redis_eclosed);
    pinned_destroy(c);
  }
  r->idle = NULL;
  for (int i = 0; i < r->nshared; i++) {
    free(r->shared[i]->out);
    r->shared[i]->out = NULL;
    uv_close((uv_handle_t *)&r->shared[i]->timer, on_timer_closed);
  }
  r->stats->up = 0;
  if (r->sq.n) {
    sq_end(r, 0); /* sq_on_closed sees r->closing */
    uv_close((uv_handle_t *)&r->sq.timer, on_pool_handle_closed);
  }
  uv_close((uv_handle_t *)&r->prepare, on_pool_handle_closed);
  uv_close((uv_handle_t *)&r->check, on_pool_handle_closed);
  uv_close((uv_handle_t *)&r->one_more_poll, on_pool_handle_closed);
}

/* Fill, then spill (see the top comment for the level): the first usable
 * shared connection in the pool's order while it owes fewer than
 * FCFS_REDIS_FILL replies (or redis_queue_max if lower, so it spills before
 * it would say "busy"), else the one owing the fewest. Usable: up, or
 * connecting before the very first connect ended (r->starting ends when a
 * shared connection comes up: the candidates are all up or all connecting). */
fcfs_redis_conn_t *fcfs_redis_shared(fcfs_redis_t *r) {
  fcfs_redis_conn_t *best = NULL;
  if (r->closing) return NULL;
  size_t fill = FCFS_REDIS_FILL, max = (size_t)r->conf->redis_queue_max;
  if (max > 0 && max < fill) fill = max;
  for (int i = 0; i < r->nshared; i++) {
    fcfs_redis_conn_t *c = r->shared[i];
    if (c->state != ST_UP && !(c->state == ST_CONNECTING && r->starting)) continue;
    if (c->npending < fill) return c;
    if (!best || c->npending < best->npending) best = c;
  }
  return best;
}

/* Pinned connections: remember what makes one unfit for reuse. */
static int name_is(const char *s, size_t len, const char *name) {
  return strlen(name) == len && !strncasecmp(s, name, len);
}

/* Command names with their lengths: a call compares lengths first (every
 * command of every request goes through fcfs_redis_needs_pin()). */
typedef struct {
  const char *s;
  size_t n;
} name_t;
#define NAME(x)                                                                                    \
  { x, sizeof x - 1 }

static int name_in(const char *s, size_t n, const name_t *t, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (t[i].n == n && !strncasecmp(s, t[i].s, n)) return 1;
  return 0;
}

/* Blocking commands leave the connection as it was once answered. */
static int is_blocking(const char *s, size_t n) {
  static const name_t blocking[] = {NAME("BLPOP"),      NAME("BRPOP"),  NAME("BRPOPLPUSH"),
                                    NAME("BLMOVE"),     NAME("BLMPOP"), NAME("BZPOPMIN"),
                                    NAME("BZPOPMAX"),   NAME("BZMPOP"), NAME("XREAD"),
                                    NAME("XREADGROUP"), NAME("WAIT"),   NAME("WAITAOF")};
  return name_in(s, n, blocking, sizeof blocking / sizeof blocking[0]);
}

static void track_state(fcfs_redis_conn_t *c, int argc, const char **argv, const size_t *argvlen) {
  const char *s = argv[0];
  size_t n = argvlen[0];
  if (name_is(s, n, "MULTI"))
    c->multi = 1;
  else if (name_is(s, n, "EXEC") || name_is(s, n, "DISCARD"))
    c->multi = c->watch = 0;
  else if (name_is(s, n, "WATCH"))
    c->watch = 1;
  else if (name_is(s, n, "UNWATCH"))
    c->watch = 0;
  else if (name_is(s, n, "CLIENT") ||
           (fcfs_redis_needs_pin(argc, argv, argvlen) && !is_blocking(s, n)))
    c->sticky = 1; /* pub/sub, SELECT, CLIENT ...: never handed to another caller */
}

int fcfs_redis_needs_pin(int argc, const char **argv, const size_t *argvlen) {
  static const name_t always[] = {
      NAME("MULTI"),       NAME("EXEC"),         NAME("DISCARD"),      NAME("WATCH"),
      NAME("UNWATCH"),     NAME("BLPOP"),        NAME("BRPOP"),        NAME("BRPOPLPUSH"),
      NAME("BLMOVE"),      NAME("BLMPOP"),       NAME("BZPOPMIN"),     NAME("BZPOPMAX"),
      NAME("BZMPOP"),      NAME("SUBSCRIBE"),    NAME("PSUBSCRIBE"),   NAME("SSUBSCRIBE"),
      NAME("UNSUBSCRIBE"), NAME("PUNSUBSCRIBE"), NAME("SUNSUBSCRIBE"), NAME("MONITOR"),
      NAME("SELECT"),      NAME("AUTH"),         NAME("HELLO"),        NAME("RESET"),
      NAME("QUIT"),        NAME("WAIT"),         NAME("WAITAOF"),      NAME("READONLY"),
      NAME("READWRITE"),   NAME("SYNC"),         NAME("PSYNC")};
  /* the first letters of the names above and of XREAD, CLIENT
   * (ABCDEHMPQRSUWX), a bit each: most commands (GET, SET, INCR, HGET,
   * LRANGE...) are told apart by it */
#define L_(c) (1u << ((c) - 'A'))
  static const uint32_t firsts = L_('A') | L_('B') | L_('C') | L_('D') | L_('E') | L_('H') |
                                 L_('M') | L_('P') | L_('Q') | L_('R') | L_('S') | L_('U') |
                                 L_('W') | L_('X');
#undef L_
  if (argc < 1 || argvlen[0] == 0) return 0;
  const char *s = argv[0];
  size_t n = argvlen[0];
  unsigned ch = ((unsigned char)s[0] & ~0x20u) - 'A'; /* upper case, from A */
  if (ch >= 26 || !(firsts >> ch & 1)) return 0;
  if (name_in(s, n, always, sizeof always / sizeof always[0])) return 1;
  if (name_is(s, n, "XREAD") || name_is(s, n, "XREADGROUP")) {
    for (int i = 1; i < argc; i++) {
      if (name_is(argv[i], argvlen[i], "STREAMS")) break;
      if (name_is(argv[i], argvlen[i], "BLOCK")) return 1;
    }
  } else if (name_is(s, n, "CLIENT") && argc > 1) {
    if (name_is(argv[1], argvlen[1], "REPLY") || name_is(argv[1], argvlen[1], "SETNAME") ||
        name_is(argv[1], argvlen[1], "TRACKING"))
      return 1;
  }
  return 0;
}

static uint64_t deadline_of(fcfs_redis_t *r, double timeout) {
  return uv_now(r->loop) + ms_of(timeout > 0 ? timeout : fcfs_redis_default_timeout(r));
}

int fcfs_redis_conn_command_argv(fcfs_redis_conn_t *c, int argc, const char **argv,
                                 const size_t *argvlen, double timeout, fcfs_redis_cb cb, void *arg,
                                 void **handle) {
  fcfs_redis_t *r = c->r;
  if (argc < 1) return FCFS_REDIS_EINVAL;
  if (r->closing || (c->state != ST_UP && c->state != ST_CONNECTING)) return FCFS_REDIS_ECLOSED;
  cmd_t *q = cmd_alloc(r);
  if (!q) return FCFS_REDIS_ENOMEM;
  q->kind = K_CMD;
  q->cb = cb;
  q->arg = arg;
  q->deadline = deadline_of(r, timeout);
  int rc = conn_send(c, q, argc, argv, argvlen);
  if (rc < 0) {
    cmd_free(r, q);
    return rc;
  }
  if (c->pinned) track_state(c, argc, argv, argvlen);
  if (handle) *handle = q;
  return 0;
}

int fcfs_redis_command_argv(fcfs_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                            double timeout, fcfs_redis_cb cb, void *arg, void **handle) {
  if (r->closing) return FCFS_REDIS_ECLOSED;
  fcfs_redis_conn_t *c = fcfs_redis_shared(r);
  if (!c) return FCFS_REDIS_EUNAVAILABLE;
  return fcfs_redis_conn_command_argv(c, argc, argv, argvlen, timeout, cb, arg, handle);
}

void fcfs_redis_cancel(void *handle) {
  cmd_t *q = handle;
  if (q) q->cb = NULL;
}

int fcfs_redis_conn_read(fcfs_redis_conn_t *c, double timeout, fcfs_redis_cb cb, void *arg,
                         void **handle, redisReply **ready) {
  *ready = NULL;
  if (!c->pinned) return FCFS_REDIS_EINVAL;
  if (c->inbox_len) {
    *ready = c->inbox[c->inbox_first++];
    if (--c->inbox_len == 0) c->inbox_first = 0;
    return 0;
  }
  if (c->r->closing || (c->state != ST_UP && c->state != ST_CONNECTING)) return FCFS_REDIS_ECLOSED;
  cmd_t *q = cmd_alloc(c->r);
  if (!q) return FCFS_REDIS_ENOMEM;
  q->kind = K_READ;
  q->cb = cb;
  q->arg = arg;
  q->deadline = deadline_of(c->r, timeout);
  slot_push(c, q);
  if (handle) *handle = q;
  return 0;
}

int fcfs_redis_pin(fcfs_redis_t *r, fcfs_redis_conn_t **out) {
  fcfs_redis_conn_t *c;
  *out = NULL;
  if (r->closing) return FCFS_REDIS_ECLOSED;
  if (!r->nup_shared && !r->starting) return FCFS_REDIS_EUNAVAILABLE;
  if ((c = r->idle)) {
    r->idle = c->next_idle;
    c->in_idle = 0;
    c->bound = 1;
    busy_update(c);
    *out = c;
    return 0;
  }
  if (r->npinned >= r->conf->redis_pinned_max) return FCFS_REDIS_EBUSY;
  if (!(c = conn_new(r, 1))) return FCFS_REDIS_ENOMEM;
  c->next_pinned = r->pinned;
  r->pinned = c;
  r->npinned++;
  c->counted = 1;
  c->bound = 1;
  busy_update(c);
  conn_connect(c);
  *out = c;
  return 0;
}

void fcfs_redis_unpin(fcfs_redis_conn_t *c) {
  fcfs_redis_t *r = c->r;
  if (!c->bound) return;
  c->bound = 0;
  busy_update(c);
  purge_dead_reads(c);
  if (c->state == ST_UP && !c->head && !c->outlen && !c->multi && !c->watch && !c->sticky &&
      !c->inbox_len) {
    uv_timer_stop(&c->timer);
    c->timer_due = 0;
    c->next_idle = r->idle;
    r->idle = c;
    c->in_idle = 1;
    return;
  }
  if (c->counted) r->npinned--; /* its slot is free at once, not when closed */
  c->counted = 0;
  if (c->state == ST_UP || c->state == ST_CONNECTING)
    conn_teardown(c, fcfs_redis_eclosed); /* on_stream_closed destroys it */
  else if (c->state == ST_DOWN)
    pinned_destroy(c);
}

/* ---- scripts, content-addressed ---- */

static uint32_t rol32(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

/* SHA-1 (FIPS 180-4) of one 64-byte block into h. */
static void sha1_block(uint32_t h[5], const unsigned char *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t t = rol32(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol32(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

static void sha1_hex(const char *data, size_t len, char out[41]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const unsigned char *p = (const unsigned char *)data;
  unsigned char blk[64];
  size_t off = 0;
  for (; len - off >= 64; off += 64)
    sha1_block(h, p + off);
  size_t rest = len - off;
  memset(blk, 0, sizeof blk);
  memcpy(blk, p + off, rest);
  blk[rest] = 0x80;
  if (rest >= 56) {
    sha1_block(h, blk);
    memset(blk, 0, sizeof blk);
  }
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++)
    blk[63 - i] = (unsigned char)(bits >> (8 * i));
  sha1_block(h, blk);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 20; i++) {
    unsigned v = (h[i / 4] >> (24 - 8 * (i % 4))) & 0xff;
    out[2 * i] = hex[v >> 4];
    out[2 * i + 1] = hex[v & 15];
  }
  out[40] = 0;
}

int fcfs_redis_script(fcfs_redis_t *r, const char *src, size_t srclen) {
  char sha[41];
  sha1_hex(src, srclen, sha);
  for (int i = 0; i < r->nscripts; i++)
    if (!memcmp(r->scripts[i].sha, sha, 41)) return i;
  if (r->nscripts == INT_MAX) return FCFS_REDIS_ENOMEM;
  if (r->nscripts == r->scripts_cap) {
    int cap = r->scripts_cap ? r->scripts_cap * 2 : 8;
    script_t *n = realloc(r->scripts, (size_t)cap * sizeof *n);
    if (!n) return FCFS_REDIS_ENOMEM;
    r->scripts = n;
    r->scripts_cap = cap;
  }
  char *copy = malloc(srclen + 1);
  if (!copy) return FCFS_REDIS_ENOMEM;
  memcpy(copy, src, srclen);
  copy[srclen] = 0;
  script_t *sc = &r->scripts[r->nscripts];
  sc->src = copy;
  sc->srclen = srclen;
  memcpy(sc->sha, sha, 41);
  return r->nscripts++;
}

const char *fcfs_redis_script_sha(const fcfs_redis_t *r, int id) {
  return id >= 0 && id < r->nscripts ? r->scripts[id].sha : NULL;
}

int fcfs_redis_run(fcfs_redis_t *r, fcfs_redis_conn_t *c, int id, int ordered, int nkeys, int n,
                   const char **v, const size_t *vlen, double timeout, fcfs_redis_cb cb, void *arg,
                   void **handle) {
  const char *sargv[ARGV_STACK];
  size_t slen[ARGV_STACK];
  const char **argv = sargv;
  size_t *argvlen = slen;
  char nk[16];
  int rc;
  cmd_t *q = NULL;
  if (r->closing) return FCFS_REDIS_ECLOSED;
  if (id < 0 || id >= r->nscripts) return FCFS_REDIS_ENOSCRIPT;
  if (nkeys < 0 || n < nkeys || n > INT_MAX - 3) return FCFS_REDIS_EINVAL;
  if (!c && !(c = fcfs_redis_shared(r))) return FCFS_REDIS_EUNAVAILABLE;
  if (c->state != ST_UP && c->state != ST_CONNECTING) return FCFS_REDIS_ECLOSED;
  int i = id;
  /* A NOSCRIPT answer would be retried after the commands queued behind the
   * EVALSHA (and inside MULTI it only shows in EXEC's reply): where order
   * matters the source goes along, as EVAL. */
  int eval = ordered || (c->pinned && c->multi);
  if (n + 3 > ARGV_STACK) {
    argv = malloc((size_t)(n + 3) * sizeof *argv);
    argvlen = malloc((size_t)(n + 3) * sizeof *argvlen);
    rc = FCFS_REDIS_ENOMEM;
    if (!argv || !argvlen) goto out;
  }
  argv[0] = eval ? "EVAL" : "EVALSHA";
  argvlen[0] = eval ? 4 : 7;
  argv[1] = eval ? r->scripts[i].src : r->scripts[i].sha;
  argvlen[1] = eval ? r->scripts[i].srclen : 40;
  argvlen[2] = dec_len((size_t)nkeys);
  dec_put(nk, (size_t)nkeys, argvlen[2]);
  argv[2] = nk;
  for (int k = 0; k < n; k++) {
    argv[k + 3] = v[k];
    argvlen[k + 3] = vlen[k];
  }
  rc = FCFS_REDIS_ENOMEM;
  if (!(q = cmd_alloc(r))) goto out;
  q->kind = K_CMD;
  q->cb = cb;
  q->arg = arg;
  q->deadline = deadline_of(r, timeout);
  if (!eval) q->script = i + 1; /* conn_send() keeps its bytes for a resend after NOSCRIPT */
  if ((rc = conn_send(c, q, n + 3, argv, argvlen)) < 0) goto out;
  if (handle) *handle = q;
  q = NULL;
out:
  if (q) cmd_free(r, q);
  if (argv != sargv) free((void *)argv);
  if (argvlen != slen) free(argvlen);
  return rc;
}
