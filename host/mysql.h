/* mysql.h -- the per-worker MySQL connection pool (MariaDB Connector/C,
 * non-blocking API driven by libuv).
 *
 * One fcfs_mysql_t per worker owns up to pool_size connections, a bounded
 * FIFO of callers waiting for one, and a circuit breaker. Two ways in:
 *
 *   fcfs_mysql_query(m, NULL, sql, ...)  borrows a pooled connection for one
 *                                        statement and gives it back;
 *   fcfs_mysql_acquire(m, ...)           pins a connection to the caller
 *                                        (transactions), which then runs
 *                                        fcfs_mysql_query(m, conn, ...) on it
 *                                        and ends with fcfs_mysql_release().
 *
 * `?` placeholders are filled in C when the statement reaches a connection,
 * with mysql_real_escape_string() for that connection's charset and
 * backslash mode; values are never pasted raw.
 *
 * Calls either refuse at once (negative return, callback never called; see
 * fcfs_mysql_strerror) or return 0 and later call their callback exactly
 * once -- unless the caller cancels the request first with
 * fcfs_mysql_cancel(), after which the callback is never called. Errors that
 * come from the host are the static strings below (compare by pointer);
 * errors from the server or the client library carry errnum != 0 and a text
 * that is valid only during the callback.
 */
#ifndef FCFS_MYSQL_H
#define FCFS_MYSQL_H

#include <mariadb/mysql.h> /* not <mysql.h>: this header has that name */
#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct uv_loop_s;
struct lua_State;
struct fcfs_conf_s;

typedef struct fcfs_mysql_s fcfs_mysql_t;
typedef struct fcfs_mysql_conn_s fcfs_mysql_conn_t;
typedef struct fcfs_mysql_req_s fcfs_mysql_req_t;

/* Static error strings, compared by pointer. */
extern const char fcfs_mysql_e_timeout[];     /* "timeout" */
extern const char fcfs_mysql_e_busy[];        /* "busy": wait queue full */
extern const char fcfs_mysql_e_unavailable[]; /* "unavailable": circuit open */
extern const char fcfs_mysql_e_closed[];      /* "closed": pool closing, pinned connection lost */

/* Negative return codes of the start functions. */
enum {
  FCFS_MYSQL_EBUSY = -1,
  FCFS_MYSQL_EUNAVAILABLE = -2,
  FCFS_MYSQL_ECLOSED = -3,
  FCFS_MYSQL_EARGS = -4, /* placeholder count does not match the values */
  FCFS_MYSQL_ENOMEM = -5,
  FCFS_MYSQL_EINUSE = -6, /* pinned connection already runs a statement */
};
/* The static string for a negative return code ("busy", "unavailable", ...). */
const char *fcfs_mysql_strerror(int rc);

typedef struct fcfs_mysql_opts_s {
  const char *host; /* an IP address; ignored when socket is set */
  int port;
  const char *socket; /* unix socket path, NULL or "" for host:port */
  const char *user;
  const char *password;
  const char *database; /* NULL or "" for none */
  int pool_size;
  int queue_size;
  double wait_timeout;     /* s waiting for a connection -> "timeout" */
  double connect_timeout;  /* s */
  double query_timeout;    /* s, default when a call passes timeout <= 0 */
  int breaker_failures;    /* consecutive connect/transport failures that open the circuit */
  double breaker_cooldown; /* s before one half-open probe */
} fcfs_mysql_opts_t;

/* Fill o from the mysql_* keys of c (pointers into c, which must outlive the pool). */
void fcfs_mysql_opts_from_conf(fcfs_mysql_opts_t *o, const struct fcfs_conf_s *c);

/* A value bound to a `?`. Strings are copied when the call starts. */
enum { FCFS_MYSQL_PNULL, FCFS_MYSQL_PINT, FCFS_MYSQL_PDOUBLE, FCFS_MYSQL_PSTR };
typedef struct fcfs_mysql_param_s {
  int type;
  long long i;
  double d;
  const char *s;
  size_t len;
} fcfs_mysql_param_t;

/* The outcome of one statement, handed to the query callback. */
typedef struct fcfs_mysql_result_s {
  const char *err;     /* NULL on success */
  unsigned int errnum; /* mysql_errno() for server/library errors; 0 for host errors */
  MYSQL_RES *res; /* the result set, or NULL for a write; freed by the pool after the callback */
  uint64_t affected_rows;
  uint64_t insert_id;
} fcfs_mysql_result_t;

typedef void (*fcfs_mysql_query_cb)(void *arg, const fcfs_mysql_result_t *r);
/* conn is NULL on error. */
typedef void (*fcfs_mysql_acquire_cb)(void *arg, fcfs_mysql_conn_t *conn, const char *err,
                                      unsigned int errnum);

/* A pool on loop. stats (may be NULL) is written by the pool only; it must
 * outlive the pool. Opts strings are copied. NULL on allocation failure. */
fcfs_mysql_t *fcfs_mysql_new(struct uv_loop_s *loop, const fcfs_mysql_opts_t *o,
                             fcfs_pool_stats_t *stats);

/* Close the pool: waiting and running requests get "closed", idle
 * connections are closed. Pinned connections must have been released.
 * The memory goes once libuv closed every handle: keep running the loop. */
void fcfs_mysql_free(fcfs_mysql_t *m);

/* Run sql with params on a pooled connection (conn == NULL) or on the pinned
 * conn. timeout (s) bounds the whole call, the wait for a connection
 * included (which is also bounded by wait_timeout); <= 0 means the pool's
 * query_timeout. *req (may be NULL) receives a handle for fcfs_mysql_cancel,
 * valid until the callback runs. */
int fcfs_mysql_query(fcfs_mysql_t *m, fcfs_mysql_conn_t *conn, const char *sql, size_t len,
                     const fcfs_mysql_param_t *params, int nparams, double timeout,
                     fcfs_mysql_query_cb cb, void *arg, fcfs_mysql_req_t **req);

/* Pin a connection. The callback receives it; the caller owns it until
 * fcfs_mysql_release(). */
int fcfs_mysql_acquire(fcfs_mysql_t *m, double timeout, fcfs_mysql_acquire_cb cb, void *arg,
                       fcfs_mysql_req_t **req);

/* Give a pinned connection back. reuse != 0 pools it again if it is clean
 * (no transaction open, nothing unread, no statement running); anything else
 * closes it (the server rolls an open transaction back). */
void fcfs_mysql_release(fcfs_mysql_conn_t *conn, int reuse);

/* 1 while a pinned connection is still connected. */
int fcfs_mysql_conn_ok(const fcfs_mysql_conn_t *conn);

/* Forget a request whose callback has not run: a waiting one leaves the
 * queue; a statement running on a pooled connection is stopped with KILL
 * QUERY and its connection pooled again, reset; one running on a pinned
 * connection closes it (the server rolls the transaction back). */
void fcfs_mysql_cancel(fcfs_mysql_req_t *req);

/* Number of `?` placeholders in sql, quoted strings, quoted identifiers and
 * comments skipped. */
int fcfs_mysql_count_placeholders(const char *sql, size_t len);

/* The options the pool runs with (strings owned by the pool). */
const fcfs_mysql_opts_t *fcfs_mysql_options(const fcfs_mysql_t *m);

/* The stats block the pool writes (never NULL; a private one when none was given). */
const fcfs_pool_stats_t *fcfs_mysql_stats(const fcfs_mysql_t *m);

/* Push the host.mysql table (query, tx) bound to m on L. m must outlive L. */
int fcfs_lapi_mysql_open(struct lua_State *L, fcfs_mysql_t *m);

#endif
