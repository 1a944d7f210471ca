/* server.c -- the HTTP/1.1 server of one worker.
 *
 * All workers accept from the node's listening sockets (nginx style; the
 * master owns them). A connection (fcfs_conn_t) reads into a per-worker read
 * buffer, feeds the bytes to its parser (http.c) and serves one request at a
 * time: pipelined requests that arrive while a handler runs wait, copied
 * into the connection's own backlog buffer, so responses leave in order.
 *
 * Two listeners: the public one, and the admin one (admin_listen: a unix
 * socket or a loopback port), the only one that serves /_host and the paths
 * under it -- a public request for them is answered 404 here, before any Lua
 * runs. A request carries the listener it came from (fcfs_request_t.admin).
 *
 * Client addresses: a request whose peer is a trusted proxy (real_ip_from)
 * takes its remote address from real_ip_header, nginx's real_ip_recursive
 * way; any other peer's header is ignored.
 *
 * The host's own error bodies (4xx/5xx answered before or instead of a
 * handler) are {"error":{code,message},"request_id"}, the message in Korean,
 * or in English when Accept-Language prefers it.
 *
 * One uv_timer_t per connection carries whichever limit applies now: idle
 * (keep-alive, closed silently), header and body timeouts (408), and while a
 * handler runs, the request deadline (504, the task is cancelled). A client
 * that goes away while its handler runs cancels it only with client_abort =
 * "cancel"; by default the handler finishes and the connection closes after.
 *
 * Responses are written with one writev of [head, id line, body] (what
 * uv_try_write does, try_write); only what the kernel does not take at once
 * is copied into a heap write request freed in its callback. The last
 * answer's head is kept: the next one with the same status, length,
 * keep-alive, header block and second reuses it (head_cache_t). A
 * connection that must close (error, Connection: close, limit reached,
 * QUIT) shuts down its write side and lingers reading until EOF or a short
 * timeout, so a client still sending gets its error response instead of a
 * reset.
 *
 * Ownership: the server owns its connections (freed in conn_closed after
 * uv_close); a connection owns its parser state, its current request (embedded)
 * and the parsed http_req_t until the answer is written.
 */
#include "server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"
#include "static.h"

#define READ_BUF_SIZE 65536
#define LINGER_MS 2000
#define MAX_BACKLOG (1 << 20)
#define MAX_WRITE_QUEUE (256 << 10) /* bytes unsent before pipelined requests wait */
#define FAIR_BATCH 64               /* pipelined requests one connection may start per loop turn */

typedef enum { PHASE_IDLE, PHASE_HEADERS, PHASE_BODY, PHASE_HANDLER, PHASE_LINGER } phase_t;

struct fcfs_conn_s {
  union { /* first: the handle pointer is the conn pointer */
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* from a unix admin listener; used through its stream fields */
  };
  uv_timer_t timer;
  fcfs_server_t *srv;
  http_in_t *in;
  fcfs_request_t req;
  char *backlog; /* unparsed bytes received while a handler ran */
  size_t blen, boff, bcap;
  phase_t phase;
  uint64_t deadline_ms; /* loop time at which the current phase times out */
  uint64_t armed_ms;    /* loop time the timer is set for, 0 when stopped */
  int in_flight;
  int nrequests;
  int closing;    /* uv_close called */
  int must_close; /* close once the current response is written */
  int read_stopped;
  int processing; /* inside conn_process */
  int writes;     /* uv_write requests pending */
  int handles;    /* open handles (tcp + timer) to wait for before freeing */
  uv_os_fd_t fd;  /* the socket's, for try_write */
  int trusted;    /* the peer is in real_ip_from */
  char peer[48];  /* the peer's address (req.remote may come from a header) */
  int eof;        /* the client closed or half-closed while a handler ran */
  /* a streamed answer (fcfs_request_stream_open) */
  int streaming;
  int stream_raw; /* HTTP/1.0 client: no chunks, the body ends at the close */
  int stream_status;
  int broken; /* a write of the stream failed: close without its last chunk */
  size_t stream_bytes;
  void (*drained)(void *arg); /* a writer waiting for the client: a write completed */
  void *drained_arg;
  uint64_t turn_ms; /* loop time of the turn the connection's last requests started in */
  int turn_started; /* requests started in that turn */
  int resume;       /* its turn ran out: the timer fires in the next turn to serve the rest */
  fcfs_conn_t *prev, *next;
};

/* One listening socket: the public one or the admin one. */
typedef struct {
  union { /* first: the handle pointer is the listener pointer */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  fcfs_server_t *srv;
  int admin, is_pipe, open;
} listener_t;

/* The head of the last answer, without its X-Request-Id line and closing
 * empty line, and what made it: an answer with the same status, length,
 * keep-alive and header block in the same second has the same head, but
 * for its id (the answers of a hot route). */
#define HEAD_CACHE 1024
#define HEAD_CACHE_EXTRA 512
typedef struct {
  char head[HEAD_CACHE];
  size_t len; /* 0: nothing kept */
  char extra[HEAD_CACHE_EXTRA];
  size_t extra_len;
  size_t clen;
  uint64_t date_stamp; /* of the date in head (fcfs_server_s) */
  int status, keep, add_id;
} head_cache_t;

struct fcfs_server_s {
  fcfs_server_env_t env;
  listener_t pub, admin;
  http_limits_t limits;
  fcfs_conn_t *conns;
  int nconns, busy;
  int draining;
  int abort_cancels; /* client_abort = "cancel" */
  char rbuf[READ_BUF_SIZE];
  int rbuf_used;
  char date[30];
  uint64_t date_next_ms; /* loop time at which date is a second old */
  uint64_t date_stamp;   /* changes with date */
  char id_prefix[9];     /* first half of generated request ids */
  uint64_t request_seq;
  fcfs_static_t *statics; /* static_dir, NULL without one */
  head_cache_t head;
  uint32_t route_slot; /* of the last request counted (fcfs_metrics_request) */
};

typedef struct {
  uv_write_t req;
  fcfs_conn_t *conn;
  size_t len;
  char data[];
} write_req_t;

static void conn_close(fcfs_conn_t *c);
static void conn_process(fcfs_conn_t *c);

/* Monotonic nanoseconds (uv_hrtime's clock, without its wrapper), for
 * request durations. */
static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *date_now(fcfs_server_t *s) {
  uint64_t now = uv_now(s->env.loop);
  if (now >= s->date_next_ms || s->date[0] == '\0') { /* a new second of the loop's clock */
    http_format_date(s->date, time(NULL));
    s->date_next_ms = now - now % 1000 + 1000;
    s->date_stamp++;
  }
  return s->date;
}

static void timer_fired(uv_timer_t *t);

/* Enter a phase with its time limit. The timer is only re-armed when the
 * new limit comes before the one it is armed for: a keep-alive connection
 * going request, idle, request, ... moves its limit later every time, and
 * the timer, when it fires early, re-arms itself for what is left. */
static void set_timer(fcfs_conn_t *c, phase_t phase, double seconds) {
  c->phase = phase;
  c->deadline_ms = uv_now(c->srv->env.loop) + (uint64_t)(seconds * 1000 + 0.5);
  if (c->armed_ms == 0 || c->deadline_ms < c->armed_ms) {
    uv_timer_start(&c->timer, timer_fired, c->deadline_ms - uv_now(c->srv->env.loop), 0);
    c->armed_ms = c->deadline_ms;
  }
}

static void stop_timer(fcfs_conn_t *c) {
  uv_timer_stop(&c->timer);
  c->armed_ms = 0;
}

static void slot_gauges(fcfs_server_t *s) {
  s->env.slot->connections = (uint64_t)s->nconns;
  s->env.slot->in_flight = (uint64_t)s->busy;
}

/* ---- closing -------------------------------------------------------------- */

static void conn_freed(uv_handle_t *h) {
  fcfs_conn_t *c = h->data;
  if (--c->handles > 0) return;
  free(c->backlog);
  if (c->in) http_in_free(c->in);
  free(c);
}

static void conn_close(fcfs_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  fcfs_server_t *s = c->srv;
  if (c->in_flight) { /* client gone or server stopping: the handler is cancelled */
    fcfs_request_cancel(&c->req);
    http_in_recycle(c->in, c->req.http);
    c->req.http = NULL;
    c->in_flight = 0;
    s->busy--;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  slot_gauges(s);
  stop_timer(c);
  uv_close((uv_handle_t *)&c->timer, conn_freed);
  uv_close((uv_handle_t *)&c->tcp, conn_freed);
  s->env.idle(s->env.arg);
}

static void shutdown_done(uv_shutdown_t *req, int status) {
  fcfs_conn_t *c = req->data;
  free(req);
  if (status != 0 && !c->closing) conn_close(c);
}

/* The response is out: stop sending, read and drop until EOF or LINGER_MS. */
static void conn_linger(fcfs_conn_t *c) {
  if (c->closing || c->phase == PHASE_LINGER) return;
  if (c->eof) { /* nothing more will come */
    conn_close(c);
    return;
  }
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (req == NULL || uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_done) != 0) {
    free(req);
    conn_close(c);
    return;
  }
  req->data = c;
  set_timer(c, PHASE_LINGER, LINGER_MS / 1000.0);
}

/* ---- writing -------------------------------------------------------------- */

static void write_done(uv_write_t *req, int status) {
  write_req_t *wr = (write_req_t *)req;
  fcfs_conn_t *c = wr->conn;
  free(wr);
  c->writes--;
  if (c->closing) return;
  if (status != 0)
    conn_close(c);
  else if (c->drained) /* a stream's writer waits for the client */
    c->drained(c->drained_arg);
  else if (c->must_close && c->writes == 0 && !c->in_flight)
    conn_linger(c);
  else if (!c->in_flight)
    conn_process(c); /* pipelined requests waited for the client to read */
}

/* What uv_try_write does on a socket without queued writes (a writev),
 * without its bookkeeping: the bytes the kernel took, UV_EAGAIN when none,
 * or a libuv error. A uv_buf_t is a struct iovec on Unix (uv.h). A closed
 * handle's fd is gone (uv_try_write's writev would get EBADF), maybe
 * another connection's by now. */
static int try_write(fcfs_conn_t *c, const uv_buf_t *bufs, int nbufs) {
  if (c->closing) return UV_EBADF;
  ssize_t n;
  do
    n = writev(c->fd, (const struct iovec *)bufs, nbufs);
  while (n < 0 && errno == EINTR);
  if (n >= 0) return n > INT_MAX ? INT_MAX : (int)n;
  return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(errno);
}

/* Write bufs; what the kernel does not take now is copied and queued. */
static int conn_write(fcfs_conn_t *c, uv_buf_t *bufs, int nbufs) {
  size_t total = 0;
  for (int i = 0; i < nbufs; i++)
    total += bufs[i].len;
  int n = c->writes == 0 && c->tcp.write_queue_size == 0 ? try_write(c, bufs, nbufs) : UV_EAGAIN;
  if (n < 0 && n != UV_EAGAIN) return n;
  size_t done = n < 0 ? 0 : (size_t)n;
  if (done == total) return 0;
  write_req_t *wr = malloc(sizeof(*wr) + total - done);
  if (wr == NULL) return UV_ENOMEM;
  size_t off = 0, skip = done;
  for (int i = 0; i < nbufs; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(wr->data + off, bufs[i].base + skip, len - skip);
    off += len - skip;
    skip = 0;
  }
  wr->conn = c;
  wr->len = off;
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)off);
  int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
  if (rc != 0) {
    free(wr);
    return rc;
  }
  c->writes++;
  return 0;
}

/* JSON string escaping for the access log and error bodies. */
static size_t json_escape(char *out, size_t cap, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (size_t i = 0; i < len && n + 7 < cap; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      out[n++] = '\\';
      out[n++] = (char)ch;
    } else if (ch < 0x20) {
      out[n++] = '\\';
      out[n++] = 'u';
      out[n++] = '0';
      out[n++] = '0';
      out[n++] = hex[ch >> 4];
      out[n++] = hex[ch & 15];
    } else {
      out[n++] = (char)ch;
    }
  }
  return n;
}

static void access_log(fcfs_conn_t *c, int status, size_t bytes, double seconds) {
  fcfs_request_t *r = &c->req;
  char line[2048], path[1024];
  const http_req_t *h = r->http;
  size_t plen = h ? json_escape(path, sizeof(path), h->path, h->path_len) : 0;
  char tbuf[32];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S%z", &tm);
  int n = snprintf(line, sizeof(line),
                   "{\"time\":\"%s\",\"method\":\"%.*s\",\"path\":\"%.*s\",\"status\":%d,"
                   "\"bytes\":%zu,\"duration_us\":%llu,\"request_id\":\"%s\",\"client\":\"%s\"}",
                   tbuf, h ? (int)h->method_len : 1, h ? h->method : "-", (int)plen, path, status,
                   bytes, (unsigned long long)(seconds * 1e6), r->id, r->remote);
  if (n > 0) fcfs_access_log(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Whether the connection stays open after the current answer. */
static int keep_alive(const fcfs_conn_t *c) {
  const http_req_t *h = c->req.http;
  return !c->must_close && h != NULL && h->keep_alive && !c->srv->draining &&
         c->nrequests < c->srv->env.conf->max_requests_per_conn;
}

/* Write the head of the current answer and its body; clen is the
 * Content-Length (HTTP_CHUNKED or HTTP_UNTIL_CLOSE for a stream). 0 or a
 * libuv error. */
static int write_answer(fcfs_conn_t *c, int status, const char *headers, size_t hlen,
                        const char *body, size_t blen, size_t clen, int keep) {
  fcfs_request_t *r = &c->req;
  const http_req_t *h = r->http;
  fcfs_server_t *s = c->srv;
  head_cache_t *hc = &s->head;
  if (headers == NULL) hlen = 0;
  const char *date = date_now(s);
  char head[16384];
  char *hbuf = head;
  size_t n; /* head bytes before the X-Request-Id line and the empty line */
  int add_id;
  if (hc->len && hc->status == status && hc->clen == clen && hc->keep == keep &&
      hc->date_stamp == s->date_stamp && hc->extra_len == hlen &&
      (hlen == 0 || memcmp(hc->extra, headers, hlen) == 0)) {
    hbuf = hc->head;
    n = hc->len;
    add_id = hc->add_id;
  } else {
    /* X-Request-Id unless the handler set one: it goes in a piece of its
     * own after the head's lines (tail below), with the empty line. */
    add_id = !(hlen && http_head_has(headers, hlen, "X-Request-Id", 12));
    size_t need = hlen + 256;
    if (need > sizeof(head) && (hbuf = malloc(need)) == NULL) return UV_ENOMEM;
    ssize_t m = http_format_head(hbuf, need, status, date, clen, keep, headers, hlen);
    if (m <= 0) {
      if (hbuf != head) free(hbuf);
      return UV_EINVAL;
    }
    n = (size_t)m - 2;
    if (n <= sizeof(hc->head) && hlen <= sizeof(hc->extra)) {
      memcpy(hc->head, hbuf, n);
      hc->len = n;
      if (hlen) memcpy(hc->extra, headers, hlen);
      hc->extra_len = hlen;
      hc->clen = clen;
      hc->date_stamp = s->date_stamp;
      hc->status = status;
      hc->keep = keep;
      hc->add_id = add_id;
    }
  }
  /* the head in two pieces: up to the id line, then the id line and the empty line */
  char tail[sizeof("X-Request-Id: \r\n\r\n") + sizeof(r->id)];
  char *p = tail;
  if (add_id) {
    memcpy(p, "X-Request-Id: ", 14);
    memcpy(p + 14, r->id, r->id_len);
    p += 14 + r->id_len;
    *p++ = '\r';
    *p++ = '\n';
  }
  *p++ = '\r';
  *p++ = '\n';
  uv_buf_t bufs[3] = {{.base = hbuf, .len = n}, {.base = tail, .len = (size_t)(p - tail)}};
  int nb = 2;
  int is_head = h ? h->is_head : 0;
  if (blen > 0 && !is_head && status != 204 && status != 304)
    bufs[nb++] = (uv_buf_t){.base = (char *)body, .len = blen};
  int rc = conn_write(c, bufs, nb);
  if (hbuf != head && hbuf != hc->head) free(hbuf);
  return rc;
}

/* Count the current request as answered; its duration in seconds. Done
 * before the write: a client that reads /metrics right after its answer sees
 * its own request. */
static double request_counted(fcfs_conn_t *c, int status) {
  fcfs_request_t *r = &c->req;
  fcfs_server_t *s = c->srv;
  double secs = (double)(mono_ns() - r->start_ns) / 1e9;
  fcfs_metrics_request(s->env.slot, r->route ? r->route : "-", status, secs, &s->route_slot);
  if (c->in_flight) {
    c->in_flight = 0;
    s->busy--;
    slot_gauges(s);
  }
  return secs;
}

/* The answer is written (rc: the outcome): log it, let the request go, and
 * go on with the connection (the next pipelined request, or closing). */
static void request_finish(fcfs_conn_t *c, int status, size_t bytes, double secs, int keep,
                           int rc) {
  fcfs_request_t *r = &c->req;
  fcfs_server_t *s = c->srv;
  if (fcfs_access_log_on()) access_log(c, status, bytes, secs);
  if (r->task) fcfs_request_cancel(r); /* answered by the host (504/503) while the task ran */
  http_in_recycle(c->in, r->http);
  r->http = NULL;
  if (rc != 0) {
    conn_close(c);
    return;
  }
  if (!keep) {
    c->must_close = 1;
    if (c->writes == 0)
      conn_linger(c);
    else /* write_done lingers; a client that never reads is closed at idle_timeout */
      set_timer(c, PHASE_IDLE, s->env.conf->idle_timeout);
    s->env.idle(s->env.arg);
    return;
  }
  set_timer(c, PHASE_IDLE, s->env.conf->idle_timeout);
  conn_process(c); /* pipelined requests waiting in the backlog */
  s->env.idle(s->env.arg);
}

static void stream_end(fcfs_conn_t *c, int status);

static void conn_respond(fcfs_request_t *r, int status, const char *headers, size_t hlen,
                         const char *body, size_t blen) {
  fcfs_conn_t *c = r->conn;
  if (c->streaming) {
    stream_end(c, status);
    return;
  }
  /* static_dir: what no route of the app matched (the app's own "404"
   * label, never the host's) is looked up there. */
  if (status == 404 && c->srv->statics && r->route == r->route_buf &&
      strcmp(r->route_buf, "404") == 0 && fcfs_static_serve(c->srv->statics, r))
    return;
  int keep = keep_alive(c);
  double secs = request_counted(c, status);
  int rc = write_answer(c, status, headers, hlen, body, blen, blen, keep);
  request_finish(c, status, blen, secs, keep, rc);
}

/* The host's own error answers, as API.md wants them: a stable code and a
 * message in Korean and English (the messages web.lua uses for the same
 * statuses are the same words). */
static const struct {
  int status;
  const char *code, *ko, *en;
} errors[] = {
    {400, "BAD_REQUEST", "잘못된 요청입니다.", "The request is malformed."},
    {404, "NOT_FOUND", "요청한 리소스를 찾을 수 없습니다.",
     "The requested resource was not found."},
    {408, "REQUEST_TIMEOUT", "요청이 제시간에 도착하지 않았습니다.",
     "The request did not arrive in time."},
    {413, "PAYLOAD_TOO_LARGE", "요청 본문이 너무 큽니다.", "The request body is too large."},
    {414, "URI_TOO_LONG", "요청 URL이 너무 깁니다.", "The request URL is too long."},
    {417, "EXPECTATION_FAILED", "지원하지 않는 Expect 헤더입니다.",
     "The Expect header is not supported."},
    {431, "HEADERS_TOO_LARGE", "요청 헤더가 너무 큽니다.", "The request headers are too large."},
    {500, "INTERNAL", "서버 내부 오류가 발생했습니다.", "An internal error occurred."},
    {501, "NOT_IMPLEMENTED", "지원하지 않는 요청입니다.", "The request is not supported."},
    {503, "UNAVAILABLE", "일시적으로 서비스를 이용할 수 없습니다. 잠시 후 다시 시도해주세요.",
     "The service is temporarily unavailable. Please retry shortly."},
    {504, "TIMEOUT", "요청 처리 시간이 초과되었습니다.", "The request took too long to process."},
    {505, "HTTP_VERSION_NOT_SUPPORTED", "지원하지 않는 HTTP 버전입니다.",
     "The HTTP version is not supported."},
};

/* A q-value ("1", "0.8", "0.125") at v[i..n); 1 when there is none. */
static double qvalue(const char *v, size_t i, size_t n) {
  while (i < n && v[i] != ';')
    i++;
  for (i++; i < n && (v[i] == ' ' || v[i] == '\t'); i++) {
  }
  if (i + 1 >= n || (v[i] != 'q' && v[i] != 'Q') || v[i + 1] != '=') return 1;
  double q = 0, scale = 1;
  int frac = 0;
  for (i += 2; i < n && (isdigit((unsigned char)v[i]) || v[i] == '.'); i++) {
    if (v[i] == '.')
      frac = 1;
    else if (frac)
      q += (v[i] - '0') * (scale /= 10);
    else
      q = q * 10 + (v[i] - '0');
  }
  return q;
}

/* 1 when an Accept-Language value ranks English above Korean: the listed
 * language with the highest q wins, the first listed on a tie, Korean when
 * neither is listed (web.lua's lang() decides the same way). */
static int prefers_en(const char *v, size_t n) {
  double best = 0;
  int en = 0;
  for (size_t i = 0; i < n;) {
    size_t e = i;
    while (e < n && v[e] != ',')
      e++;
    while (i < e && (v[i] == ' ' || v[i] == '\t'))
      i++;
    size_t t = i;
    while (t < e && isalpha((unsigned char)v[t]))
      t++;
    int is_en = t - i == 2 && strncasecmp(v + i, "en", 2) == 0;
    int is_ko = t - i == 2 && strncasecmp(v + i, "ko", 2) == 0;
    if (is_en || is_ko) {
      double q = qvalue(v, t, e);
      if (q > best) {
        best = q;
        en = is_en;
      }
    }
    i = e + 1;
  }
  return en;
}

static int request_prefers_en(const fcfs_request_t *r) {
  const char *v = NULL;
  size_t len = 0;
  if (r->http) {
    const http_header_t *h = http_req_header(r->http, "accept-language");
    if (h) v = h->value, len = h->value_len;
  } else if (r->conn->in) { /* a request that failed before it was whole */
    v = http_in_header(r->conn->in, "accept-language", &len);
  }
  return v != NULL && prefers_en(v, len);
}

static void conn_fail(fcfs_request_t *r, int status, const char *reason) {
  const char *code = "ERROR", *msg = http_reason(status);
  for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
    if (errors[i].status == status) {
      code = errors[i].code;
      msg = request_prefers_en(r) ? errors[i].en : errors[i].ko;
    }
  char body[1024];
  int len =
      snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"", code, msg);
  if (reason) {
    char esc[256];
    size_t n = json_escape(esc, sizeof(esc), reason, strlen(reason));
    len += snprintf(body + len, sizeof(body) - (size_t)len, ",\"details\":{\"reason\":\"%.*s\"}",
                    (int)n, esc);
  }
  len += snprintf(body + len, sizeof(body) - (size_t)len, "},\"request_id\":\"%s\"}", r->id);
  static const char ctype[] = "Content-Type: application/json; charset=utf-8\r\n";
  conn_respond(r, status, ctype, sizeof(ctype) - 1, body, (size_t)len);
}

static const fcfs_request_ops_t conn_ops = {conn_respond, conn_fail};

/* Request ids: client-supplied when sane (to follow a request across
 * services), else worker-unique. */
static void request_id(fcfs_conn_t *c, const http_req_t *h) {
  const http_header_t *x = h ? h->request_id : NULL;
  if (x && x->value_len > 0 && x->value_len < sizeof(c->req.id)) {
    int ok = 1;
    for (size_t i = 0; i < x->value_len && ok; i++) {
      char ch = x->value[i];
      ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.';
    }
    if (ok) {
      memcpy(c->req.id, x->value, x->value_len);
      c->req.id[x->value_len] = '\0';
      c->req.id_len = x->value_len;
      return;
    }
  }
  /* worker id and pid (fixed per server) + a sequence number, in hex: its
   * nibbles spread one to a byte (nibble k in byte k), then all made digits
   * at once ('0' + n, plus 'a' - '0' - 10 where n + 6 carries into bit 4) */
  fcfs_server_t *s = c->srv;
  uint64_t d = (uint32_t)++s->request_seq;
  d = (d | d << 16) & 0x0000FFFF0000FFFFull;
  d = (d | d << 8) & 0x00FF00FF00FF00FFull;
  d = (d | d << 4) & 0x0F0F0F0F0F0F0F0Full;
  d += 0x3030303030303030ull + (((d + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull) * 0x27;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  d = __builtin_bswap64(d); /* the most significant digit first in memory */
#endif
  memcpy(c->req.id, s->id_prefix, 8);
  memcpy(c->req.id + 8, &d, 8);
  c->req.id[16] = '\0';
  c->req.id_len = 16;
}

/* A protocol error or timeout before a handler ran: answer and close. */
static void conn_error(fcfs_conn_t *c, int status) {
  c->must_close = 1;
  c->req.http = NULL;
  c->req.route = "-";
  c->req.start_ns = mono_ns();
  request_id(c, NULL);
  stop_timer(c);
  conn_fail(&c->req, status, c->in ? http_in_error(c->in) : NULL);
}

static void deadline_expired(fcfs_conn_t *c) {
  if (c->streaming) { /* its lifetime is over: the last chunk, the task cancelled */
    stream_end(c, 200);
    return;
  }
  char line[256];
  fcfs_log_req(FCFS_LOG_ERROR, c->req.id, c->req.remote,
               fcfs_request_line(&c->req, line, sizeof(line)),
               "request deadline of %gs passed, answering 504", c->srv->env.conf->request_timeout);
  conn_fail(&c->req, 504, NULL);
}

static void timer_fired(uv_timer_t *t) {
  fcfs_conn_t *c = t->data;
  uint64_t now = uv_now(c->srv->env.loop);
  c->armed_ms = 0;
  if (c->resume) { /* a new turn for pipelined requests that waited */
    c->resume = 0;
    conn_process(c);
    if (c->closing || c->armed_ms != 0) return;
    now = uv_now(c->srv->env.loop);
    uv_timer_start(&c->timer, timer_fired, c->deadline_ms > now ? c->deadline_ms - now : 0, 0);
    c->armed_ms = c->deadline_ms;
    return;
  }
  if (now < c->deadline_ms) { /* the limit moved on since it was armed */
    uv_timer_start(&c->timer, timer_fired, c->deadline_ms - now, 0);
    c->armed_ms = c->deadline_ms;
    return;
  }
  switch (c->phase) {
  case PHASE_IDLE:
  case PHASE_LINGER:
    conn_close(c);
    break;
  case PHASE_HEADERS:
  case PHASE_BODY:
    conn_error(c, 408);
    break;
  case PHASE_HANDLER:
    deadline_expired(c);
    break;
  }
}

/* Behind trusted proxies, the client is the right-most address of
 * real_ip_header (its last occurrence first) that is not itself a trusted
 * proxy; the walk stops at anything that is not an address, keeping the
 * last address it passed. */
static void real_ip(fcfs_conn_t *c, const http_req_t *h) {
  const char *name = c->srv->env.conf->real_ip_header;
  size_t nl = strlen(name);
  fcfs_request_t *r = &c->req;
  memcpy(r->remote, c->peer, sizeof(r->remote));
  for (size_t i = h->nheaders; i-- > 0;) {
    const http_header_t *x = &h->headers[i];
    if (x->name_len != nl || strncasecmp(x->name, name, nl) != 0) continue;
    for (size_t e = x->value_len; e > 0;) {
      size_t b = e;
      while (b > 0 && x->value[b - 1] != ',')
        b--;
      size_t s = b, t = e;
      e = b > 0 ? b - 1 : 0;
      while (s < t && (x->value[s] == ' ' || x->value[s] == '\t'))
        s++;
      while (t > s && (x->value[t - 1] == ' ' || x->value[t - 1] == '\t'))
        t--;
      if (s == t) continue; /* "a, , b" */
      char text[INET6_ADDRSTRLEN];
      unsigned char addr[16];
      int family = AF_INET;
      if (t - s >= sizeof(text)) return;
      memcpy(text, x->value + s, t - s);
      text[t - s] = '\0';
      if (inet_pton(AF_INET, text, addr) != 1) {
        family = AF_INET6;
        if (inet_pton(AF_INET6, text, addr) != 1) return;
      }
      inet_ntop(family, addr, r->remote, sizeof(r->remote));
      if (!fcfs_conf_trusted(c->srv->env.conf, family, addr)) return;
    }
  }
}

/* /_host and everything under it: the admin listener's alone. */
static int admin_path(const http_req_t *h) {
  return h->path_len >= 6 && memcmp(h->path, "/_host", 6) == 0 &&
         (h->path_len == 6 || h->path[6] == '/');
}

static void start_request(fcfs_conn_t *c, http_req_t *h) {
  fcfs_server_t *s = c->srv;
  const fcfs_conf_t *conf = s->env.conf;
  fcfs_request_t *r = &c->req;
  r->http = h;
  r->task = NULL;
  r->route = NULL;
  c->streaming = 0;
  c->drained = NULL;
  r->start_ns = mono_ns();
  r->deadline_ms = uv_now(s->env.loop) + (uint64_t)(conf->request_timeout * 1000);
  request_id(c, h);
  c->in_flight = 1;
  c->nrequests++;
  s->env.slot->starts++;
  s->busy++;
  slot_gauges(s);
  set_timer(c, PHASE_HANDLER, conf->request_timeout);
  if (c->trusted) real_ip(c, h);
  if (!r->admin && admin_path(h)) {
    r->route = "404";
    conn_fail(r, 404, NULL);
    return;
  }
  s->env.request(s->env.arg, r);
}

/* Fairness: a client pipelining requests back to back gets FAIR_BATCH of
 * them served per loop turn. Past that its turn is over: reading stops (libuv
 * would otherwise read it again and again while each read fills the buffer)
 * and its timer fires in the next loop turn, after the other connections had
 * theirs, to serve the rest from the backlog. -> 1 when the turn is over. */
static int turn_over(fcfs_conn_t *c) {
  uint64_t now = uv_now(c->srv->env.loop);
  if (c->turn_ms != now) {
    c->turn_ms = now;
    c->turn_started = 0;
  }
  if (c->turn_started < FAIR_BATCH) return 0;
  if (!c->read_stopped) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_stopped = 1;
  }
  if (!c->resume) { /* 1 ms: a 0 ms timer started in a timer callback would run in the same pass */
    c->resume = 1;
    uv_timer_start(&c->timer, timer_fired, 1, 0);
    c->armed_ms = now + 1;
  }
  return 1;
}

/* Parse what is buffered; start at most one request. */
static int conn_feed(fcfs_conn_t *c, const char *data, size_t len, size_t *used) {
  fcfs_server_t *s = c->srv;
  const fcfs_conf_t *conf = s->env.conf;
  http_req_t *h = NULL;
  *used = 0;
  while (*used < len && !c->in_flight && !c->must_close && !c->closing && !turn_over(c)) {
    http_in_state_t before = http_in_state(c->in);
    ssize_t n = http_in_feed(c->in, data + *used, len - *used, &h);
    if (n < 0) {
      conn_error(c, http_in_status(c->in));
      return -1;
    }
    *used += (size_t)n;
    if (http_in_take_continue(c->in)) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
      if (conn_write(c, &b, 1) != 0) {
        conn_close(c);
        return -1;
      }
    }
    if (h) {
      c->turn_started++;
      start_request(c, h);
      return 0;
    }
    http_in_state_t after = http_in_state(c->in);
    if (after != before || c->phase == PHASE_IDLE) {
      if (after == HTTP_IN_HEADERS && c->phase != PHASE_HEADERS)
        set_timer(c, PHASE_HEADERS, conf->header_timeout);
      else if (after == HTTP_IN_BODY && c->phase != PHASE_BODY)
        set_timer(c, PHASE_BODY, conf->body_timeout);
    }
    if (n == 0) break;
  }
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  fcfs_conn_t *c = h->data;
  fcfs_server_t *s = c->srv;
  if (s->rbuf_used) { /* only one read at a time uses the shared buffer */
    *buf = uv_buf_init(malloc(READ_BUF_SIZE), READ_BUF_SIZE);
    return;
  }
  s->rbuf_used = 1;
  *buf = (uv_buf_t){.base = s->rbuf, .len = READ_BUF_SIZE};
}

static void keep_backlog(fcfs_conn_t *c, const char *data, size_t len) {
  if (c->boff > 0 && c->boff == c->blen) c->boff = c->blen = 0;
  if (c->blen + len > c->bcap) {
    if (c->boff > 0) {
      memmove(c->backlog, c->backlog + c->boff, c->blen - c->boff);
      c->blen -= c->boff;
      c->boff = 0;
    }
    if (c->blen + len > c->bcap) {
      size_t cap = c->bcap ? c->bcap : 4096;
      while (cap < c->blen + len)
        cap *= 2;
      char *p = realloc(c->backlog, cap);
      if (p == NULL) {
        conn_close(c);
        return;
      }
      c->backlog = p;
      c->bcap = cap;
    }
  }
  memcpy(c->backlog + c->blen, data, len);
  c->blen += len;
  /* Pipelined bytes pile up while a handler runs: stop reading past a bound. */
  if (c->blen - c->boff > MAX_BACKLOG && !c->read_stopped) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_stopped = 1;
  }
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  fcfs_conn_t *c = stream->data;
  fcfs_server_t *s = c->srv;
  if (nread < 0 && c->in_flight && !s->abort_cancels && !c->streaming) {
    /* client_abort = "finish": the handler runs to its end (its writes to
     * Redis or MySQL happen); the answer goes out or into the void, then
     * the connection closes. Its deadline still cancels it. */
    uv_read_stop(stream);
    c->eof = c->must_close = 1;
  } else if (nread < 0) {
    conn_close(c);
  } else if (nread > 0 && c->phase == PHASE_LINGER) {
    /* dropped */
  } else if (nread > 0) {
    size_t used = 0;
    if (c->blen == c->boff && !c->in_flight && c->tcp.write_queue_size < MAX_WRITE_QUEUE) {
      c->processing = 1; /* conn_feed serves what it can of buf itself */
      int rc = conn_feed(c, buf->base, (size_t)nread, &used);
      c->processing = 0;
      if (rc == 0 && !c->closing && used < (size_t)nread && !c->must_close) {
        keep_backlog(c, buf->base + used, (size_t)nread - used);
        if (!c->in_flight && !c->closing) conn_process(c); /* the first one answered at once */
      }
    } else if (!c->closing && !c->must_close) {
      keep_backlog(c, buf->base, (size_t)nread);
    }
  }
  if (buf->base == s->rbuf)
    s->rbuf_used = 0;
  else
    free(buf->base);
}

/* Serve what waits in the backlog (pipelined requests). A handler that
 * answers without yielding calls back in here through its response: the
 * flag keeps that from recursing, the loop below goes on instead. */
static void conn_process(fcfs_conn_t *c) {
  if (c->processing) return;
  c->processing = 1;
  while (c->blen > c->boff && !c->in_flight && !c->closing && !c->must_close &&
         c->tcp.write_queue_size < MAX_WRITE_QUEUE) {
    size_t used = 0;
    int rc = conn_feed(c, c->backlog + c->boff, c->blen - c->boff, &used);
    c->boff += used;
    if (rc != 0 || c->closing || used == 0) break;
  }
  c->processing = 0;
  if (c->closing) return;
  if (c->boff == c->blen) c->boff = c->blen = 0;
  if (c->read_stopped && !c->eof && !c->resume && c->blen - c->boff <= MAX_BACKLOG) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  listener_t *l = listener->data;
  fcfs_server_t *s = l->srv;
  if (status != 0) return;
  fcfs_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->srv = s;
  if (l->is_pipe)
    uv_pipe_init(s->env.loop, &c->pipe, 0);
  else
    uv_tcp_init(s->env.loop, &c->tcp);
  uv_timer_init(s->env.loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->req.ops = &conn_ops;
  c->req.conn = c;
  c->req.admin = l->admin;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      uv_fileno((uv_handle_t *)&c->tcp, &c->fd) != 0) { /* another worker took it */
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, conn_freed);
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
    return;
  }
  s->env.slot->accepts++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  slot_gauges(s);
  if (s->nconns > s->env.conf->max_connections || s->draining ||
      !(c->in = http_in_new(&s->limits))) {
    conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (!l->is_pipe) {
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) ss.ss_family = AF_UNSPEC;
  } else {
    ss.ss_family = AF_UNIX;
  }
  const fcfs_conf_t *conf = s->env.conf;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, c->peer, sizeof(c->peer));
    c->trusted = fcfs_conf_trusted(conf, AF_INET, &a->sin_addr);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, c->peer, sizeof(c->peer));
    c->trusted = fcfs_conf_trusted(conf, AF_INET6, &a->sin6_addr);
  } else {
    snprintf(c->peer, sizeof(c->peer), "unix");
  }
  memcpy(c->req.remote, c->peer, sizeof(c->req.remote));
  set_timer(c, PHASE_IDLE, s->env.conf->header_timeout);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ---- the server ------------------------------------------------------------ */

/* A unix listening socket at path, owner-only (srw-------). A socket file
 * left there by a node that died is replaced; one a live node listens on is
 * not. */
static int listen_unix(const char *path, int backlog, char *err, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct stat st;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(err, errlen, "listen unix:%s: path too long", path);
    return -1;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      errno = EADDRINUSE;
      goto fail;
    }
    unlink(path);
  }
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rc != 0 || listen(fd, backlog) != 0) goto fail;
  return fd;
fail:
  snprintf(err, errlen, "listen unix:%s: %s", path, strerror(errno));
  if (fd >= 0) close(fd);
  return -1;
}

int fcfs_listen_socket(const char *addr, int backlog, char *err, size_t errlen) {
  if (strncmp(addr, "unix:", 5) == 0) return listen_unix(addr + 5, backlog, err, errlen);
  char host[256];
  const char *colon = strrchr(addr, ':');
  size_t hl = colon ? (size_t)(colon - addr) : 0;
  if (colon == NULL || hl >= sizeof(host)) {
    snprintf(err, errlen, "listen: bad address \"%s\" (want host:port)", addr);
    return -1;
  }
  if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') { /* [::1]:8080 */
    memcpy(host, addr + 1, hl - 2);
    host[hl - 2] = '\0';
  } else {
    memcpy(host, addr, hl);
    host[hl] = '\0';
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
  struct addrinfo *ai = NULL;
  int rc = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, colon + 1, &hints, &ai);
  if (rc != 0) {
    snprintf(err, errlen, "listen %s: %s", addr, gai_strerror(rc));
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
    snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  return fd;
}

static int listener_open(fcfs_server_t *s, listener_t *l, int fd, const char *addr, int admin,
                         char *err, size_t errlen) {
  uv_loop_t *loop = s->env.loop;
  l->srv = s;
  l->admin = admin;
  l->is_pipe = strncmp(addr, "unix:", 5) == 0;
  int rc = l->is_pipe ? uv_pipe_init(loop, &l->pipe, 0) : uv_tcp_init(loop, &l->tcp);
  if (rc != 0) goto fail;
  l->tcp.data = l;
  l->open = 1;
  rc = l->is_pipe ? uv_pipe_open(&l->pipe, fd) : uv_tcp_open(&l->tcp, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->tcp, s->env.conf->backlog, on_connection);
  if (rc == 0) return 0;
fail:
  snprintf(err, errlen, "listen %s: %s", addr, uv_strerror(rc));
  return -1;
}

static void listener_close(listener_t *l) {
  if (!l->open) return;
  l->open = 0;
  uv_close((uv_handle_t *)&l->tcp, NULL);
}

fcfs_server_t *fcfs_server_new(const fcfs_server_env_t *env, int listen_fd, int admin_fd, char *err,
                               size_t errlen) {
  fcfs_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->env = *env;
  snprintf(s->id_prefix, sizeof(s->id_prefix), "%02x%06x", (unsigned)env->worker_id & 0xff,
           (unsigned)getpid() & 0xffffff);
  const fcfs_conf_t *c = env->conf;
  s->abort_cancels = strcmp(c->client_abort, "cancel") == 0;
  s->limits.max_url = (size_t)c->max_url;
  s->limits.max_header_size = (size_t)c->max_header_size;
  s->limits.max_headers = (size_t)c->max_headers;
  s->limits.max_body = (size_t)c->max_body;
  if (c->static_dir[0] && (s->statics = fcfs_static_new(c, err, errlen)) == NULL) {
    free(s);
    return NULL;
  }
  if (listener_open(s, &s->pub, listen_fd, c->listen, 0, err, errlen) != 0 ||
      (admin_fd >= 0 &&
       listener_open(s, &s->admin, admin_fd, c->admin_listen, 1, err, errlen) != 0)) {
    fcfs_server_stop_accepting(s);
    uv_run(env->loop, UV_RUN_NOWAIT);
    fcfs_static_free(s->statics);
    free(s);
    return NULL;
  }
  return s;
}

void fcfs_server_stop_accepting(fcfs_server_t *s) {
  listener_close(&s->pub);
  listener_close(&s->admin);
}

void fcfs_server_close_idle(fcfs_server_t *s) {
  s->draining = 1;
  fcfs_conn_t *c = s->conns;
  while (c) {
    fcfs_conn_t *next = c->next;
    if (!c->in_flight && c->writes == 0 && (c->phase == PHASE_IDLE || c->phase == PHASE_LINGER))
      conn_close(c);
    else if (!c->in_flight)
      c->must_close = 1;
    c = next;
  }
}

int fcfs_server_busy(const fcfs_server_t *s) {
  return s->busy;
}

int fcfs_server_conns(const fcfs_server_t *s) {
  return s->nconns;
}

void fcfs_server_close(fcfs_server_t *s) {
  fcfs_server_stop_accepting(s);
  s->draining = 1;
  while (s->conns)
    conn_close(s->conns);
}

void fcfs_server_free(fcfs_server_t *s) {
  fcfs_static_free(s->statics);
  free(s);
}

/* ---- streamed answers --------------------------------------------------------- */

int fcfs_request_stream_open(fcfs_request_t *r, int status, const char *headers, size_t hlen,
                             double lifetime) {
  fcfs_conn_t *c = r->conn;
  if (c->streaming || !c->in_flight || c->closing || c->eof || r->http == NULL || status < 200 ||
      status == 204 || status == 304)
    return -1;
  c->stream_raw = r->http->http_minor == 0;
  int keep = !c->stream_raw && keep_alive(c);
  size_t clen = c->stream_raw ? HTTP_UNTIL_CLOSE : HTTP_CHUNKED;
  if (write_answer(c, status, headers, hlen, NULL, 0, clen, keep) != 0) c->broken = 1;
  if (!keep) c->must_close = 1;
  c->streaming = 1;
  c->stream_status = status;
  c->stream_bytes = 0;
  r->deadline_ms = uv_now(c->srv->env.loop) + (uint64_t)(lifetime * 1000);
  set_timer(c, PHASE_HANDLER, lifetime);
  return c->broken ? -1 : 0;
}

int fcfs_request_stream_write(fcfs_request_t *r, const char *data, size_t len) {
  fcfs_conn_t *c = r->conn;
  if (!c->streaming || c->broken || c->closing) return UV_EPIPE;
  if (len == 0 || r->http->is_head) return 0;
  char size[24];
  int n = snprintf(size, sizeof(size), "%zx\r\n", len);
  uv_buf_t bufs[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                      uv_buf_init("\r\n", 2)};
  int rc = c->stream_raw ? conn_write(c, bufs + 1, 1) : conn_write(c, bufs, 3);
  if (rc != 0) {
    c->broken = 1;
    return rc;
  }
  c->stream_bytes += len;
  return 0;
}

int fcfs_request_streaming(const fcfs_request_t *r) {
  return r->conn->streaming;
}

size_t fcfs_request_stream_queued(const fcfs_request_t *r) {
  return r->conn->tcp.write_queue_size;
}

void fcfs_request_stream_on_drain(fcfs_request_t *r, void (*drained)(void *arg), void *arg) {
  r->conn->drained = drained;
  r->conn->drained_arg = arg;
}

/* The stream is over: the last chunk, unless the handler failed (500) or a
 * write did; then the connection closes and the client sees the body cut. */
static void stream_end(fcfs_conn_t *c, int status) {
  fcfs_request_t *r = &c->req;
  c->streaming = 0;
  c->drained = NULL;
  int ok = status != 500 && !c->broken;
  int keep = ok && !c->stream_raw && keep_alive(c);
  double secs = request_counted(c, c->stream_status);
  int rc = c->broken ? UV_EPIPE : 0;
  if (ok && !c->stream_raw && !r->http->is_head) {
    uv_buf_t last = uv_buf_init("0\r\n\r\n", 5);
    rc = conn_write(c, &last, 1);
  }
  request_finish(c, c->stream_status, c->stream_bytes, secs, keep, rc);
}
