/* tcp.c -- outbound TCP client sockets on the worker loop (tcp.h).
 *
 * A socket (fcfs_tcp_t) owns its read buffer, its address list and one
 * pending operation (connect, send or receive, with its timer). Everything
 * libuv still points at lives in records allocated apart, each freed in its
 * own callback and holding a back pointer that is cleared when the socket
 * lets go of it:
 *   - conn_t: one connection attempt (uv_tcp_t, its connect and write
 *     requests, the copy of unsent data); freed in its close callback, after
 *     libuv has cancelled the requests still pending on it;
 *   - resolve_t: one uv_getaddrinfo() on the thread pool; cancelled if it has
 *     not started, otherwise its result is dropped when it arrives;
 *   - the uv_timer_t of the operation timeouts; freed in its close callback.
 * So fcfs_tcp_disconnect() and fcfs_tcp_free() act at once, whatever is in
 * flight, which is what cancelling a task needs.
 *
 * Receives read only while one is pending (the peer is throttled by TCP the
 * rest of the time) into a buffer that never grows past buffer_max.
 */
#include "tcp.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK 16384

const char fcfs_tcp_etimeout[] = "timeout";
const char fcfs_tcp_eclosed[] = "closed";
const char fcfs_tcp_etoolarge[] = "too large";
const char fcfs_tcp_ebusy[] = "busy";

enum { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV };
enum { UNTIL = FCFS_TCP_ALL + 1 }; /* the receive mode of lines and of delimiters */

typedef struct conn_s {
  uv_tcp_t h;
  uv_connect_t creq;
  uv_write_t wreq;
  char *wbuf;    /* the part of a send uv_try_write() could not take */
  fcfs_tcp_t *s; /* NULL once the socket let go of this attempt */
} conn_t;

typedef struct {
  uv_getaddrinfo_t req;
  fcfs_tcp_t *s; /* NULL once the socket let go of this resolution */
} resolve_t;

struct fcfs_tcp_s {
  uv_loop_t *loop;
  conn_t *conn; /* connecting or connected */
  int connected;
  resolve_t *resolve;
  struct addrinfo *ai, *next_ai; /* resolved addresses; the ones left to try */
  const char *last_err;          /* of the last failed connect attempt */
  uv_timer_t *timer;

  int op;          /* OP_*: the pending operation */
  int mode;        /* FCFS_TCP_COUNT, FCFS_TCP_ALL or UNTIL */
  size_t want;     /* COUNT: the byte count */
  const char *pat; /* UNTIL: the delimiter (the caller keeps it alive meanwhile) */
  size_t patlen;
  int inclusive;  /* UNTIL: the data ends with the delimiter */
  size_t scanned; /* UNTIL: bytes after rstart known to hold no whole delimiter */
  size_t sent;
  fcfs_tcp_cb cb;
  void *arg;

  char *rbuf; /* unread data is rbuf[rstart, rend) */
  size_t rstart, rend, rcap, max;
  int reading;
  char errbuf[160];
};

static void free_handle(uv_handle_t *h) {
  free(h);
}

static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  free(c->wbuf);
  free(c);
}

static void conn_detach(conn_t *c) {
  c->s = NULL;
  uv_close((uv_handle_t *)&c->h, conn_closed);
}

/* Let go of the connection, a resolution in flight and the buffered data;
 * the pending operation (if any) is left to the caller. */
static void drop_connection(fcfs_tcp_t *s) {
  if (s->resolve) {
    s->resolve->s = NULL;
    uv_cancel((uv_req_t *)&s->resolve->req);
    s->resolve = NULL;
  }
  if (s->conn) {
    conn_detach(s->conn);
    s->conn = NULL;
  }
  if (s->ai) freeaddrinfo(s->ai);
  s->ai = s->next_ai = NULL;
  s->connected = 0;
  s->reading = 0;
  s->rstart = s->rend = 0; /* the bytes stay in rbuf: a result may point at them */
}

/* Complete the pending operation from the loop. cb may free s: nothing
 * touches s after it. */
static void finish(fcfs_tcp_t *s, const char *err, const char *data, size_t len) {
  fcfs_tcp_result_t res = {.err = err, .data = data, .len = len, .sent = s->sent};
  fcfs_tcp_cb cb = s->cb;
  void *arg = s->arg;
  uv_timer_stop(s->timer);
  if (s->reading) {
    uv_read_stop((uv_stream_t *)&s->conn->h);
    s->reading = 0;
  }
  s->op = OP_NONE;
  s->cb = NULL;
  s->arg = NULL;
  cb(arg, &res);
}

/* Answer at once, from inside the call that started the operation. */
static int done_now(fcfs_tcp_result_t *res, const char *err, const char *data, size_t len,
                    size_t sent) {
  res->err = err;
  res->data = data;
  res->len = len;
  res->sent = sent;
  return FCFS_TCP_DONE;
}

static void start_op(fcfs_tcp_t *s, int op, uint64_t timeout_ms, fcfs_tcp_cb cb, void *arg);

fcfs_tcp_t *fcfs_tcp_new(uv_loop_t *loop, size_t buffer_max) {
  fcfs_tcp_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->timer = malloc(sizeof(*s->timer));
  if (s->timer == NULL) {
    free(s);
    return NULL;
  }
  uv_timer_init(loop, s->timer);
  s->timer->data = s;
  s->loop = loop;
  s->max = buffer_max;
  return s;
}

void fcfs_tcp_disconnect(fcfs_tcp_t *s) {
  drop_connection(s);
  uv_timer_stop(s->timer);
  s->op = OP_NONE;
  s->cb = NULL;
  s->arg = NULL;
}

void fcfs_tcp_free(fcfs_tcp_t *s) {
  fcfs_tcp_disconnect(s);
  s->timer->data = NULL;
  uv_close((uv_handle_t *)s->timer, free_handle);
  free(s->rbuf);
  free(s);
}

int fcfs_tcp_connected(const fcfs_tcp_t *s) {
  return s->connected;
}

/* ---- connect ------------------------------------------------------------ */

static void try_next(fcfs_tcp_t *s);

static void connected(uv_connect_t *req, int status) {
  conn_t *c = req->handle->data;
  fcfs_tcp_t *s = c->s;
  if (s == NULL) return; /* let go of (status is UV_ECANCELED) */
  if (status < 0) {
    s->conn = NULL;
    conn_detach(c);
    s->last_err = uv_strerror(status);
    try_next(s);
    return;
  }
  s->connected = 1;
  freeaddrinfo(s->ai);
  s->ai = s->next_ai = NULL;
  finish(s, NULL, NULL, 0);
}

/* Start one connection attempt; 0 or a libuv error. */
static int attempt(fcfs_tcp_t *s, const struct sockaddr *sa) {
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return UV_ENOMEM;
  uv_tcp_init(s->loop, &c->h);
  c->h.data = c;
  c->s = s;
  int rc = uv_tcp_connect(&c->creq, &c->h, sa, connected);
  if (rc < 0) {
    conn_detach(c);
    return rc;
  }
  uv_tcp_nodelay(&c->h, 1); /* line protocols: a command leaves at once */
  s->conn = c;
  return 0;
}

/* Try the resolved addresses left, or finish with the last error. */
static void try_next(fcfs_tcp_t *s) {
  while (s->next_ai) {
    struct addrinfo *a = s->next_ai;
    s->next_ai = a->ai_next;
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    int rc = attempt(s, a->ai_addr);
    if (rc == 0) return;
    s->last_err = uv_strerror(rc);
  }
  drop_connection(s);
  finish(s, s->last_err ? s->last_err : fcfs_tcp_eclosed, NULL, 0);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  resolve_t *r = (resolve_t *)req;
  fcfs_tcp_t *s = r->s;
  free(r);
  if (s == NULL) { /* timed out or cancelled meanwhile */
    if (ai) freeaddrinfo(ai);
    return;
  }
  s->resolve = NULL;
  if (status < 0) {
    snprintf(s->errbuf, sizeof(s->errbuf), "resolve: %s", uv_strerror(status));
    finish(s, s->errbuf, NULL, 0);
    return;
  }
  s->ai = s->next_ai = ai;
  s->last_err = NULL;
  try_next(s);
}

int fcfs_tcp_connect(fcfs_tcp_t *s, const char *host, int port, uint64_t timeout_ms, fcfs_tcp_cb cb,
                     void *arg, fcfs_tcp_result_t *res) {
  if (s->op != OP_NONE) return done_now(res, fcfs_tcp_ebusy, NULL, 0, 0);
  drop_connection(s);
  s->last_err = NULL;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
    int rc = attempt(s, (struct sockaddr *)&ss);
    if (rc < 0) return done_now(res, uv_strerror(rc), NULL, 0, 0);
  } else {
    resolve_t *r = calloc(1, sizeof(*r));
    if (r == NULL) return done_now(res, uv_strerror(UV_ENOMEM), NULL, 0, 0);
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    int rc = uv_getaddrinfo(s->loop, &r->req, resolved, host, service, &hints);
    if (rc < 0) {
      free(r);
      snprintf(s->errbuf, sizeof(s->errbuf), "resolve: %s", uv_strerror(rc));
      return done_now(res, s->errbuf, NULL, 0, 0);
    }
    r->s = s;
    s->resolve = r;
  }
  start_op(s, OP_CONNECT, timeout_ms, cb, arg);
  return FCFS_TCP_PENDING;
}

/* ---- send ----------------------------------------------------------------- */

static void written(uv_write_t *req, int status) {
  conn_t *c = req->handle->data;
  free(c->wbuf);
  c->wbuf = NULL;
  fcfs_tcp_t *s = c->s;
  if (s == NULL) return;
  if (status < 0) {
    drop_connection(s);
    finish(s, uv_strerror(status), NULL, 0);
    return;
  }
  finish(s, NULL, NULL, 0);
}

int fcfs_tcp_send(fcfs_tcp_t *s, const uv_buf_t *bufs, unsigned nbufs, uint64_t timeout_ms,
                  fcfs_tcp_cb cb, void *arg, fcfs_tcp_result_t *res) {
  if (s->op != OP_NONE) return done_now(res, fcfs_tcp_ebusy, NULL, 0, 0);
  if (!s->connected) return done_now(res, fcfs_tcp_eclosed, NULL, 0, 0);
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (total == 0) return done_now(res, NULL, NULL, 0, 0);
  conn_t *c = s->conn;
  int rc = uv_try_write((uv_stream_t *)&c->h, bufs, nbufs);
  if (rc < 0 && rc != UV_EAGAIN) {
    drop_connection(s);
    return done_now(res, uv_strerror(rc), NULL, 0, 0);
  }
  size_t written_now = rc > 0 ? (size_t)rc : 0;
  if (written_now == total) return done_now(res, NULL, NULL, 0, total);

  /* Copy what is left: the caller's buffers need not outlive this call. */
  c->wbuf = malloc(total - written_now);
  if (c->wbuf == NULL) {
    drop_connection(s);
    return done_now(res, uv_strerror(UV_ENOMEM), NULL, 0, 0);
  }
  size_t skip = written_now, n = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(c->wbuf + n, bufs[i].base + skip, len - skip);
    n += len - skip;
    skip = 0;
  }
  uv_buf_t rest = uv_buf_init(c->wbuf, (unsigned)n);
  rc = uv_write(&c->wreq, (uv_stream_t *)&c->h, &rest, 1, written);
  if (rc < 0) {
    drop_connection(s);
    return done_now(res, uv_strerror(rc), NULL, 0, 0);
  }
  start_op(s, OP_SEND, timeout_ms, cb, arg);
  s->sent = total;
  return FCFS_TCP_PENDING;
}

/* ---- receive -------------------------------------------------------------- */

/* Take a complete result off the buffer, if there is one. A delimiter is
 * searched for only in what arrived since the last search (and the bytes a
 * delimiter cut in two could start with). */
static int take(fcfs_tcp_t *s, const char **data, size_t *len) {
  size_t avail = s->rend - s->rstart;
  const char *p = s->rbuf + s->rstart;
  if (s->mode == FCFS_TCP_COUNT) {
    if (avail < s->want) return 0;
    *data = p;
    *len = s->want;
    s->rstart += s->want;
    return 1;
  }
  if (s->mode != UNTIL || avail < s->patlen) return 0;
  size_t from = s->scanned >= s->patlen ? s->scanned - (s->patlen - 1) : 0;
  const char *m = memmem(p + from, avail - from, s->pat, s->patlen);
  if (m == NULL) {
    s->scanned = avail;
    return 0;
  }
  size_t before = (size_t)(m - p);
  *data = p;
  *len = s->inclusive ? before + s->patlen : before;
  s->rstart += before + s->patlen;
  return 1;
}

/* Everything buffered, consumed: the partial data of an error. */
static void take_all(fcfs_tcp_t *s, const char **data, size_t *len) {
  *data = s->rbuf ? s->rbuf + s->rstart : "";
  *len = s->rend - s->rstart;
  s->rstart = s->rend;
}

static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  fcfs_tcp_t *s = ((conn_t *)h->data)->s;
  if (s->rstart > 0) { /* no result points into the buffer while a receive is pending */
    memmove(s->rbuf, s->rbuf + s->rstart, s->rend - s->rstart);
    s->rend -= s->rstart;
    s->rstart = 0;
  }
  size_t cap = s->rend + READ_CHUNK;
  if (cap > s->max) cap = s->max;
  if (cap > s->rcap) {
    char *nb = realloc(s->rbuf, cap);
    if (nb) {
      s->rbuf = nb;
      s->rcap = cap;
    }
  }
  *buf = uv_buf_init(s->rbuf + s->rend, (unsigned)(s->rcap - s->rend)); /* 0: UV_ENOBUFS */
}

static void got_data(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  fcfs_tcp_t *s = ((conn_t *)h->data)->s;
  const char *data = NULL, *err;
  size_t len = 0;
  if (s == NULL || nread == 0) return;
  if (nread > 0) {
    s->rend += (size_t)nread;
    if (take(s, &data, &len)) {
      finish(s, NULL, data, len);
      return;
    }
    if (s->rend - s->rstart < s->max) return;
    err = fcfs_tcp_etoolarge;
  } else if (nread == UV_EOF) {
    err = s->mode == FCFS_TCP_ALL ? NULL : fcfs_tcp_eclosed;
  } else if (nread == UV_ENOBUFS) {
    err = fcfs_tcp_etoolarge;
  } else {
    err = uv_strerror((int)nread);
  }
  take_all(s, &data, &len);
  uv_read_stop(h);
  s->reading = 0;
  drop_connection(s);
  finish(s, err, data, len);
}

/* Start the receive the mode fields describe. */
static int receive(fcfs_tcp_t *s, uint64_t timeout_ms, fcfs_tcp_cb cb, void *arg,
                   fcfs_tcp_result_t *res) {
  const char *data;
  size_t len;
  s->scanned = 0;
  if (take(s, &data, &len)) return done_now(res, NULL, data, len, 0);
  int rc = uv_read_start((uv_stream_t *)&s->conn->h, alloc_read, got_data);
  if (rc < 0) {
    drop_connection(s);
    return done_now(res, uv_strerror(rc), NULL, 0, 0);
  }
  s->reading = 1;
  start_op(s, OP_RECV, timeout_ms, cb, arg);
  return FCFS_TCP_PENDING;
}

int fcfs_tcp_receive(fcfs_tcp_t *s, int mode, size_t n, uint64_t timeout_ms, fcfs_tcp_cb cb,
                     void *arg, fcfs_tcp_result_t *res) {
  if (mode == FCFS_TCP_LINE) return fcfs_tcp_receive_until(s, "\n", 1, 0, timeout_ms, cb, arg, res);
  if (s->op != OP_NONE) return done_now(res, fcfs_tcp_ebusy, NULL, 0, 0);
  if (!s->connected) return done_now(res, fcfs_tcp_eclosed, NULL, 0, 0);
  if (mode == FCFS_TCP_COUNT && n > s->max) return done_now(res, fcfs_tcp_etoolarge, NULL, 0, 0);
  s->mode = mode;
  s->want = n;
  return receive(s, timeout_ms, cb, arg, res);
}

int fcfs_tcp_receive_until(fcfs_tcp_t *s, const char *pat, size_t patlen, int inclusive,
                           uint64_t timeout_ms, fcfs_tcp_cb cb, void *arg, fcfs_tcp_result_t *res) {
  if (s->op != OP_NONE) return done_now(res, fcfs_tcp_ebusy, NULL, 0, 0);
  if (!s->connected) return done_now(res, fcfs_tcp_eclosed, NULL, 0, 0);
  s->mode = UNTIL;
  s->pat = pat;
  s->patlen = patlen;
  s->inclusive = inclusive;
  return receive(s, timeout_ms, cb, arg, res);
}

/* ---- timeouts --------------------------------------------------------------- */

static void timed_out(uv_timer_t *h) {
  fcfs_tcp_t *s = h->data;
  const char *data = NULL;
  size_t len = 0;
  if (s->op == OP_RECV) {
    take_all(s, &data, &len); /* the connection stays open */
  } else {
    drop_connection(s);
  }
  finish(s, fcfs_tcp_etimeout, data, len);
}

static void start_op(fcfs_tcp_t *s, int op, uint64_t timeout_ms, fcfs_tcp_cb cb, void *arg) {
  s->op = op;
  s->cb = cb;
  s->arg = arg;
  s->sent = 0;
  uv_update_time(s->loop); /* the handler may have run long since the loop last looked */
  uv_timer_start(s->timer, timed_out, timeout_ms, 0);
}
