/* test_tcp.c -- the outbound TCP client core (host/tcp.c) on its own loop,
 * against loopback listeners made with plain sockets: one whose queue takes
 * connections that are never accepted (so nothing is ever read from them),
 * and one with a backlog of 0 whose queue is full (connecting hangs).
 * Covers results and errors, and above all cancellation: a socket freed
 * while it resolves, connects, sends or receives never calls back, and
 * every handle is closed (uv_loop_close succeeds; ASan/LSan see no leak).
 * Prints TAP.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "tcp.h"

static uv_loop_t loop;
static int calls, strays;
static const char *last_err;
static char last_data[64];

static void on_result(void *arg, const fcfs_tcp_result_t *res) {
  calls++;
  last_err = res->err;
  snprintf(last_data, sizeof(last_data), "%.*s", (int)res->len, res->data ? res->data : "");
}

/* The callback of operations whose socket is freed before they complete. */
static void on_stray(void *arg, const fcfs_tcp_result_t *res) {
  strays++;
}

/* A listening socket on 127.0.0.1; its port in *port. */
static int listener(int backlog, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("listener");
    exit(1);
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

static void stop_loop(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Run the loop for ms milliseconds, or until `calls` reaches want. */
static void run_until(int want, uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, stop_loop, ms, 0);
  while (calls < want && uv_timer_get_due_in(&t) > 0)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static fcfs_tcp_t *connected_socket(int port) {
  fcfs_tcp_t *s = fcfs_tcp_new(&loop, 4096);
  fcfs_tcp_result_t res;
  int before = calls;
  int rc = fcfs_tcp_connect(s, "127.0.0.1", port, 2000, on_result, NULL, &res);
  if (rc == FCFS_TCP_PENDING) run_until(before + 1, 2000);
  return s;
}

int main(void) {
  uv_loop_init(&loop);
  int port, full_port, closed_port;
  int lfd = listener(64, &port);
  int full = listener(0, &full_port);
  int filler = connect_to(full_port); /* the one connection a backlog of 0 takes */
  int gone = listener(1, &closed_port);
  close(gone); /* nothing listens there now */
  fcfs_tcp_result_t res;
  int rc, before;

  /* connect, and errors reported from the loop */
  before = calls;
  fcfs_tcp_t *s = connected_socket(port);
  CHECK(calls == before + 1 && last_err == NULL && fcfs_tcp_connected(s), "connects to 127.0.0.1");
  int peer = accept(lfd, NULL, NULL);
  CHECK(write(peer, "one\r\ntwo\nthr", 12) == 12, "the peer writes");
  before = calls;
  rc = fcfs_tcp_receive(s, FCFS_TCP_LINE, 0, 1000, on_result, NULL, &res);
  CHECK(rc == FCFS_TCP_PENDING, "a receive with nothing buffered waits");
  run_until(before + 1, 1000);
  CHECK(calls == before + 1 && last_err == NULL && strcmp(last_data, "one\r") == 0,
        "the first line, its CR kept");
  rc = fcfs_tcp_receive(s, FCFS_TCP_LINE, 0, 1000, on_result, NULL, &res);
  CHECK(rc == FCFS_TCP_DONE && res.err == NULL && res.len == 3 && !memcmp(res.data, "two", 3),
        "a buffered line is returned at once");
  before = calls;
  rc = fcfs_tcp_receive(s, FCFS_TCP_COUNT, 5, 100, on_result, NULL, &res);
  run_until(before + 1, 1000);
  CHECK(rc == FCFS_TCP_PENDING && last_err == fcfs_tcp_etimeout && !strcmp(last_data, "thr"),
        "a receive timeout returns the partial data");
  CHECK(fcfs_tcp_connected(s), "and leaves the connection open");
  rc = fcfs_tcp_receive(s, FCFS_TCP_COUNT, 5000, 100, on_result, NULL, &res);
  CHECK(rc == FCFS_TCP_DONE && res.err == fcfs_tcp_etoolarge, "n > buffer_max: too large");
  close(peer);
  before = calls;
  rc = fcfs_tcp_receive(s, FCFS_TCP_ALL, 0, 1000, on_result, NULL, &res);
  run_until(before + 1, 1000);
  CHECK(last_err == NULL && !fcfs_tcp_connected(s), "\"all\" ends when the peer closes");
  fcfs_tcp_free(s);

  s = fcfs_tcp_new(&loop, 4096);
  before = calls;
  rc = fcfs_tcp_connect(s, "127.0.0.1", closed_port, 1000, on_result, NULL, &res);
  run_until(before + 1, 1000);
  CHECK(rc == FCFS_TCP_PENDING && last_err && !strcmp(last_err, "connection refused"),
        "connection refused");
  before = calls;
  rc = fcfs_tcp_connect(s, "127.0.0.1", full_port, 100, on_result, NULL, &res);
  run_until(before + 1, 2000);
  CHECK(calls == before + 1 && last_err == fcfs_tcp_etimeout, "connect timeout on a full queue");
  rc = fcfs_tcp_connect(s, "bad\xffname", port, 2000, on_result, NULL, &res);
  CHECK(rc == FCFS_TCP_DONE && res.err && !strncmp(res.err, "resolve: ", 9),
        "a name the resolver refuses outright: resolve: ...");
  before = calls;
  rc = fcfs_tcp_connect(s, "localhost", port, 2000, on_result, NULL, &res);
  run_until(before + 1, 2000);
  CHECK(rc == FCFS_TCP_PENDING && last_err == NULL && fcfs_tcp_connected(s),
        "resolves localhost and connects");
  fcfs_tcp_free(s);

  /* freed with an operation pending: no callback, nothing left behind */
  s = fcfs_tcp_new(&loop, 4096);
  rc = fcfs_tcp_connect(s, "localhost", port, 2000, on_stray, NULL, &res);
  fcfs_tcp_free(s);
  s = fcfs_tcp_new(&loop, 4096);
  rc = fcfs_tcp_connect(s, "127.0.0.1", full_port, 2000, on_stray, NULL, &res);
  run_until(calls + 1, 50);
  fcfs_tcp_free(s);
  s = connected_socket(port);
  rc = fcfs_tcp_receive(s, FCFS_TCP_LINE, 0, 2000, on_stray, NULL, &res);
  run_until(calls + 1, 50);
  fcfs_tcp_free(s);
  s = connected_socket(port);
  size_t big = 64u << 20; /* more than loopback buffers take from a peer that never reads */
  char *data = calloc(1, big);
  uv_buf_t b = uv_buf_init(data, (unsigned)big);
  rc = fcfs_tcp_send(s, &b, 1, 2000, on_stray, NULL, &res);
  free(data); /* the unsent part was copied */
  CHECK(rc == FCFS_TCP_PENDING, "a send the peer does not drain waits");
  run_until(calls + 1, 50);
  fcfs_tcp_free(s);
  run_until(calls + 1, 200);
  CHECK(strays == 0, "a socket freed while resolving, connecting, receiving or sending never "
                     "calls back");

  s = connected_socket(port);
  data = calloc(1, big);
  b = uv_buf_init(data, (unsigned)big);
  before = calls;
  rc = fcfs_tcp_send(s, &b, 1, 100, on_result, NULL, &res);
  free(data);
  run_until(before + 1, 2000);
  CHECK(calls == before + 1 && last_err == fcfs_tcp_etimeout && !fcfs_tcp_connected(s),
        "a send timeout closes the connection");
  fcfs_tcp_free(s);

  close(lfd);
  close(full);
  close(filler);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "every handle is closed");
  printf("1..%d\n", ntests);
  return nfail ? 1 : 0;
}
