/* c10k_client.c -- the client half of bench/c10k.sh (built by that script with
 * cc; not part of the fcfs build).
 *
 *   c10k_client HOST PORT PATH CONNS SECONDS [HOLD_SECONDS]
 *
 * Opens CONNS keep-alive connections (non-blocking, one epoll loop), then on
 * every connection sends `GET PATH` again each time the previous response is
 * complete, for SECONDS. Then stops sending and keeps every connection open for
 * HOLD_SECONDS (idle, for memory readings). Prints one line
 *   RESULT conns=N connected=N answered=N responses=N rps=R errors=N non2xx=N closed=N
 * where answered counts connections that got at least one 2xx response, errors
 * counts failed connects/reads/writes and closed counts connections the server
 * closed. Exits 0 only if every connection connected, was answered and stayed
 * open with no errors. Responses are delimited by Content-Length (fcfs sends
 * it on every response); there is no pipelining.
 * Memory: one calloc'd array of connection slots, freed at exit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
  long responses;
  size_t len;      /* bytes buffered in buf */
  char buf[1024];
} conn_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char req[512];
static size_t req_len;
static long errors, non2xx;

static int send_req(conn_t *c) {
  ssize_t n = write(c->fd, req, req_len); /* tiny, fits the socket buffer */
  if (n != (ssize_t)req_len) {
    errors++;
    return -1;
  }
  return 0;
}

/* Parse complete responses out of c->buf; returns how many were consumed. */
static int parse(conn_t *c) {
  int done = 0;
  for (;;) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL) return done;
    size_t head = (size_t)(end - c->buf) + 4;
    long clen = 0;
    char *p = strcasestr(c->buf, "\r\ncontent-length:");
    if (p && p < end) clen = strtol(p + 17, NULL, 10);
    if (c->len < head + (size_t)clen) return done;
    int status = (c->len > 12) ? atoi(c->buf + 9) : 0;
    if (status < 200 || status > 299) non2xx++;
    else c->responses++;
    memmove(c->buf, c->buf + head + clen, c->len - head - (size_t)clen);
    c->len -= head + (size_t)clen;
    done++;
  }
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: c10k_client HOST PORT PATH CONNS SECONDS [HOLD_SECONDS]\n");
    return 2;
  }
  const char *host = argv[1], *path = argv[3];
  int port = atoi(argv[2]), nconn = atoi(argv[4]);
  double secs = atof(argv[5]), hold = argc > 6 ? atof(argv[6]) : 0;
  req_len = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "bad host %s (want an IPv4 address)\n", host);
    return 2;
  }
  conn_t *cs = calloc((size_t)nconn, sizeof(*cs));
  int ep = epoll_create1(0);
  if (cs == NULL || ep < 0) return 2;
  long connected = 0;
  for (int i = 0; i < nconn; i++) {
    conn_t *c = &cs[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
      fprintf(stderr, "socket %d: %s\n", i, strerror(errno));
      nconn = i;
      break;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
      errors++;
      close(c->fd);
      c->fd = -1;
      c->closed = 1;
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }

  double t0 = now(), stop_at = t0 + secs, t_end = 0;
  long total = 0;
  int sending = 1;
  struct epoll_event evs[512];
  for (;;) {
    double t = now();
    if (sending && t >= stop_at) {
      sending = 0;
      t_end = t;
    }
    if (!sending && t >= stop_at + 2) break; /* in-flight responses had 2 s */
    int n = epoll_wait(ep, evs, 512, 50);
    for (int k = 0; k < n; k++) {
      conn_t *c = &cs[evs[k].data.u32];
      if (c->closed) continue;
      uint32_t e = evs[k].events;
      if (!c->connected && (e & EPOLLOUT)) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
          errors++;
          c->closed = 1;
          close(c->fd);
          continue;
        }
        c->connected = 1;
        connected++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[k].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        if (send_req(c) != 0) {
          c->closed = 1;
          close(c->fd);
        }
        continue;
      }
      if (e & EPOLLIN) {
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r > 0) {
          c->len += (size_t)r;
          int got = parse(c);
          total += got;
          if (c->len == sizeof(c->buf)) { /* a response that does not fit: give up on it */
            errors++;
            c->closed = 1;
            close(c->fd);
            continue;
          }
          if (got > 0 && sending && send_req(c) != 0) {
            c->closed = 1;
            close(c->fd);
          }
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) errors++;
        c->closed = 1; /* EOF or error */
        close(c->fd);
        continue;
      }
      if (e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        c->closed = 1;
        close(c->fd);
      }
    }
  }
  long answered = 0, closed = 0;
  for (int i = 0; i < nconn; i++) {
    if (cs[i].responses > 0) answered++;
    if (cs[i].closed) closed++;
  }
  double dur = t_end - t0;
  printf("RESULT conns=%d connected=%ld answered=%ld responses=%ld rps=%.0f errors=%ld non2xx=%ld closed=%ld\n",
         nconn, connected, answered, total, dur > 0 ? (double)total / dur : 0.0, errors, non2xx, closed);
  fflush(stdout);
  /* Hold every connection open and idle while the caller reads memory. */
  if (hold > 0) {
    fprintf(stderr, "holding %ld connections idle for %.0f s\n", connected - closed, hold);
    struct timespec ts = {.tv_sec = (time_t)hold, .tv_nsec = 0};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < nconn; i++)
    if (!cs[i].closed) close(cs[i].fd);
  free(cs);
  close(ep);
  int ok = connected == nconn && answered == nconn && closed == 0 && errors == 0 && non2xx == 0;
  return ok ? 0 : 1;
}
