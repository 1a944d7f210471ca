/* test_redis.c -- the Redis pool (host/redis.c) against a real redis-server.
 *
 * Always starts its own redis-server (a unix socket and a free loopback port
 * under a temporary directory, killed at the end), whatever FCFS_TEST_REDIS
 * says: the kill/restart, exact connection count, AUTH and TCP checks need a
 * server nobody else uses. A plain hiredis blocking connection is the "other
 * client" used to inspect the server (CLIENT LIST, SCRIPT LOAD, CLIENT
 * PAUSE). Prints TAP.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis.h"
#include "tap.h"

static uv_loop_t loop;
static char tmpdir[] = "/tmp/fcfs-test-redis-XXXXXX";
static char sockpath[256], logpath[256], unix_addr[300], tcp_addr[64];
static int tcp_port;
static pid_t server_pid;
static const char *addr; /* the address the pool uses */

/* ---- the server ---- */

static redisContext *helper_connect(const char *a) {
  if (!strncmp(a, "unix:", 5)) return redisConnectUnix(a + 5);
  char host[64];
  const char *colon = strrchr(a, ':');
  snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
  return redisConnect(host, atoi(colon + 1));
}

static int server_ready(void) {
  redisContext *h = helper_connect(unix_addr);
  int ok = 0;
  if (h && !h->err) {
    redisReply *rep = redisCommand(h, "PING");
    ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (rep) freeReplyObject(rep);
  }
  if (h) redisFree(h);
  return ok;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(sa.sin_port);
}

static int start_server(void) {
  char port[16];
  snprintf(port, sizeof port, "%d", tcp_port);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--unixsocket",
           sockpath, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize",
           "no", "--dir", tmpdir, (char *)NULL);
    _exit(127);
  }
  server_pid = pid;
  for (int i = 0; i < 500; i++) { /* up to 5 s */
    if (server_ready()) return 0;
    usleep(10000);
  }
  return -1;
}

static void kill_server(int sig) {
  if (server_pid <= 0) return;
  kill(server_pid, sig);
  waitpid(server_pid, NULL, 0);
  server_pid = 0;
}

static redisReply *helper_cmd(const char *fmt, ...) {
  redisContext *h = helper_connect(addr);
  redisReply *rep = NULL;
  if (h && !h->err) {
    va_list ap;
    va_start(ap, fmt);
    rep = redisvCommand(h, fmt, ap);
    va_end(ap);
  }
  if (h) redisFree(h);
  return rep;
}

/* Lines of CLIENT LIST containing needle. */
static int clients_matching(const char *needle) {
  redisReply *rep = helper_cmd("CLIENT LIST");
  int n = 0;
  if (rep && rep->type == REDIS_REPLY_STRING)
    for (char *p = rep->str; (p = strstr(p, needle)); p++)
      n++;
  if (rep) freeReplyObject(rep);
  return n;
}

/* ---- driving the loop ---- */

static int guard_fired;
static uv_timer_t guard;

static void on_guard(uv_timer_t *t) {
  guard_fired = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until *flag (if flag) or ms elapsed. Returns *flag. */
static int run_until(const int *flag, unsigned ms) {
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, ms, 0);
  while (!(flag && *flag) && !guard_fired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  return flag ? *flag : 0;
}

typedef struct {
  int done, seq;
  redisReply *reply;
  const char *err;
} res_t;

static int seq;

static void on_res(void *arg, redisReply *reply, const char *err) {
  res_t *r = arg;
  r->done++;
  r->reply = reply;
  r->err = err;
  r->seq = ++seq;
}

static void res_clear(res_t *r) {
  if (r->reply) fcfs_redis_reply_free(r->reply);
  memset(r, 0, sizeof *r);
}

/* Build argv from a NULL-terminated list of strings. */
static int argv_of(const char **argv, size_t *lens, va_list ap) {
  int n = 0;
  const char *s;
  while ((s = va_arg(ap, const char *)) && n < 16) {
    argv[n] = s;
    lens[n++] = strlen(s);
  }
  return n;
}

static int send_on(fcfs_redis_t *r, fcfs_redis_conn_t *c, res_t *res, double timeout, void **handle,
                   ...) {
  const char *argv[16];
  size_t lens[16];
  va_list ap;
  va_start(ap, handle);
  int n = argv_of(argv, lens, ap);
  va_end(ap);
  memset(res, 0, sizeof *res);
  if (c) return fcfs_redis_conn_command_argv(c, n, argv, lens, timeout, on_res, res, handle);
  return r ? fcfs_redis_command_argv(r, n, argv, lens, timeout, on_res, res, handle)
           : FCFS_REDIS_EINVAL;
}

#define SEND(r, res, ...) send_on((r), NULL, (res), 0, NULL, __VA_ARGS__, (const char *)NULL)
#define SEND_ON(c, res, ...) send_on(NULL, (c), (res), 0, NULL, __VA_ARGS__, (const char *)NULL)
#define SEND_T(r, c, res, t, h, ...)                                                               \
  send_on((r), (c), (res), (t), (h), __VA_ARGS__, (const char *)NULL)

static int is_str(const redisReply *rep, int type, const char *s) {
  return rep && rep->type == type && rep->len == strlen(s) && !memcmp(rep->str, s, rep->len);
}

/* ---- tests ---- */

static fcfs_conf_t conf;
static fcfs_pool_stats_t stats;

/* Commands issued without waiting may go to different shared connections;
 * those that depend on each other go on one, from fcfs_redis_shared(). */
static void test_basics(fcfs_redis_t *r) {
  res_t a, b, c, d, e, f, g;
  fcfs_redis_conn_t *sc = fcfs_redis_shared(r);
  SEND_ON(sc, &a, "DEL", "t:k", "t:n", "t:l", "t:missing");
  SEND_ON(sc, &b, "SET", "t:k", "v1");
  SEND_ON(sc, &c, "GET", "t:k");
  SEND_ON(sc, &d, "INCR", "t:n");
  SEND_ON(sc, &e, "GET", "t:missing");
  SEND_ON(sc, &f, "RPUSH", "t:l", "a", "b", "c");
  SEND_ON(sc, &g, "NOSUCHCOMMAND", "x");
  run_until(&g.done, 3000);
  CHECK(a.reply && a.reply->type == REDIS_REPLY_INTEGER, "DEL -> integer");
  CHECK(is_str(b.reply, REDIS_REPLY_STATUS, "OK"), "SET -> status OK");
  CHECK(is_str(c.reply, REDIS_REPLY_STRING, "v1"), "GET -> bulk string");
  CHECK(d.reply && d.reply->type == REDIS_REPLY_INTEGER && d.reply->integer == 1, "INCR -> 1");
  CHECK(e.reply && e.reply->type == REDIS_REPLY_NIL, "GET missing -> nil");
  CHECK(f.reply && f.reply->type == REDIS_REPLY_INTEGER && f.reply->integer == 3, "RPUSH -> 3");
  CHECK(g.reply && g.reply->type == REDIS_REPLY_ERROR && !strncmp(g.reply->str, "ERR", 3) && !g.err,
        "unknown command -> server error reply with its text");
  CHECK(a.seq < b.seq && b.seq < c.seq && c.seq < g.seq, "one connection's replies come in order");
  res_clear(&a), res_clear(&b), res_clear(&c), res_clear(&d), res_clear(&e), res_clear(&f);
  res_clear(&g);

  SEND(r, &a, "LRANGE", "t:l", "0", "-1");
  run_until(&a.done, 3000);
  CHECK(a.reply && a.reply->type == REDIS_REPLY_ARRAY && a.reply->elements == 3 &&
            is_str(a.reply->element[2], REDIS_REPLY_STRING, "c"),
        "LRANGE -> array of bulk strings");
  res_clear(&a);

  /* binary safe and large: 2 MB with NUL and CRLF inside, several reads */
  size_t big = 2u << 20;
  char *val = malloc(big);
  for (size_t i = 0; i < big; i++)
    val[i] = (char)(i % 251);
  memcpy(val + 10, "\r\n\0\r\n", 5);
  const char *argv[3] = {"SET", "t:big", val};
  size_t lens[3] = {3, 5, big};
  memset(&a, 0, sizeof a);
  sc = fcfs_redis_shared(r);
  fcfs_redis_conn_command_argv(sc, 3, argv, lens, 0, on_res, &a, NULL);
  SEND_ON(sc, &b, "GET", "t:big");
  run_until(&b.done, 5000);
  CHECK(is_str(a.reply, REDIS_REPLY_STATUS, "OK") && b.reply &&
            b.reply->type == REDIS_REPLY_STRING && b.reply->len == big &&
            !memcmp(b.reply->str, val, big),
        "2 MB binary value round trip");
  free(val);
  res_clear(&a), res_clear(&b);
}

/* Commands are formatted as RESP by hand (redis.c): every argument must
 * reach the server byte for byte, whatever its length or content. A wrong
 * length, count or terminator desynchronises the connection (the server
 * waits for more bytes or answers a protocol error): these checks fail. */
#define NECHO 24
static void test_encoding(fcfs_redis_t *r) {
  /* every digit-count boundary of a bulk length, 0 bytes to 1 MB, past the
   * 32 KB early flush with more commands queued behind in the same turn;
   * 47..49: the edge of a reply string kept inside its block */
  static const size_t lens[NECHO] = {0,     1,     2,     9,     10,    11,    47,     48,
                                     49,    99,    100,   101,   999,   1000,  1001,   9999,
                                     10000, 32767, 32768, 32769, 40000, 99999, 100000, 1000000};
  size_t maxl = lens[NECHO - 1];
  char *buf = malloc(maxl);
  for (size_t i = 0; i < maxl; i++)
    buf[i] = (char)((i * 7 + 13) % 256); /* every byte value, NUL, CR and LF included */
  memcpy(buf, "\r\n\0$3\r\n*1", 9);      /* what a RESP reader would stumble on */
  static res_t e[NECHO];
  fcfs_redis_conn_t *sc = fcfs_redis_shared(r);
  int sent = 0;
  for (int k = 0; k < NECHO; k++) {
    const char *argv[2] = {"ECHO", buf};
    size_t al[2] = {4, lens[k]};
    memset(&e[k], 0, sizeof e[k]);
    sent += fcfs_redis_conn_command_argv(sc, 2, argv, al, 5, on_res, &e[k], NULL) == 0;
  }
  res_t a, b, d, f;
  SEND_ON(sc, &a, "PING");
  run_until(&a.done, 10000);
  int exact = 0;
  for (int k = 0; k < NECHO; k++) {
    exact += e[k].reply && e[k].reply->type == REDIS_REPLY_STRING && e[k].reply->len == lens[k] &&
             !memcmp(e[k].reply->str, buf, lens[k]);
    res_clear(&e[k]);
  }
  CHECK(sent == NECHO && exact == NECHO && is_str(a.reply, REDIS_REPLY_STATUS, "PONG"),
        "ECHO of binary arguments of 0 B to 1 MB (every length-digit boundary) byte-exact");
  res_clear(&a);
  free(buf);

  /* a key and a value with NUL, CR and LF; an empty key and value: read back
   * by another client (hiredis' own formatting) */
  const char key[] = "t:\0\r\nk\r", val[] = "\r\n\0\r\n";
  const char *av[3] = {"SET", key, val};
  size_t al[3] = {3, sizeof key - 1, sizeof val - 1};
  const char *ev[3] = {"SET", "", ""};
  size_t el[3] = {3, 0, 0};
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  fcfs_redis_conn_command_argv(sc, 3, av, al, 0, on_res, &a, NULL);
  fcfs_redis_conn_command_argv(sc, 3, ev, el, 0, on_res, &b, NULL);
  run_until(&b.done, 3000);
  redisReply *hv = helper_cmd("GET %b", key, sizeof key - 1);
  redisReply *he = helper_cmd("EXISTS %b", "", (size_t)0);
  redisReply *hl = helper_cmd("STRLEN %b", "", (size_t)0);
  CHECK(is_str(a.reply, REDIS_REPLY_STATUS, "OK") && hv && hv->type == REDIS_REPLY_STRING &&
            hv->len == sizeof val - 1 && !memcmp(hv->str, val, hv->len),
        "a key and value with NUL, CR, LF arrive byte for byte");
  CHECK(is_str(b.reply, REDIS_REPLY_STATUS, "OK") && he && he->integer == 1 && hl &&
            hl->type == REDIS_REPLY_INTEGER && hl->integer == 0,
        "an empty key with an empty value");
  if (hv) freeReplyObject(hv);
  if (he) freeReplyObject(he);
  if (hl) freeReplyObject(hl);
  res_clear(&a), res_clear(&b);
  SEND_ON(sc, &a, "DEL", "");
  run_until(&a.done, 3000);
  res_clear(&a);

  /* many arguments, across the digit boundaries of the count */
  static const int counts[] = {7, 8, 9, 97, 98, 99, 997, 998, 999, 4000};
  static char vals[4000][8];
  static const char *mv[4002];
  static size_t ml[4002];
  int good = 0;
  for (int i = 0; i < 4000; i++)
    snprintf(vals[i], sizeof vals[i], "v%d", i);
  for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    int n = counts[k];
    mv[0] = "RPUSH";
    ml[0] = 5;
    mv[1] = "t:many";
    ml[1] = 6;
    for (int i = 0; i < n; i++) {
      mv[i + 2] = vals[i];
      ml[i + 2] = strlen(vals[i]);
    }
    memset(&a, 0, sizeof a);
    SEND_ON(sc, &d, "DEL", "t:many");
    fcfs_redis_conn_command_argv(sc, n + 2, mv, ml, 0, on_res, &a, NULL);
    SEND_ON(sc, &f, "LINDEX", "t:many", "-1");
    run_until(&f.done, 3000);
    good += a.reply && a.reply->type == REDIS_REPLY_INTEGER && a.reply->integer == n &&
            is_str(f.reply, REDIS_REPLY_STRING, vals[n - 1]);
    res_clear(&a), res_clear(&d), res_clear(&f);
  }
  CHECK(good == (int)(sizeof counts / sizeof counts[0]),
        "RPUSH of 9 to 4002 arguments (every count-digit boundary): all pushed, in order");
  SEND_ON(sc, &a, "DEL", "t:many");
  run_until(&a.done, 3000);
  res_clear(&a);
}

#define NCONC 1000
static res_t conc[NCONC];

static void test_concurrency(fcfs_redis_t *r) {
  char nums[NCONC][12];
  int sent = 0;
  uint64_t req0 = stats.requests;
  for (int i = 0; i < NCONC; i++) {
    snprintf(nums[i], sizeof nums[i], "%d", i);
    sent += SEND(r, &conc[i], "ECHO", nums[i]) == 0;
  }
  CHECK(sent == NCONC, "1000 commands queued in one loop turn");
  CHECK(stats.in_use >= 1 && stats.in_use <= (uint64_t)conf.redis_connections,
        "shared connections busy while replies are pending");
  int all = 0;
  for (int spin = 0; spin < 500 && !all; spin++) {
    run_until(NULL, 10);
    all = 1;
    for (int i = 0; i < NCONC; i++)
      all &= conc[i].done == 1;
  }
  int good = 0;
  for (int i = 0; i < NCONC; i++) {
    good += is_str(conc[i].reply, REDIS_REPLY_STRING, nums[i]);
    res_clear(&conc[i]);
  }
  CHECK(all && good == NCONC, "every one of 1000 replies matched to its own command");
  CHECK(stats.requests - req0 == NCONC && stats.in_use == 0,
        "stats: requests counted, nothing in use");
  int echo = clients_matching("cmd=echo");
  CHECK(echo >= 1 && echo <= conf.redis_connections,
        "at most redis_connections connections carried them (CLIENT LIST)");
  int total = clients_matching("id=");
  CHECK(total == conf.redis_connections + 1, "server sees exactly the shared connections + 1");
  CHECK(stats.size == (uint64_t)conf.redis_connections && stats.up == 1, "stats: size and up");

  /* a pipeline: several commands on one connection execute in order */
  fcfs_redis_conn_t *c = fcfs_redis_shared(r);
  res_t a, b, d;
  SEND_ON(c, &a, "SET", "t:p", "1");
  SEND_ON(c, &b, "INCR", "t:p");
  SEND_ON(c, &d, "GET", "t:p");
  run_until(&d.done, 3000);
  CHECK(is_str(d.reply, REDIS_REPLY_STRING, "2") && a.seq < b.seq && b.seq < d.seq,
        "pipeline on fcfs_redis_shared() runs in order");
  res_clear(&a), res_clear(&b), res_clear(&d);
}

static void test_pinned(fcfs_redis_t *r) {
  fcfs_redis_conn_t *c = NULL, *c2 = NULL;
  res_t a, b, d, e, f;
  CHECK(fcfs_redis_pin(r, &c) == 0 && c, "pin a connection");
  SEND_ON(c, &a, "MULTI");
  SEND_ON(c, &b, "SET", "t:tx", "1");
  SEND_ON(c, &d, "INCR", "t:tx");
  SEND_ON(c, &e, "EXEC");
  run_until(&e.done, 3000);
  CHECK(is_str(a.reply, REDIS_REPLY_STATUS, "OK") && is_str(b.reply, REDIS_REPLY_STATUS, "QUEUED"),
        "MULTI/QUEUED on the pinned connection");
  CHECK(e.reply && e.reply->type == REDIS_REPLY_ARRAY && e.reply->elements == 2 &&
            is_str(e.reply->element[0], REDIS_REPLY_STATUS, "OK") &&
            e.reply->element[1]->type == REDIS_REPLY_INTEGER && e.reply->element[1]->integer == 2,
        "EXEC -> [OK, 2]");
  res_clear(&a), res_clear(&b), res_clear(&d), res_clear(&e);
  uint64_t size = stats.size;
  CHECK(size == (uint64_t)conf.redis_connections + 1 && stats.in_use == 1,
        "stats: pinned connection counted, in use");
  fcfs_redis_unpin(c);
  CHECK(fcfs_redis_pin(r, &c2) == 0 && c2 == c && stats.size == size,
        "a clean pinned connection is reused");

  /* WATCH really works: another client changes the key -> EXEC nil */
  SEND_ON(c2, &a, "WATCH", "t:w");
  run_until(&a.done, 3000);
  redisReply *h = helper_cmd("SET t:w other");
  if (h) freeReplyObject(h);
  SEND_ON(c2, &b, "MULTI");
  SEND_ON(c2, &d, "SET", "t:w", "mine");
  SEND_ON(c2, &e, "EXEC");
  run_until(&e.done, 3000);
  CHECK(e.reply && e.reply->type == REDIS_REPLY_NIL, "WATCH + concurrent change -> EXEC nil");
  res_clear(&a), res_clear(&b), res_clear(&d), res_clear(&e);
  fcfs_redis_unpin(c2);

  /* left inside MULTI -> closed, not reused */
  CHECK(fcfs_redis_pin(r, &c) == 0, "pin again");
  SEND_ON(c, &a, "MULTI");
  run_until(&a.done, 3000);
  fcfs_redis_unpin(c);
  CHECK(stats.size == size - 1, "a pinned connection left in MULTI is closed");
  res_clear(&a);

  /* the limit */
  fcfs_redis_conn_t *many[8];
  int n = 0;
  while (n < 8 && fcfs_redis_pin(r, &many[n]) == 0)
    n++;
  CHECK(n == conf.redis_pinned_max, "redis_pinned_max pinned connections, then busy");
  fcfs_redis_conn_t *x;
  CHECK(fcfs_redis_pin(r, &x) == FCFS_REDIS_EBUSY, "over the limit -> FCFS_REDIS_EBUSY");
  SEND_ON(many[0], &a, "PING");
  run_until(&a.done, 3000);
  CHECK(is_str(a.reply, REDIS_REPLY_STATUS, "PONG"), "a new pinned connection queues until up");
  res_clear(&a);
  for (int i = 0; i < n; i++)
    fcfs_redis_unpin(many[i]);

  /* pub/sub on a pinned connection: unsolicited replies via conn_read */
  CHECK(fcfs_redis_pin(r, &c) == 0, "pin for SUBSCRIBE");
  SEND_ON(c, &a, "SUBSCRIBE", "t:ch1", "t:ch2");
  run_until(&a.done, 3000);
  redisReply *ready = NULL;
  memset(&b, 0, sizeof b);
  fcfs_redis_conn_read(c, 2, on_res, &b, NULL, &ready);
  if (!ready) run_until(&b.done, 3000);
  redisReply *second = ready ? ready : b.reply;
  CHECK(a.reply && a.reply->type == REDIS_REPLY_ARRAY && second &&
            second->type == REDIS_REPLY_ARRAY && second->elements == 3 &&
            is_str(second->element[1], REDIS_REPLY_STRING, "t:ch2"),
        "SUBSCRIBE a b: second confirmation read with fcfs_redis_conn_read");
  fcfs_redis_reply_free(ready);
  res_clear(&a), res_clear(&b);
  memset(&f, 0, sizeof f);
  fcfs_redis_conn_read(c, 2, on_res, &f, NULL, &ready);
  h = helper_cmd("PUBLISH t:ch1 hello");
  if (h) freeReplyObject(h);
  run_until(&f.done, 3000);
  CHECK(f.reply && f.reply->type == REDIS_REPLY_ARRAY && f.reply->elements == 3 &&
            is_str(f.reply->element[2], REDIS_REPLY_STRING, "hello"),
        "a published message arrives on the subscribed pinned connection");
  res_clear(&f);
  size = stats.size;
  fcfs_redis_unpin(c);
  CHECK(stats.size == size - 1, "a subscribed connection is closed on release");

  const char *v1[] = {"blpop", "k", "0"},
             *v2[] = {"XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "s", "$"},
             *v3[] = {"XREAD", "STREAMS", "block", "0"}, *v4[] = {"GET", "multi"};
  size_t l1[] = {5, 1, 1}, l2[] = {5, 5, 1, 5, 1, 7, 1, 1}, l3[] = {5, 7, 5, 1}, l4[] = {3, 5};
  CHECK(fcfs_redis_needs_pin(3, v1, l1) && fcfs_redis_needs_pin(8, v2, l2) &&
            !fcfs_redis_needs_pin(4, v3, l3) && !fcfs_redis_needs_pin(2, v4, l4),
        "fcfs_redis_needs_pin: blocking and XREAD BLOCK yes, XREAD STREAMS block / GET no");
  /* every name of the list, in any case; neighbours that are not */
  static const char *pin[] = {
      "multi",      "Exec",       "discard",    "WATCH",       "unwatch",      "brpop",
      "BRPOPLPUSH", "blmove",     "blmpop",     "bzpopmin",    "bzpopmax",     "bzmpop",
      "subscribe",  "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
      "monitor",    "select",     "auth",       "hello",       "reset",        "quit",
      "wait",       "waitaof",    "readonly",   "readwrite",   "sync",         "psync"};
  static const char *nopin[] = {"get",   "SET", "incr", "hget",  "lrange", "evalsha", "ping",
                                "execx", "",    "mult", "authx", "client", "xadd",    "del"};
  int yes = 0, no = 0;
  for (size_t i = 0; i < sizeof pin / sizeof pin[0]; i++) {
    size_t l = strlen(pin[i]);
    yes += fcfs_redis_needs_pin(1, &pin[i], &l);
  }
  for (size_t i = 0; i < sizeof nopin / sizeof nopin[0]; i++) {
    size_t l = strlen(nopin[i]);
    no += !fcfs_redis_needs_pin(1, &nopin[i], &l);
  }
  const char *cs[] = {"client", "SetName", "x"};
  size_t cl[] = {6, 7, 1};
  CHECK(yes == (int)(sizeof pin / sizeof pin[0]) && no == (int)(sizeof nopin / sizeof nopin[0]) &&
            fcfs_redis_needs_pin(3, cs, cl),
        "fcfs_redis_needs_pin: every listed name in any case, CLIENT SETNAME; not GET, SET, ...");
}

static int kv_id = -1;

static void test_scripts(fcfs_redis_t *r) {
  /* local SHA1 == the server's, around the 55/56/64-byte padding edges */
  int same = 0, tried = 0;
  char src[200];
  for (int len = 40; len < 140; len++) {
    int m = snprintf(src, sizeof src, "return '%0*d'", len - 9, len);
    if (m != len) continue;
    int id = fcfs_redis_script(r, src, (size_t)len);
    redisReply *h = helper_cmd("SCRIPT LOAD %b", src, (size_t)len);
    tried++;
    same += id >= 0 && h && h->type == REDIS_REPLY_STRING &&
            !strcmp(h->str, fcfs_redis_script_sha(r, id));
    if (h) freeReplyObject(h);
  }
  CHECK(tried == 100 && same == tried, "script SHA1 equals SCRIPT LOAD's for 100 lengths");

  const char *s = "return {KEYS[1], ARGV[1], ARGV[2]}";
  char again[64];
  snprintf(again, sizeof again, "%s", s);
  kv_id = fcfs_redis_script(r, s, strlen(s));
  CHECK(kv_id >= 0 && fcfs_redis_script(r, again, strlen(again)) == kv_id,
        "register a script (no I/O); the same source from elsewhere -> the same entry");
  redisReply *h = helper_cmd("SCRIPT FLUSH");
  if (h) freeReplyObject(h);
  const char *v[] = {"t:key", "a1", "a2"};
  size_t vl[] = {5, 2, 2};
  res_t a, b;
  memset(&a, 0, sizeof a);
  CHECK(fcfs_redis_run(r, NULL, kv_id, 0, 1, 3, v, vl, 0, on_res, &a, NULL) == 0, "run queued");
  run_until(&a.done, 3000);
  CHECK(a.reply && a.reply->type == REDIS_REPLY_ARRAY && a.reply->elements == 3 &&
            is_str(a.reply->element[0], REDIS_REPLY_STRING, "t:key") &&
            is_str(a.reply->element[2], REDIS_REPLY_STRING, "a2"),
        "run after SCRIPT FLUSH: NOSCRIPT reloaded transparently");
  res_clear(&a);

  h = helper_cmd("SCRIPT FLUSH");
  if (h) freeReplyObject(h);
  int ok = 0;
  for (int i = 0; i < 50; i++) {
    memset(&conc[i], 0, sizeof conc[i]);
    fcfs_redis_run(r, NULL, kv_id, 0, 1, 3, v, vl, 0, on_res, &conc[i], NULL);
  }
  for (int spin = 0; spin < 300; spin++) {
    int all = 1;
    for (int i = 0; i < 50; i++)
      all &= conc[i].done;
    if (all) break;
    run_until(NULL, 10);
  }
  for (int i = 0; i < 50; i++) {
    ok += conc[i].done == 1 && conc[i].reply && conc[i].reply->type == REDIS_REPLY_ARRAY;
    res_clear(&conc[i]);
  }
  CHECK(ok == 50, "50 concurrent runs after SCRIPT FLUSH all succeed");

  const char *bad = "return +";
  int bad_id = fcfs_redis_script(r, bad, strlen(bad));
  memset(&b, 0, sizeof b);
  fcfs_redis_run(r, NULL, bad_id, 0, 0, 0, NULL, NULL, 0, on_res, &b, NULL);
  run_until(&b.done, 3000);
  CHECK(b.reply && b.reply->type == REDIS_REPLY_ERROR && strncmp(b.reply->str, "NOSCRIPT", 8),
        "a script that does not compile -> the SCRIPT LOAD error, not NOSCRIPT");
  res_clear(&b);
  CHECK(fcfs_redis_run(r, NULL, 9999, 0, 0, 0, NULL, NULL, 0, on_res, &b, NULL) ==
            FCFS_REDIS_ENOSCRIPT,
        "run of an unknown id -> FCFS_REDIS_ENOSCRIPT");

  /* on a pinned connection, after SCRIPT FLUSH: reloaded there */
  h = helper_cmd("SCRIPT FLUSH");
  if (h) freeReplyObject(h);
  fcfs_redis_conn_t *c = NULL;
  memset(&a, 0, sizeof a);
  if (fcfs_redis_pin(r, &c) == 0) {
    fcfs_redis_run(r, c, kv_id, 0, 1, 3, v, vl, 0, on_res, &a, NULL);
    run_until(&a.done, 3000);
    fcfs_redis_unpin(c);
  }
  CHECK(a.reply && a.reply->type == REDIS_REPLY_ARRAY && a.reply->elements == 3,
        "run on a pinned connection, NOSCRIPT reloaded there");
  res_clear(&a);
}

static void test_timeout_cancel(fcfs_redis_t *r) {
  res_t a, b, d;
  fcfs_redis_conn_t *c;
  fcfs_redis_pin(r, &c);
  uint64_t to0 = stats.timeouts;
  double t0 = now_s();
  SEND_T(NULL, c, &a, 0.2, NULL, "BLPOP", "t:nothing", "3");
  run_until(&a.done, 3000);
  double el = now_s() - t0;
  CHECK(a.err == fcfs_redis_etimeout && !a.reply && el < 2.0,
        "pinned BLPOP past its 0.2 s timeout -> \"timeout\"");
  CHECK(stats.timeouts == to0 + 1, "stats: timeout counted");
  uint64_t size = stats.size, err0 = stats.errors;
  fcfs_redis_unpin(c);
  CHECK(stats.size == size - 1, "a pinned connection with a reply outstanding is closed");

  /* shared: slow server (CLIENT PAUSE) -> timeout, slot kept, later replies still matched */
  SEND(r, &d, "SET", "t:late", "late-value");
  run_until(&d.done, 3000);
  res_clear(&d);
  redisReply *h = helper_cmd("CLIENT PAUSE 500");
  int paused = h && h->type == REDIS_REPLY_STATUS;
  if (h) freeReplyObject(h);
  SEND_T(r, NULL, &a, 0.1, NULL, "GET", "t:k");
  run_until(&a.done, 3000);
  CHECK(paused && a.err == fcfs_redis_etimeout, "shared GET during CLIENT PAUSE -> \"timeout\"");
  res_t more[4];
  for (int i = 0; i < 4; i++)
    SEND_T(r, NULL, &more[i], 3, NULL, "GET", "t:late");
  run_until(&more[3].done, 3000);
  int good = 0;
  for (int i = 0; i < 4; i++) {
    good += is_str(more[i].reply, REDIS_REPLY_STRING, "late-value");
    res_clear(&more[i]);
  }
  CHECK(good == 4 && a.done == 1, "after the pause, replies still match (timed-out one dropped)");
  CHECK(stats.size == size - 1 && stats.errors == err0,
        "a slow reply did not close the connection");

  /* cancel: the reply is read and dropped, the callback never runs */
  void *handle = NULL;
  SEND_T(r, NULL, &a, 0, &handle, "GET", "t:late");
  fcfs_redis_cancel(handle);
  SEND(r, &b, "PING");
  run_until(&b.done, 3000);
  run_until(NULL, 50);
  CHECK(a.done == 0 && is_str(b.reply, REDIS_REPLY_STATUS, "PONG"),
        "cancelled command: no callback, next reply matched");
  res_clear(&b);
}

static void test_kill_restart(fcfs_redis_t *r) {
  const char *names[] = {"server killed: pending shared and pinned commands get \"closed\"",
                         "then calls fail fast with FCFS_REDIS_EUNAVAILABLE",
                         "and still while reconnecting with backoff",
                         "stats: up = 0, size = 0",
                         "server restarted: calls succeed again within 2 s",
                         "a script works on the fresh server",
                         "pinning works again"};
  fcfs_redis_conn_t *c;
  res_t a, b;
  fcfs_redis_pin(r, &c);
  SEND_T(NULL, c, &a, 10, NULL, "BLPOP", "t:nothing", "5");
  redisReply *h = helper_cmd("CLIENT PAUSE 3000");
  if (h) freeReplyObject(h);
  SEND_T(r, NULL, &b, 10, NULL, "GET", "t:k");
  run_until(NULL, 100);
  kill_server(SIGKILL);
  double t0 = now_s();
  run_until(&a.done, 3000);
  run_until(&b.done, 3000);
  CHECK(a.err == fcfs_redis_eclosed && b.err == fcfs_redis_eclosed && now_s() - t0 < 1.0, names[0]);
  fcfs_redis_unpin(c);
  fcfs_redis_conn_t *x;
  CHECK(SEND(r, &a, "PING") == FCFS_REDIS_EUNAVAILABLE &&
            fcfs_redis_pin(r, &x) == FCFS_REDIS_EUNAVAILABLE,
        names[1]);
  run_until(NULL, 400);
  CHECK(SEND(r, &a, "PING") == FCFS_REDIS_EUNAVAILABLE, names[2]);
  CHECK(stats.up == 0 && stats.size == 0 && stats.errors > 0, names[3]);

  if (start_server() < 0) {
    CHECK(0, "restart redis-server");
    return;
  }
  t0 = now_s();
  int ok = 0;
  while (!ok && now_s() - t0 < 5) {
    if (SEND(r, &a, "PING") == 0) {
      run_until(&a.done, 1000);
      ok = is_str(a.reply, REDIS_REPLY_STATUS, "PONG");
      res_clear(&a);
    } else {
      run_until(NULL, 20);
    }
  }
  CHECK(ok && now_s() - t0 < 2.0, names[4]);
  const char *v[] = {"k", "1", "2"};
  size_t vl[] = {1, 1, 1};
  memset(&a, 0, sizeof a);
  fcfs_redis_run(r, NULL, kv_id, 0, 1, 3, v, vl, 0, on_res, &a, NULL);
  run_until(&a.done, 3000);
  CHECK(a.reply && a.reply->type == REDIS_REPLY_ARRAY && a.reply->elements == 3, names[5]);
  res_clear(&a);
  CHECK(fcfs_redis_pin(r, &c) == 0 && SEND_ON(c, &a, "PING") == 0 && run_until(&a.done, 3000) &&
            is_str(a.reply, REDIS_REPLY_STATUS, "PONG"),
        names[6]);
  res_clear(&a);
  fcfs_redis_unpin(c);
}

static void on_closed(void *arg) {
  *(int *)arg = 1;
}

static void pool_close(fcfs_redis_t *p) {
  int closed = 0;
  fcfs_redis_close(p, on_closed, &closed);
  run_until(&closed, 3000);
}

/* A pool of conf's two shared connections, both up (or 3 s gone by). */
static fcfs_redis_t *pool_up(fcfs_pool_stats_t *fs) {
  fcfs_redis_t *p = fcfs_redis_new(&loop, &conf, fs);
  for (int spin = 0; spin < 300 && fs->size < 2; spin++)
    run_until(NULL, 10);
  return p;
}

/* Which shared connection takes a command (fcfs_redis_shared()): the first
 * one up while it owes fewer than FCFS_REDIS_FILL replies, so the commands of
 * a loop turn at low load leave in one write on one connection; past that,
 * the one owing the fewest; a connection that is down is skipped. CLIENT ID
 * answers the id of the connection it came on. */
#define NFILL (FCFS_REDIS_FILL + 8)

static long long client_id_of(const res_t *r) {
  return r->reply && r->reply->type == REDIS_REPLY_INTEGER ? r->reply->integer : -1;
}

/* n CLIENT ID in one loop turn; every one answered; how many came from id. */
static int client_ids(fcfs_redis_t *p, int n, long long *first) {
  int sent = 0, done = 0, same = 0;
  for (int i = 0; i < n; i++)
    sent += SEND(p, &conc[i], "CLIENT", "ID") == 0;
  for (int spin = 0; spin < 300 && done < sent; spin++) {
    run_until(NULL, 10);
    done = 0;
    for (int i = 0; i < n; i++)
      done += conc[i].done;
  }
  *first = client_id_of(&conc[0]);
  for (int i = 0; i < n; i++)
    same += client_id_of(&conc[i]) == *first;
  return sent == n && done == n ? same : -1;
}

static void test_fill(void) {
  fcfs_pool_stats_t fs = {0};
  fcfs_redis_t *p = pool_up(&fs);
  long long a = -1, b = -1;
  int same = client_ids(p, 16, &a);
  CHECK(fs.size == 2 && same == 16,
        "low load: the 16 commands of one loop turn all go on one shared connection");
  for (int i = 0; i < 16; i++)
    res_clear(&conc[i]);

  long long a2 = -1;
  same = client_ids(p, NFILL, &a2);
  b = client_id_of(&conc[NFILL - 1]);
  int rest = 0;
  for (int i = FCFS_REDIS_FILL; i < NFILL; i++)
    rest += client_id_of(&conc[i]) == b;
  CHECK(a2 == a && same == FCFS_REDIS_FILL && b != a && b > 0 && rest == NFILL - FCFS_REDIS_FILL,
        "the first connection takes FCFS_REDIS_FILL commands, the next ones spill to the second");
  for (int i = 0; i < NFILL; i++)
    res_clear(&conc[i]);

  fcfs_redis_conn_t *first = fcfs_redis_shared(p);
  redisReply *h = helper_cmd("CLIENT KILL ID %lld", a);
  int killed = h && h->type == REDIS_REPLY_INTEGER && h->integer == 1;
  if (h) freeReplyObject(h);
  /* stop as soon as the pool sees the loss, before its reconnect (50 ms on) */
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, 3000, 0);
  while (fcfs_redis_shared(p) == first && !guard_fired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  int down = fs.size == 1;
  long long c = -1;
  same = client_ids(p, 16, &c);
  CHECK(killed && down && same == 16 && c == b,
        "the first connection down: every command goes on the second");
  for (int i = 0; i < 16; i++)
    res_clear(&conc[i]);
  pool_close(p);
}

/* Commands queued by I/O callbacks leave one loop iteration later, after a
 * poll that does not block, so those of requests read in the next iteration
 * join their write: a pipe kept readable makes a uv_poll fire once per
 * iteration, each firing queues a command. */
typedef struct {
  fcfs_redis_t *pool;
  int fired, last;
  res_t res[2];
} batch_t;

static void on_batch_readable(uv_poll_t *h, int status, int events) {
  batch_t *b = h->data;
  (void)status;
  (void)events;
  SEND(b->pool, &b->res[b->fired], "PING");
  if (++b->fired == b->last) uv_poll_stop(h);
}

static void on_batch_poll_closed(uv_handle_t *h) {
  *(int *)h->data = 1;
}

static void batch_poll_close(uv_poll_t *h) {
  int closed = 0;
  h->data = &closed;
  uv_close((uv_handle_t *)h, on_batch_poll_closed);
  run_until(&closed, 1000);
}

static int batch_run(fcfs_redis_t *p, const fcfs_pool_stats_t *fs, int fd, int n,
                     uint64_t *writes_after) {
  batch_t b = {.pool = p, .last = n};
  uv_poll_t poll;
  uv_poll_init(&loop, &poll, fd);
  poll.data = &b;
  uv_poll_start(&poll, UV_READABLE, on_batch_readable);
  uint64_t w0 = fs->writes;
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, 2000, 0);
  while (b.fired < n && !guard_fired)
    uv_run(&loop, UV_RUN_ONCE);
  writes_after[0] = fs->writes - w0; /* after the iteration of the last firing */
  double t0 = now_s();
  uv_run(&loop, UV_RUN_ONCE);
  writes_after[1] = fs->writes - w0; /* after one more iteration */
  int quick = now_s() - t0 < 1.0;
  uv_timer_stop(&guard);
  int done = 0;
  for (int i = 0; i < n; i++) {
    run_until(&b.res[i].done, 2000);
    done += is_str(b.res[i].reply, REDIS_REPLY_STATUS, "PONG");
    res_clear(&b.res[i]);
  }
  batch_poll_close(&poll);
  return done == n && quick;
}

/* The pool closed by the I/O callback that queued a command, before the
 * deferred write: the command gets "closed" and the pool finishes closing. */
typedef struct {
  fcfs_redis_t *pool;
  res_t res;
  int closed;
} close_deferred_t;

static void on_readable_close(uv_poll_t *h, int status, int events) {
  close_deferred_t *d = h->data;
  (void)status;
  (void)events;
  uv_poll_stop(h);
  SEND(d->pool, &d->res, "PING");
  fcfs_redis_close(d->pool, on_closed, &d->closed);
}

static void test_batching(void) {
  fcfs_pool_stats_t fs = {0};
  fcfs_redis_t *p = pool_up(&fs);
  int fds[2];
  if (pipe(fds) < 0 || write(fds[1], "x", 1) != 1) {
    CHECK(0, "a pipe for the batching test");
    return;
  }
  uint64_t w[2];
  int ok = batch_run(p, &fs, fds[0], 1, w);
  CHECK(ok && w[0] == 0 && w[1] == 1,
        "a command queued by an I/O callback is written after one more iteration, which does "
        "not block");
  ok = batch_run(p, &fs, fds[0], 2, w);
  CHECK(ok && w[0] == 1 && w[1] == 1,
        "commands queued by I/O callbacks of two iterations in a row leave in one write");
  res_t t;
  uint64_t w0 = fs.writes;
  SEND(p, &t, "PING");
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(fs.writes == w0 + 1,
        "a command queued outside the loop's callbacks leaves before its poll");
  run_until(&t.done, 2000);
  res_clear(&t);
  pool_close(p);

  fcfs_pool_stats_t cs = {0};
  close_deferred_t d = {.pool = pool_up(&cs)};
  uv_poll_t poll;
  uv_poll_init(&loop, &poll, fds[0]);
  poll.data = &d;
  uv_poll_start(&poll, UV_READABLE, on_readable_close);
  run_until(&d.closed, 2000);
  CHECK(d.closed && d.res.done == 1 && d.res.err == fcfs_redis_eclosed && cs.writes == 0,
        "a pool closed before its deferred write: the command gets \"closed\", nothing is "
        "written, the pool closes");
  res_clear(&d.res);
  batch_poll_close(&poll);
  close(fds[0]);
  close(fds[1]);
}

/* redis_queue_max: a shared connection owing that many replies says "busy". */
static void test_queue_max(void) {
  fcfs_conf_t qc = conf;
  qc.redis_queue_max = 50;
  fcfs_redis_t *p = fcfs_redis_new(&loop, &qc, NULL);
  res_t a;
  SEND(p, &a, "PING");
  run_until(&a.done, 3000);
  res_clear(&a);
  redisReply *h = helper_cmd("CLIENT PAUSE 300");
  if (h) freeReplyObject(h);
  int ok = 0, busy = 0;
  for (int i = 0; i < 150; i++) {
    int rc = SEND(p, &conc[i], "ECHO", "queued");
    ok += rc == 0;
    busy += rc == FCFS_REDIS_EBUSY;
  }
  CHECK(ok == 2 * 50 && busy == 50,
        "2 shared connections x redis_queue_max 50: calls past 100 owed replies -> busy");
  int good = 0;
  for (int spin = 0; spin < 300 && good < ok; spin++) {
    run_until(NULL, 10);
    good = 0;
    for (int i = 0; i < 150; i++)
      good += is_str(conc[i].reply, REDIS_REPLY_STRING, "queued");
  }
  for (int i = 0; i < 150; i++)
    res_clear(&conc[i]);
  CHECK(good == ok && SEND(p, &a, "PING") == 0 && run_until(&a.done, 3000),
        "the accepted ones are answered after the pause, then calls are accepted again");
  res_clear(&a);
  pool_close(p);
}

/* A hiredis helper connection that authenticates first. */
static redisReply *auth_cmd(const char *pw, const char *cmd) {
  redisContext *hc = helper_connect(addr);
  redisReply *rep = NULL;
  if (hc && !hc->err) {
    rep = redisCommand(hc, "AUTH %s", pw);
    if (rep) freeReplyObject(rep);
    rep = redisCommand(hc, cmd);
  }
  if (hc) redisFree(hc);
  return rep;
}

/* redis_password and redis_db: AUTH and SELECT before anything else. */
static void test_auth_select(void) {
  const char *pw = "fcfs-test-secret";
  redisReply *h = helper_cmd("CONFIG SET requirepass %s", pw);
  int set = h && h->type == REDIS_REPLY_STATUS;
  if (h) freeReplyObject(h);
  fcfs_conf_t ac = conf;
  ac.redis_password = (char *)pw;
  ac.redis_db = 3;
  fcfs_redis_t *p = fcfs_redis_new(&loop, &ac, NULL);
  res_t a, b;
  SEND(p, &a, "SET", "t:db3", "in-three");
  run_until(&a.done, 3000);
  CHECK(set && is_str(a.reply, REDIS_REPLY_STATUS, "OK"),
        "redis_password: the first call works on a server that requires a password");
  res_clear(&a);
  redisReply *d0 = auth_cmd(pw, "EXISTS t:db3"); /* a new connection is on db 0 */
  CHECK(d0 && d0->type == REDIS_REPLY_INTEGER && d0->integer == 0,
        "redis_db 3: the key is not in db 0");
  if (d0) freeReplyObject(d0);
  fcfs_redis_conn_t *c = NULL;
  memset(&b, 0, sizeof b);
  if (fcfs_redis_pin(p, &c) == 0) {
    SEND_ON(c, &b, "GET", "t:db3");
    run_until(&b.done, 3000);
    fcfs_redis_unpin(c);
  }
  CHECK(is_str(b.reply, REDIS_REPLY_STRING, "in-three"),
        "a pinned connection is authenticated and on db 3 too");
  res_clear(&b);
  pool_close(p);

  fcfs_pool_stats_t ws = {0};
  ac.redis_password = "wrong";
  p = fcfs_redis_new(&loop, &ac, &ws);
  int rc = SEND(p, &a, "PING");
  if (rc == 0) run_until(&a.done, 3000);
  CHECK((rc != 0 || (a.err && !a.reply)) && ws.errors > 0,
        "a wrong password: the call fails, the connection is refused and counted");
  res_clear(&a);
  pool_close(p);
  h = auth_cmd(pw, "CONFIG SET requirepass \"\"");
  if (h) freeReplyObject(h);
}

static void test_tcp(void) {
  fcfs_conf_t tc = conf;
  tc.redis = tcp_addr;
  fcfs_redis_t *t = fcfs_redis_new(&loop, &tc, NULL);
  res_t a, b;
  CHECK(t && SEND(t, &a, "ECHO", "over tcp") == 0 && run_until(&a.done, 3000) &&
            is_str(a.reply, REDIS_REPLY_STRING, "over tcp"),
        "TCP connection");
  res_clear(&a);
  if (t) SEND(t, &b, "EVAL", "return {'a', 'b', 'c'}", "0");
  run_until(&b.done, 3000);
  int closed = 0;
  if (t) fcfs_redis_close(t, on_closed, &closed);
  run_until(&closed, 3000);
  CHECK(closed && b.reply && b.reply->type == REDIS_REPLY_ARRAY && b.reply->elements == 3 &&
            is_str(b.reply->element[0], REDIS_REPLY_STRING, "a"),
        "a reply kept past the close of its pool stays readable (freed after it: ASan)");
  res_clear(&b);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &guard);
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(sockpath, sizeof sockpath, "%s/redis.sock", tmpdir);
  snprintf(logpath, sizeof logpath, "%s/redis.log", tmpdir);
  snprintf(unix_addr, sizeof unix_addr, "unix:%s", sockpath);
  tcp_port = free_port();
  snprintf(tcp_addr, sizeof tcp_addr, "127.0.0.1:%d", tcp_port);
  addr = unix_addr;
  if (start_server() < 0) {
    printf("Bail out! cannot start redis-server\n");
    kill_server(SIGKILL);
    return 1;
  }

  conf.redis = (char *)addr;
  conf.redis_connections = 2;
  conf.redis_pinned_max = 4;
  conf.redis_connect_timeout = 1.0;
  conf.redis_timeout = 1.0;

  fcfs_conf_t badconf = conf;
  badconf.redis = "no-port-here";
  CHECK(fcfs_redis_new(&loop, &badconf, NULL) == NULL, "a bad address is refused");

  fcfs_redis_t *r = fcfs_redis_new(&loop, &conf, &stats);
  CHECK(r != NULL, "pool created");
  if (!r) return 1;
  res_t first;
  CHECK(SEND(r, &first, "PING") == 0, "a call before the first connect completes is queued");
  run_until(&first.done, 3000);
  CHECK(is_str(first.reply, REDIS_REPLY_STATUS, "PONG"), "and answered once connected");
  res_clear(&first);

  test_basics(r);
  test_encoding(r);
  test_concurrency(r);
  test_pinned(r);
  test_scripts(r);
  test_timeout_cancel(r);
  test_kill_restart(r);
  test_tcp();
  test_fill();
  test_batching();
  test_queue_max();
  test_auth_select();

  /* closing: pending commands get "closed", a still-pinned connection is freed */
  res_t a, b;
  fcfs_redis_conn_t *c = NULL;
  fcfs_redis_pin(r, &c);
  if (c) SEND_ON(c, &b, "PING");
  SEND(r, &a, "PING");
  int closed = 0;
  fcfs_redis_close(r, on_closed, &closed);
  run_until(&closed, 3000);
  CHECK(closed && a.err == fcfs_redis_eclosed && (!c || b.err == fcfs_redis_eclosed),
        "close: pending commands get \"closed\", done called");
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "every handle closed");

  kill_server(SIGTERM);
  unlink(sockpath);
  unlink(logpath);
  rmdir(tmpdir);
  printf("1..%d\n", ntests);
  return nfail ? 1 : 0;
}
