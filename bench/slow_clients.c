/* slow_clients.c -- the hostile client half of bench/slow_clients.sh and of
 * spec/blackbox/slow_clients_spec.lua (built by them with cc; not part of the
 * fcfs build).
 *
 *   slow_clients slow HOST PORT CONNS SECONDS [INTERVAL_MS]
 *   slow_clients pipeline HOST PORT CONNS SECONDS PATH
 *
 * slow: opens CONNS connections (non-blocking, one epoll loop) and on each
 * sends the headers of a GET one byte every INTERVAL_MS (default 1000) --
 * headers that never end -- for at most SECONDS, reading whatever the server
 * answers. A connection is "closed" when the server ends it (EOF or reset);
 * "answered_408" when what it read starts with "HTTP/1.1 408". Prints
 *   RESULT mode=slow conns=N connected=N closed=N answered_408=N open=N
 *          errors=N first_close_s=S last_close_s=S
 * where the close times count from the connection's connect. Exits 0 when
 * every connection connected and the server closed every one.
 *
 * pipeline: opens CONNS connections (with a 4 KiB receive buffer) and on each
 * writes `GET PATH` requests back to back, as fast as the socket takes them,
 * and never reads a byte, for at most SECONDS (it stops once the server closed
 * every connection). Prints
 *   RESULT mode=pipeline conns=N connected=N closed=N open=N errors=N
 *          sent_kb=K max_sent_kb=K
 * (sent = request bytes the kernel took; the server stops reading once its
 * bounds are reached, so sent stays bounded). A connection counts as closed
 * when the server shuts it (EOF, reset, a failed write). Exits 0 when every
 * connection connected.
 *
 * Memory: one calloc'd array of connection slots, freed at exit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  int connected;
  int closed;
  int got408;
  size_t pos;       /* slow: bytes of the endless header sent */
  size_t sent;      /* pipeline: request bytes the kernel took */
  double t_connect; /* when it connected */
  double t_closed;  /* when the server closed it */
  char head[16];    /* first bytes of the answer */
  size_t hlen;
} conn_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The slow request: a request line, then header lines that never end. */
static char slow_byte(size_t pos) {
  static const char start[] = "GET /healthz HTTP/1.1\r\nHost: slow\r\n";
  if (pos < sizeof(start) - 1) return start[pos];
  pos -= sizeof(start) - 1;
  static const char line[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  return line[pos % (sizeof(line) - 1)];
}

static void mark_closed(conn_t *c, int epfd) {
  if (c->closed) return;
  c->closed = 1;
  c->t_closed = now();
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s slow|pipeline HOST PORT CONNS SECONDS [INTERVAL_MS|PATH]\n",
            argv[0]);
    return 2;
  }
  int pipeline = strcmp(argv[1], "pipeline") == 0;
  if (!pipeline && strcmp(argv[1], "slow") != 0) {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  const char *host = argv[2];
  int port = atoi(argv[3]), n = atoi(argv[4]);
  double seconds = atof(argv[5]);
  double interval = (!pipeline && argc > 6) ? atof(argv[6]) / 1000.0 : 1.0;
  char req[512];
  int req_len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: pipeline\r\n\r\n",
                         pipeline && argc > 6 ? argv[6] : "/healthz");
  signal(SIGPIPE, SIG_IGN);
  /* pipeline: whole requests back to back, written 64 KiB at a time */
  static char burst[65536];
  size_t burst_len = 0;
  while (burst_len + (size_t)req_len <= sizeof(burst)) {
    memcpy(burst + burst_len, req, (size_t)req_len);
    burst_len += (size_t)req_len;
  }

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", host);
    return 2;
  }
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  int epfd = epoll_create1(0);
  if (conns == NULL || epfd < 0) {
    perror("setup");
    return 2;
  }
  long errors = 0;
  for (int i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
      errors++;
      c->closed = 1;
      continue;
    }
    if (pipeline) { /* a small receive window: the server's buffers fill, not ours */
      int small = 4096;
      setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno != EINPROGRESS) {
      errors++;
      close(c->fd);
      c->closed = 1;
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  }

  double start = now(), next_tick = start;
  struct epoll_event evs[1024];
  char buf[4096];
  while (now() - start < seconds) {
    int open = 0;
    for (int i = 0; i < n; i++)
      open += !conns[i].closed;
    if (open == 0) break;
    int timeout = pipeline ? 100 : (int)((next_tick - now()) * 1000);
    if (timeout < 0) timeout = 0;
    int k = epoll_wait(epfd, evs, 1024, timeout);
    for (int e = 0; e < k; e++) {
      conn_t *c = &conns[evs[e].data.u32];
      if (c->closed) continue;
      uint32_t what = evs[e].events;
      if (!c->connected && (what & EPOLLOUT) && !(what & EPOLLERR)) {
        c->connected = 1;
        c->t_connect = now();
        /* slow: from now on only reads matter (bytes go out on the tick); pipeline: only
         * writes and the server's close (answers are never read) */
        struct epoll_event ev = {.events = pipeline ? EPOLLOUT | EPOLLRDHUP : EPOLLIN | EPOLLRDHUP,
                                 .data.u32 = evs[e].data.u32};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
      }
      if ((what & EPOLLERR) || (pipeline && (what & (EPOLLRDHUP | EPOLLHUP)))) {
        if (!c->connected) errors++;
        mark_closed(c, epfd);
        continue;
      }
      if (!pipeline && (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
        ssize_t r;
        while ((r = read(c->fd, buf, sizeof(buf))) > 0) {
          size_t take =
              (size_t)r < sizeof(c->head) - c->hlen ? (size_t)r : sizeof(c->head) - c->hlen;
          memcpy(c->head + c->hlen, buf, take);
          c->hlen += take;
          if (c->hlen >= 12 && memcmp(c->head, "HTTP/1.1 408", 12) == 0) c->got408 = 1;
        }
        if (r == 0 || (r < 0 && errno != EAGAIN)) mark_closed(c, epfd);
        continue;
      }
      if (pipeline && c->connected && (what & EPOLLOUT)) {
        /* one write per event, so that every connection gets its turn */
        size_t off = c->sent % burst_len;
        ssize_t w = write(c->fd, burst + off, burst_len - off);
        if (w > 0)
          c->sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
          mark_closed(c, epfd);
      }
    }
    if (!pipeline && now() >= next_tick) { /* one more byte on every live connection */
      for (int i = 0; i < n; i++) {
        conn_t *c = &conns[i];
        if (c->closed || !c->connected) continue;
        char b = slow_byte(c->pos);
        ssize_t w = write(c->fd, &b, 1);
        if (w == 1)
          c->pos++;
        else if (w < 0 && errno != EAGAIN)
          mark_closed(c, epfd);
      }
      next_tick += interval;
    }
  }

  long connected = 0, closed = 0, got408 = 0, open = 0;
  double first = -1, last = -1;
  size_t sent = 0, max_sent = 0;
  for (int i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    connected += c->connected;
    if (c->connected && c->closed) {
      closed++;
      double t = c->t_closed - c->t_connect;
      if (first < 0 || t < first) first = t;
      if (t > last) last = t;
    }
    got408 += c->got408;
    if (!c->closed) {
      open++;
      close(c->fd);
    }
    sent += c->sent;
    if (c->sent > max_sent) max_sent = c->sent;
  }
  if (pipeline)
    printf("RESULT mode=pipeline conns=%d connected=%ld closed=%ld open=%ld errors=%ld sent_kb=%zu "
           "max_sent_kb=%zu\n",
           n, connected, closed, open, errors, sent / 1024, max_sent / 1024);
  else
    printf(
        "RESULT mode=slow conns=%d connected=%ld closed=%ld answered_408=%ld open=%ld errors=%ld "
        "first_close_s=%.2f last_close_s=%.2f\n",
        n, connected, closed, got408, open, errors, first, last);
  free(conns);
  close(epfd);
  if (connected != n) return 1;
  return pipeline || closed == n ? 0 : 1;
}
