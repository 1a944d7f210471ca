/* tcp.h -- an outbound TCP client on a worker's libuv loop: connect (names
 * resolved on the thread pool), send, and buffered receives of a line, of n
 * bytes or of everything until the peer closes. host.tcp() (lapi_tcp.c) is
 * its Lua face, cosocket style.
 *
 * One operation at a time per socket. An operation either completes at once
 * (the function returns FCFS_TCP_DONE and fills *res) or later from the loop
 * (FCFS_TCP_PENDING; cb(arg, res) runs once, never from inside the call that
 * started it). Errors are static strings compared by pointer ("timeout",
 * "closed", uv_strerror() texts), except a resolver error, "resolve: ...",
 * which lives in the socket until its next operation. Received data in *res
 * points into the socket's buffer: copy it before the next call on the socket.
 *
 * Every error but a receive timeout closes the connection; the socket can
 * then connect again. fcfs_tcp_disconnect() drops the connection and a
 * pending operation without calling its callback (cancellation);
 * fcfs_tcp_free() does that and frees the socket. Both are safe whatever is
 * pending: the libuv handles and requests are freed in their own callbacks.
 */
#ifndef FCFS_TCP_H
#define FCFS_TCP_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fcfs_tcp_s fcfs_tcp_t;

enum { FCFS_TCP_PENDING = 0, FCFS_TCP_DONE = 1 };

/* What fcfs_tcp_receive() waits for. */
enum {
  FCFS_TCP_LINE,  /* up to a LF; the LF is not part of the data (CRs are kept) */
  FCFS_TCP_COUNT, /* exactly n bytes */
  FCFS_TCP_ALL    /* everything until the peer closes (then the socket is closed) */
};

extern const char fcfs_tcp_etimeout[];  /* "timeout" */
extern const char fcfs_tcp_eclosed[];   /* "closed" */
extern const char fcfs_tcp_etoolarge[]; /* "too large": more than buffer_max bytes */
extern const char fcfs_tcp_ebusy[];     /* "busy": another operation is pending */

typedef struct {
  const char *err;  /* NULL on success */
  const char *data; /* receive: the data, or the partial data on error (NULL: none) */
  size_t len;
  size_t sent; /* send: bytes written */
} fcfs_tcp_result_t;

typedef void (*fcfs_tcp_cb)(void *arg, const fcfs_tcp_result_t *res);

/* A socket that is not connected yet. A receive never buffers more than
 * buffer_max bytes. NULL when out of memory. */
fcfs_tcp_t *fcfs_tcp_new(uv_loop_t *loop, size_t buffer_max);
void fcfs_tcp_free(fcfs_tcp_t *s);
void fcfs_tcp_disconnect(fcfs_tcp_t *s);
int fcfs_tcp_connected(const fcfs_tcp_t *s);

/* Connect to host (an IP literal, or a name resolved with uv_getaddrinfo,
 * each address tried in turn) within timeout_ms for resolution and connect
 * together. A connected socket is disconnected first. */
int fcfs_tcp_connect(fcfs_tcp_t *s, const char *host, int port, uint64_t timeout_ms, fcfs_tcp_cb cb,
                     void *arg, fcfs_tcp_result_t *res);

/* Write all of bufs (copied when they cannot be written at once). */
int fcfs_tcp_send(fcfs_tcp_t *s, const uv_buf_t *bufs, unsigned nbufs, uint64_t timeout_ms,
                  fcfs_tcp_cb cb, void *arg, fcfs_tcp_result_t *res);

/* Receive per mode (n: the byte count of FCFS_TCP_COUNT). On a timeout the
 * partial data is consumed and returned with the error, and the connection
 * stays open. */
int fcfs_tcp_receive(fcfs_tcp_t *s, int mode, size_t n, uint64_t timeout_ms, fcfs_tcp_cb cb,
                     void *arg, fcfs_tcp_result_t *res);

/* Receive up to the first occurrence of pat (patlen > 0 bytes, kept alive
 * by the caller until the operation completes); pat is consumed, and part
 * of the data only when inclusive. FCFS_TCP_LINE is this with "\n". */
int fcfs_tcp_receive_until(fcfs_tcp_t *s, const char *pat, size_t patlen, int inclusive,
                           uint64_t timeout_ms, fcfs_tcp_cb cb, void *arg, fcfs_tcp_result_t *res);

/* host.tcp (lapi_tcp.c): registers the socket metatable and pushes the
 * constructor function. */
void fcfs_lapi_tcp_open(lua_State *L);

#endif
