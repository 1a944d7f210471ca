/* redis.h -- the per-worker Redis pool: a few shared, pipelined connections
 * used by every request, pinned connections for transactions and blocking
 * commands, content-addressed scripts called by SHA. hiredis is only the RESP codec; the
 * sockets are the host's own libuv streams (TCP or unix socket).
 *
 * Errors: functions return 0 or a negative FCFS_REDIS_E* code
 * (fcfs_redis_strerror() names it); callbacks get either a reply or one of
 * the static strings below, compared by pointer. Callbacks never run from
 * inside the call that registered them.
 */
#ifndef FCFS_REDIS_H
#define FCFS_REDIS_H

#include <hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "conf.h"
#include "stats.h"

typedef struct fcfs_redis_s fcfs_redis_t;
typedef struct fcfs_redis_conn_s fcfs_redis_conn_t;

enum {
  FCFS_REDIS_EUNAVAILABLE = -1, /* no connection is up: the server is down */
  FCFS_REDIS_ECLOSED = -2,      /* this (pinned) connection or the pool is closed */
  FCFS_REDIS_EBUSY = -3,        /* redis_pinned_max pinned connections in use, or redis_queue_max
                                   replies owed on the shared connection */
  FCFS_REDIS_ENOSCRIPT = -4,    /* run() of an id script() never returned */
  FCFS_REDIS_EINVAL = -5,       /* bad argument (argc < 1, bad address...) */
  FCFS_REDIS_ENOMEM = -6
};

/* The strings handed to callbacks (and returned by fcfs_redis_strerror()). */
extern const char fcfs_redis_etimeout[];     /* "timeout" */
extern const char fcfs_redis_eclosed[];      /* "closed" */
extern const char fcfs_redis_eunavailable[]; /* "unavailable" */
extern const char fcfs_redis_ebusy[];        /* "busy" */

const char *fcfs_redis_strerror(int rc);

/* Exactly one of reply/err is non-NULL. The callback owns reply and frees it
 * with fcfs_redis_reply_free() (never freeReplyObject(): replies are built in
 * the pool's recycled blocks). A server error reply (REDIS_REPLY_ERROR,
 * "ERR ...") is a reply, not an err. */
typedef void (*fcfs_redis_cb)(void *arg, redisReply *reply, const char *err);

/* Free a reply a callback (or fcfs_redis_conn_read()) handed out; NULL is
 * fine. Valid after the pool is closed too. */
void fcfs_redis_reply_free(redisReply *reply);

/* Starts connecting at once. stats (may be NULL) is updated live. conf must
 * outlive the pool. NULL on a bad conf->redis address or out of memory. */
fcfs_redis_t *fcfs_redis_new(uv_loop_t *loop, const fcfs_conf_t *conf, fcfs_pool_stats_t *stats);

/* Fails everything pending with "closed", closes every handle, then calls
 * done(arg) and frees the pool. Pinned connections still handed out become
 * invalid: close the pool after the tasks using it are gone. */
void fcfs_redis_close(fcfs_redis_t *r, void (*done)(void *), void *arg);

/* conf->redis_timeout, the timeout used when a call passes timeout <= 0. */
double fcfs_redis_default_timeout(const fcfs_redis_t *r);

/* Replies the first shared connection owes before new commands go to the
 * least loaded one (fcfs_redis_shared(); the reason in redis.c). */
#define FCFS_REDIS_FILL 256

/* Send one command on the shared connection fcfs_redis_shared() picks.
 * timeout in seconds, <= 0 for the default. *handle (may be NULL) is for
 * fcfs_redis_cancel() until cb has run. Commands issued in one loop
 * iteration go out in one write per connection. */
int fcfs_redis_command_argv(fcfs_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                            double timeout, fcfs_redis_cb cb, void *arg, void **handle);

/* The cb of the command will not run; its reply is read and dropped. Only
 * valid before the cb ran. */
void fcfs_redis_cancel(void *handle);

/* Commands that must not go on a shared connection: transactions
 * (MULTI/EXEC/DISCARD/WATCH/UNWATCH), blocking commands (BLPOP, BRPOP,
 * BLMOVE, BZPOPMIN, XREAD/XREADGROUP ... BLOCK, WAIT ...), pub/sub, MONITOR
 * and connection state changes (SELECT, AUTH, HELLO, CLIENT REPLY/SETNAME,
 * RESET, QUIT). Returns 1 for those. */
int fcfs_redis_needs_pin(int argc, const char **argv, const size_t *argvlen);

/* The shared connection for the next command: the first one up until it
 * owes FCFS_REDIS_FILL replies, then the one owing the fewest. To send
 * several commands that must execute in order (a pipeline); NULL when none
 * is up. Valid until the next loop iteration only. */
fcfs_redis_conn_t *fcfs_redis_shared(fcfs_redis_t *r);

/* Pinned connections: *out is a connection for the caller alone (from the
 * idle list, or connecting now: commands are queued until it is up). */
int fcfs_redis_pin(fcfs_redis_t *r, fcfs_redis_conn_t **out);
/* Give it back: reused if clean (up, nothing pending, no MULTI/WATCH, no
 * subscription or other state change), closed otherwise. Pending callbacks
 * get "closed". */
void fcfs_redis_unpin(fcfs_redis_conn_t *c);

/* Send a command on a given (shared or pinned) connection. Same contract as
 * fcfs_redis_command_argv(); FCFS_REDIS_ECLOSED if the connection died. */
int fcfs_redis_conn_command_argv(fcfs_redis_conn_t *c, int argc, const char **argv,
                                 const size_t *argvlen, double timeout, fcfs_redis_cb cb, void *arg,
                                 void **handle);

/* Pinned connections only: the next reply no command is waiting for (pub/sub
 * messages, extra SUBSCRIBE confirmations). If one is already there it is
 * returned in *ready at once (the caller owns it) and cb is not called. */
int fcfs_redis_conn_read(fcfs_redis_conn_t *c, double timeout, fcfs_redis_cb cb, void *arg,
                         void **handle, redisReply **ready);

/* Content-addressed scripts. script() records src under its SHA1 (computed
 * locally: no I/O, fine at module load time) and returns its id (>= 0) or a
 * negative code; the same source always gives the same id, and an entry is
 * never replaced or removed while the pool lives, so the VMs of successive
 * generations share scripts safely. run() sends EVALSHA on c (NULL: a shared
 * connection); on NOSCRIPT it sends SCRIPT LOAD + EVALSHA again on the same
 * connection, transparently. With ordered (a pipeline: later commands must
 * see the script's effects) or inside MULTI on a pinned connection it sends
 * EVAL with the source instead, which cannot meet NOSCRIPT. v holds the nkeys
 * keys then the arguments, n entries in all. */
int fcfs_redis_script(fcfs_redis_t *r, const char *src, size_t srclen);
const char *fcfs_redis_script_sha(const fcfs_redis_t *r, int id); /* NULL if unknown */
int fcfs_redis_run(fcfs_redis_t *r, fcfs_redis_conn_t *c, int id, int ordered, int nkeys, int n,
                   const char **v, const size_t *vlen, double timeout, fcfs_redis_cb cb, void *arg,
                   void **handle);

/* lapi_redis.c: push the host.redis table for a VM. */
struct lua_State;
int fcfs_lapi_redis_open(struct lua_State *L, fcfs_redis_t *r);

#endif
