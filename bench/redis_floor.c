/* bench/redis_floor.c -- the floor under "one Redis GET per HTTP request" on this machine.
 *
 * A server with nothing in it but the round trip: libuv, hiredis's async client (one connection
 * per process), requests found by their blank line, no router, no Lua, no per-request allocation
 * of its own. WRITES picks how its commands leave: "deferred" (the default) as fcfs's host/redis.c
 * does -- queued by I/O callbacks, they wait for the check phase of one more loop iteration whose
 * poll does not block, so the requests already readable on other sockets join the write; or
 * "next-poll", hiredis's own libuv adapter: written when the next poll finds the socket writable
 * (the commands of one iteration in one write).
 * GET /get answers {"remaining":<GET stock:1>,"product_id":1} after one Redis GET; any other
 * request is answered at once with {"ok":true}. Both answers carry the headers fcfs sends
 * (Server, Date, Content-Length, Connection, Content-Type, X-Request-Id), so the bytes on the
 * wire match fcfs's /bench/stock/1 and /hello. bench/redis_floor.sh runs it beside fcfs: the
 * cost of the round trip here is what any server pays for it on the machine.
 *
 * Processes: the first one binds the port and forks WORKERS - 1 others (they die with it:
 * PR_SET_PDEATHSIG); all of them accept from that one socket, one connection per wake-up
 * (UV_TCP_SINGLE_ACCEPT), as fcfs's workers do. One request in flight per
 * connection (wrk does not pipeline): a request read while a GET is owed waits for its reply.
 * Memory: a conn_t is freed by whichever comes last of its handle's close callback and the
 * reply owed to it.
 *
 * usage: redis_floor PORT REDIS_HOST REDIS_PORT WORKERS [deferred|next-poll] */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define BUF 8192

typedef struct {
  uv_tcp_t h;
  char in[BUF];
  size_t inlen;
  int owed;   /* a Redis reply is owed to this connection */
  int closed; /* the handle is closing or closed */
  int gone;   /* the handle's close callback ran */
} conn_t;

static redisAsyncContext *redis;
static char date[32]; /* "Thu, 03 Dec 2026 23:28:58 GMT" */
static time_t date_at;
static unsigned long long served;

static void fail(const char *what, int rc) {
  fprintf(stderr, "redis_floor: %s: %s\n", what, rc ? uv_strerror(rc) : "failed");
  exit(1);
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->gone = 1;
  if (!c->owed) free(c);
}

static void conn_close(conn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  uv_close((uv_handle_t *)&c->h, on_closed);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

/* Status line, headers and body in one write (the rest by uv_write if the socket is full). */
static void respond(conn_t *c, const char *body, size_t bodylen) {
  char out[512];
  time_t now = time(NULL);
  if (now != date_at) {
    date_at = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  int n = snprintf(out, sizeof out,
                   "HTTP/1.1 200 OK\r\nServer: fcfs\r\nDate: %s\r\nContent-Length: %zu\r\n"
                   "Connection: keep-alive\r\nContent-Type: application/json; charset=utf-8\r\n"
                   "X-Request-Id: %016llx\r\n\r\n",
                   date, bodylen, ++served);
  if (n < 0 || (size_t)n + bodylen > sizeof out) fail("answer too long", 0);
  memcpy(out + n, body, bodylen);
  size_t len = (size_t)n + bodylen;
  uv_buf_t b = uv_buf_init(out, (unsigned)len);
  int w = uv_try_write((uv_stream_t *)&c->h, &b, 1);
  if (w == (int)len) return;
  if (w < 0 && w != UV_EAGAIN) {
    conn_close(c);
    return;
  }
  if (w < 0) w = 0;
  uv_write_t *req = malloc(sizeof *req + len - (size_t)w);
  if (!req) fail("out of memory", 0);
  memcpy(req + 1, out + w, len - (size_t)w);
  b = uv_buf_init((char *)(req + 1), (unsigned)(len - (size_t)w));
  if (uv_write(req, (uv_stream_t *)&c->h, &b, 1, on_written) < 0) {
    free(req);
    conn_close(c);
  }
}

static void serve(conn_t *c);

static void on_get(redisAsyncContext *ac, void *r, void *arg) {
  (void)ac;
  conn_t *c = arg;
  redisReply *rep = r;
  c->owed = 0;
  if (c->closed) {
    if (c->gone) free(c);
    return;
  }
  char body[128];
  size_t n = 0;
  const char *v = rep && rep->type == REDIS_REPLY_STRING ? rep->str : "0";
  size_t vlen = rep && rep->type == REDIS_REPLY_STRING ? rep->len : 1;
  if (vlen > 64) vlen = 64;
  memcpy(body, "{\"remaining\":", 13), n = 13;
  memcpy(body + n, v, vlen), n += vlen;
  memcpy(body + n, ",\"product_id\":1}", 16), n += 16;
  respond(c, body, n);
  serve(c);
}

/* Answer the complete requests in c->in, up to the first one that waits for Redis. */
static void serve(conn_t *c) {
  while (!c->owed && !c->closed) {
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) {
      if (c->inlen == BUF) conn_close(c); /* a request this floor does not take */
      return;
    }
    int get = c->inlen >= 9 && memcmp(c->in, "GET /get ", 9) == 0;
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
    if (!get) {
      respond(c, "{\"ok\":true}", 11);
      continue;
    }
    if (redisAsyncCommand(redis, on_get, c, "GET stock:1") != REDIS_OK) fail("redisAsyncCommand", 0);
    c->owed = 1;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  conn_t *c = h->data;
  *b = uv_buf_init(c->in + c->inlen, (unsigned)(BUF - c->inlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  conn_t *c = s->data;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->inlen += (size_t)n;
  serve(c);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c) fail("out of memory", 0);
  uv_tcp_init(server->loop, &c->h);
  c->h.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->h) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->h, 1);
  uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
}

/* The "deferred" event link between hiredis and the loop: reads when the socket is readable,
 * writes from the check phase of the iteration after the one that queued them. */
typedef struct {
  redisAsyncContext *ac;
  uv_poll_t poll;
  uv_check_t check;
  uv_idle_t one_more_poll; /* active: the write waits, the next poll does not block */
  int want_write;
} link_t;

static void on_poll(uv_poll_t *p, int status, int events) {
  link_t *l = p->data;
  if (status == 0 && (events & UV_READABLE)) redisAsyncHandleRead(l->ac);
}

static void on_one_more_poll(uv_idle_t *h) {
  (void)h; /* being active is its whole job */
}

static void on_check(uv_check_t *h) {
  link_t *l = h->data;
  if (!l->want_write) return;
  if (!uv_is_active((uv_handle_t *)&l->one_more_poll)) {
    uv_idle_start(&l->one_more_poll, on_one_more_poll);
    return;
  }
  uv_idle_stop(&l->one_more_poll);
  l->want_write = 0;
  redisAsyncHandleWrite(l->ac); /* what the socket does not take asks again (link_add_write) */
}

static void link_add_read(void *arg) {
  link_t *l = arg;
  uv_poll_start(&l->poll, UV_READABLE, on_poll);
}

static void link_del_read(void *arg) {
  link_t *l = arg;
  uv_poll_stop(&l->poll);
}

static void link_add_write(void *arg) {
  ((link_t *)arg)->want_write = 1;
}

static void link_del_write(void *arg) {
  ((link_t *)arg)->want_write = 0;
}

static void link_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  static link_t l;
  l.ac = ac;
  if (uv_poll_init(loop, &l.poll, ac->c.fd) != 0) fail("uv_poll_init", 0);
  uv_check_init(loop, &l.check);
  uv_idle_init(loop, &l.one_more_poll);
  l.poll.data = l.check.data = &l;
  uv_check_start(&l.check, on_check);
  ac->ev.data = &l;
  ac->ev.addRead = link_add_read;
  ac->ev.delRead = link_del_read;
  ac->ev.addWrite = link_add_write;
  ac->ev.delWrite = link_del_write;
}

static void on_redis_gone(const redisAsyncContext *ac, int status) {
  (void)status;
  fprintf(stderr, "redis_floor: Redis connection lost: %s\n", ac->errstr);
  exit(1);
}

static void worker(int fd, const char *rhost, int rport, int deferred) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_open(&server, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 1024, on_connection);
  if (rc != 0) fail("listen", rc);
  redis = redisAsyncConnect(rhost, rport);
  if (!redis || redis->err) fail("redisAsyncConnect", 0);
  struct pollfd connected = {.fd = redis->c.fd, .events = POLLOUT}; /* before the first write */
  if (poll(&connected, 1, 1000) != 1) fail("connect to Redis", 0);
  if (deferred)
    link_attach(redis, loop);
  else
    redisLibuvAttach(redis, loop);
  redisAsyncSetDisconnectCallback(redis, on_redis_gone);
  uv_run(loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6 || (argc == 6 && strcmp(argv[5], "deferred") != 0 &&
                                strcmp(argv[5], "next-poll") != 0)) {
    fprintf(stderr, "usage: redis_floor PORT REDIS_HOST REDIS_PORT WORKERS [deferred|next-poll]\n");
    return 2;
  }
  int deferred = argc == 5 || strcmp(argv[5], "deferred") == 0;
  int port = atoi(argv[1]), rport = atoi(argv[3]), workers = atoi(argv[4]);
  signal(SIGPIPE, SIG_IGN);
  setenv("UV_TCP_SINGLE_ACCEPT", "1", 0); /* as fcfs: one accept per wake-up, the workers share */
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
    fail("bind", 0);
  pid_t parent = getpid();
  for (int i = 1; i < workers; i++) {
    pid_t p = fork();
    if (p < 0) fail("fork", 0);
    if (p == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) return 1;
      break;
    }
  }
  worker(fd, argv[2], rport, deferred);
  return 0;
}
