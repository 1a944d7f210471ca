/* flash_client.c -- the load client of bench/flash_sale.sh (built by that script with cc; not part
 * of the fcfs build).
 *
 *   flash_client HOST PORT PRODUCT_ID TOKENS_FILE START_EPOCH UNITS SECONDS [ABANDON_PCT [PAID_LOG]]
 *
 * One keep-alive connection per token (one member each; TOKENS_FILE holds one access token a line),
 * all connected before START_EPOCH (wall clock), one epoll loop. At START_EPOCH every connection
 * sends POST /api/flash/products/ID/entry. A 201 either abandons the hold (ABANDON_PCT percent of
 * winners, default 20: they never pay) or pays it at once (POST /api/flash/orders/OID/pay); a 402
 * or 410 on pay enters again; 409 OUT_OF_STOCK, 403 and 503 retry the entry after 100 ms (+
 * jitter); 409 ALREADY_PURCHASED and a paid order end the connection's work. It stops when UNITS
 * orders are paid, or after SECONDS. A progress line each second (stderr), then one line RESULT
 * attempts=N entries=N pays=N rps=R won=N abandoned=N paid=N pay_failed=N expired=N sold_out=N
 * not_open=N unavailable=N errors=N entry_p50_ms= entry_p99_ms= pay_p50_ms= pay_p99_ms= sellout_s=
 * sellout_s is the time from START_EPOCH to the last successful payment. With PAID_LOG, every pay
 * answered 200 appends "FLASH_ORDER_ID ORDER_ID" to that file, a line at a time (bench/chaos.sh
 * checks them in MySQL). A write to a connection the server closed counts as an error (SIGPIPE is
 * ignored): a server killed mid-sale does not kill the client.
 * Memory: the connection array and the latency arrays, freed at exit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, WAITING, DONE };
enum { ENTRY, PAY };

typedef struct {
  int fd;
  int state, kind;
  double next_at, sent_at;
  char token[512];
  char oid[32];
  size_t len;
  char buf[2048];
} conn_t;

typedef struct {
  double *v;
  size_t n, cap;
} lat_t;

static struct sockaddr_in addr;
static const char *product;
static int ep;
static long attempts, entries, pays, won, abandoned, paid, pay_failed, expired, sold_out, not_open,
    unavailable, errors;
static double last_paid_at;
static lat_t lat_entry, lat_pay;
static FILE *paid_log;

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void lat_add(lat_t *l, double v) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4096;
    l->v = realloc(l->v, l->cap * sizeof *l->v);
    if (!l->v) abort();
  }
  l->v[l->n++] = v;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(lat_t *l, double p) {
  if (!l->n) return 0;
  qsort(l->v, l->n, sizeof *l->v, cmp);
  size_t i = (size_t)(p * (double)(l->n - 1));
  return l->v[i] * 1000;
}

static int open_conn(conn_t *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) return -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  c->state = CONNECTING;
  c->len = 0;
  return 0;
}

static void drop(conn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

static void send_req(conn_t *c, double now) {
  char req[1024];
  int n;
  if (c->kind == ENTRY)
    n = snprintf(
        req, sizeof req,
        "POST /api/flash/products/%s/entry HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer %s\r\n"
        "Content-Length: 0\r\n\r\n",
        product, c->token);
  else
    n = snprintf(req, sizeof req,
                 "POST /api/flash/orders/%s/pay HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer %s\r\n"
                 "Content-Length: 0\r\n\r\n",
                 c->oid, c->token);
  if (c->fd < 0 && open_conn(c) < 0) {
    errors++;
    c->next_at = now + 0.2;
    c->state = IDLE;
    return;
  }
  if (write(c->fd, req, (size_t)n) != n) { /* a fresh connection may still be connecting: retry */
    if (c->state == CONNECTING) {
      c->next_at = now + 0.01;
      return;
    }
    errors++;
    drop(c);
    c->next_at = now + 0.2;
    c->state = IDLE;
    return;
  }
  attempts++;
  if (c->kind == ENTRY)
    entries++;
  else
    pays++;
  c->sent_at = now;
  c->state = WAITING;
  c->len = 0;
}

static void later(conn_t *c, double now, double delay) {
  c->state = IDLE;
  c->kind = ENTRY;
  c->next_at = now + delay + (double)(rand() % 50) / 1000.0;
}

static void answered(conn_t *c, int status, const char *body, double now, int abandon_pct) {
  lat_add(c->kind == ENTRY ? &lat_entry : &lat_pay, now - c->sent_at);
  if (c->kind == ENTRY) {
    if (status == 201) {
      won++;
      const char *p = strstr(body, "\"order_id\":");
      if (!p) {
        errors++;
        c->state = DONE;
        return;
      }
      snprintf(c->oid, sizeof c->oid, "%.*s", (int)strspn(p + 11, "0123456789"), p + 11);
      if (rand() % 100 < abandon_pct) {
        abandoned++;
        c->state = DONE;
        return;
      }
      c->kind = PAY;
      send_req(c, now);
    } else if (status == 409 && strstr(body, "ALREADY_PURCHASED")) {
      c->state = DONE;
    } else if (status == 409 || status == 403 || status == 503) {
      if (status == 409)
        sold_out++;
      else if (status == 403)
        not_open++;
      else
        unavailable++;
      later(c, now, 0.1);
    } else if (status == 410) {
      c->state = DONE;
    } else {
      errors++;
      later(c, now, 0.2);
    }
  } else {
    if (status == 200) {
      paid++;
      const char *p = strstr(body, "\"order_id\":");
      if (paid_log)
        fprintf(paid_log, "%s %.*s\n", c->oid, p ? (int)strspn(p + 11, "0123456789") : 0,
                p ? p + 11 : "");
      last_paid_at = now;
      c->state = DONE;
    } else if (status == 402 || status == 410) {
      if (status == 402)
        pay_failed++;
      else
        expired++;
      c->kind = ENTRY;
      send_req(c, now);
    } else {
      if (status != 409) errors++;
      c->state = DONE;
    }
  }
}

/* One readable connection: read, and handle every complete response. */
static void on_read(conn_t *c, double now, int abandon_pct) {
  for (;;) {
    ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      drop(c);
      if (c->state == WAITING) {
        errors++;
        later(c, now, 0.05);
      }
      return;
    }
    if (r < 0) return;
    c->len += (size_t)r;
    c->buf[c->len] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) continue;
    const char *cl = strcasestr(c->buf, "content-length:");
    size_t body_len = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
    size_t total = (size_t)(end + 4 - c->buf) + body_len;
    if (c->len < total) continue;
    int status = atoi(c->buf + 9);
    char body[1024];
    snprintf(body, sizeof body, "%.*s", (int)body_len, end + 4);
    c->len = 0;
    if (c->state == WAITING) answered(c, status, body, now, abandon_pct);
    return;
  }
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr,
            "usage: flash_client HOST PORT PRODUCT_ID TOKENS_FILE START_EPOCH UNITS SECONDS "
            "[ABANDON_PCT [PAID_LOG]]\n");
    return 2;
  }
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[2]));
  inet_pton(AF_INET, argv[1], &addr.sin_addr);
  product = argv[3];
  double start = atof(argv[5]);
  long units = atol(argv[6]);
  double seconds = atof(argv[7]);
  int abandon_pct = argc > 8 ? atoi(argv[8]) : 20;
  if (argc > 9 && !(paid_log = fopen(argv[9], "w"))) {
    perror("paid log");
    return 2;
  }
  if (paid_log) setvbuf(paid_log, NULL, _IOLBF, 0); /* each pay on disk as it is answered */
  signal(SIGPIPE, SIG_IGN); /* a write to a connection the server reset fails with EPIPE, counted */
  srand((unsigned)getpid());

  FILE *f = fopen(argv[4], "r");
  if (!f) {
    perror("tokens");
    return 2;
  }
  size_t n = 0, cap = 1024;
  conn_t *conns = calloc(cap, sizeof *conns);
  char line[500];
  while (conns && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!*line) continue;
    if (n == cap) {
      cap *= 2;
      conns = realloc(conns, cap * sizeof *conns);
    }
    memset(&conns[n], 0, sizeof conns[n]);
    snprintf(conns[n].token, sizeof conns[n].token, "%s", line);
    conns[n].fd = -1;
    n++;
  }
  fclose(f);
  if (!conns || !n) return 2;
  ep = epoll_create1(0);

  /* connect everyone before the opening, a few hundred at a time */
  size_t opened = 0;
  struct epoll_event evs[1024];
  while (opened < n) {
    for (size_t k = 0; k < 256 && opened < n; k++, opened++)
      if (open_conn(&conns[opened]) < 0) errors++;
    epoll_wait(ep, evs, 1024, 5);
  }
  int connected = 0;
  while (wall() < start - 0.05) {
    int k = epoll_wait(ep, evs, 1024, 10);
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->state == CONNECTING && (evs[i].events & EPOLLOUT)) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = IDLE;
        connected++;
      }
    }
  }
  fprintf(stderr, "flash_client: %d of %zu connections open before the opening\n", connected, n);
  while (wall() < start) {
  }
  for (size_t i = 0; i < n; i++) {
    conns[i].kind = ENTRY;
    conns[i].state = IDLE;
    conns[i].next_at = start;
  }

  double t0 = wall(), next_report = t0 + 1;
  long last_attempts = 0;
  while (paid < units && wall() < t0 + seconds) {
    int k = epoll_wait(ep, evs, 1024, 2);
    double now = wall();
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      if (c->state == CONNECTING) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = IDLE;
        if (!c->next_at) c->next_at = now;
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_read(c, now, abandon_pct);
    }
    for (size_t i = 0; i < n; i++)
      if (conns[i].state == IDLE && conns[i].next_at <= now) send_req(&conns[i], now);
    if (now >= next_report) {
      fprintf(stderr,
              "t=%4.0fs req/s=%ld won=%ld paid=%ld abandoned=%ld pay_failed=%ld sold_out=%ld "
              "not_open=%ld "
              "unavailable=%ld errors=%ld\n",
              now - t0, attempts - last_attempts, won, paid, abandoned, pay_failed, sold_out,
              not_open, unavailable, errors);
      last_attempts = attempts;
      next_report += 1;
    }
  }
  double took = wall() - t0;
  printf("RESULT conns=%zu connected=%d attempts=%ld entries=%ld pays=%ld rps=%.0f won=%ld "
         "abandoned=%ld paid=%ld "
         "pay_failed=%ld expired=%ld sold_out=%ld not_open=%ld unavailable=%ld errors=%ld "
         "entry_p50_ms=%.2f entry_p99_ms=%.2f "
         "pay_p50_ms=%.2f pay_p99_ms=%.2f sellout_s=%.3f\n",
         n, connected, attempts, entries, pays, (double)attempts / took, won, abandoned, paid,
         pay_failed, expired, sold_out, not_open, unavailable, errors, pct(&lat_entry, 0.5),
         pct(&lat_entry, 0.99), pct(&lat_pay, 0.5), pct(&lat_pay, 0.99),
         last_paid_at > 0 ? last_paid_at - start : -1.0);
  for (size_t i = 0; i < n; i++)
    drop(&conns[i]);
  free(conns);
  if (paid_log) fclose(paid_log);
  free(lat_entry.v);
  free(lat_pay.v);
  return 0;
}
