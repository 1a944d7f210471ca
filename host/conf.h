/* conf.h -- the host configuration: one flat struct filled from a Lua file
 * (`fcfs -c etc/fcfs.lua`, a chunk returning a table), then from FCFS_<KEY>
 * environment variables, then checked. Every key is one row of the table in
 * conf.c (name, type, default, bounds); an unknown key or a bad value is
 * refused with a message naming the key. The free-form `app` sub-table is
 * passed through untouched to handlers as host.config.app.
 *
 * The struct is filled once at start (and again in each worker, which
 * re-reads the same file and environment) and is read-only afterwards.
 * Strings are heap-allocated and freed by fcfs_conf_free().
 */
#ifndef FCFS_CONF_H
#define FCFS_CONF_H

#include <stddef.h>

/* One parsed entry of real_ip_from: family AF_INET (4 address bytes) or
 * AF_INET6 (16), the network address with its host bits cleared. */
typedef struct {
  int family;
  int bits;
  unsigned char addr[16];
} fcfs_cidr_t;

#define FCFS_MAX_DICTS 32
#define FCFS_DICT_NAME 48

/* shared_dicts = { name = "8m", ... }: sorted by name. */
typedef struct {
  int n;
  struct {
    char name[FCFS_DICT_NAME];
    size_t bytes;
  } d[FCFS_MAX_DICTS];
} fcfs_conf_dicts_t;

typedef struct fcfs_conf_s {
  char *conf_file; /* the file it was read from, absolute ("" if none) */

  /* process and network */
  char *listen; /* "127.0.0.1:8080" */
  int workers;  /* 0 = single process in the foreground */
  int backlog;
  int max_connections; /* per worker */
  char *run_dir;       /* pid file, logs, local services */
  char *pid_file;
  double heartbeat_timeout; /* s: a worker silent that long is killed */
  double drain_timeout;     /* s: QUIT and reload wait that long for in-flight requests */
  char **worker_cpu_affinity; /* "auto", CPU numbers or none (NULL-terminated; cpu.c) */

  /* Lua */
  char *lua_dir;  /* holds app.lua */
  char *lua_path; /* extra package.path entries, ';'-separated, may be "" */
  int dev;        /* watch lua_dir and reload on save */

  /* HTTP limits and timeouts (seconds) */
  double request_timeout; /* handler deadline -> 504 */
  double header_timeout;  /* -> 408 */
  double body_timeout;    /* -> 408 */
  double idle_timeout;    /* keep-alive connection closed silently */
  int max_requests_per_conn;
  int max_url;         /* -> 414 */
  int max_header_size; /* request line + headers -> 431 */
  int max_headers;     /* count -> 431 */
  int max_body;        /* -> 413 */

  /* logs */
  char *error_log;  /* path or "stderr" */
  char *access_log; /* path, "stderr" or "off" */
  char *log_level;  /* debug|info|notice|warn|error */

  /* Redis */
  char *redis;           /* "127.0.0.1:6379" or "unix:/path/redis.sock" */
  int redis_connections; /* shared, pipelined connections per worker */
  int redis_pinned_max;  /* pinned (MULTI/blocking) connections per worker */
  double redis_connect_timeout;
  double redis_timeout; /* per command */
  /* redis: queue bound, AUTH, SELECT (issue 6) */
  int redis_queue_max;  /* replies owed on one shared connection before calls get "busy" */
  char *redis_password; /* AUTH on connect when not "" */
  int redis_db;         /* SELECT on connect when not 0 */
  /* redis: Sentinel (issue 11) */
  char **redis_sentinels;  /* "IP:port" of each sentinel (NULL-terminated); none: use `redis` */
  char *redis_master_name; /* the master's name in the sentinels */

  /* MySQL */
  char *mysql_host; /* IP, never a name (DNS would block) */
  int mysql_port;
  char *mysql_socket; /* unix socket; used instead of host:port when not "" */
  char *mysql_user;
  char *mysql_password;
  char *mysql_database;
  int mysql_pool_size;  /* per worker */
  int mysql_queue_size; /* requests waiting for a connection */
  double mysql_wait_timeout;
  double mysql_connect_timeout;
  double mysql_query_timeout;
  int mysql_breaker_failures;    /* consecutive failures that open the circuit */
  double mysql_breaker_cooldown; /* s before a half-open probe */
  char *migrations_dir;          /* numbered .sql files for `fcfs migrate` */

  /* host.crypto (crypto.c): keys are never config values, only where to find them */
  char *secrets_file; /* NAME=value file of FCFS_SECRET_* keys; "" = environment only */
  int argon2_ops;     /* argon2id passes (opslimit) of password_hash */
  int argon2_mem_kib; /* argon2id memory per hash, KiB (memlimit / 1024) */
  /* outbound TCP (host.tcp), seconds; clamped to the request's time left */
  double tcp_connect_timeout; /* name resolution and connect */
  double tcp_send_timeout;
  double tcp_read_timeout;
  int tcp_buffer_max; /* bytes one receive may buffer -> "too large" */

  /* admin listener and client addresses */
  char *admin_listen;         /* "unix:PATH", a loopback "IP:port", or "" for none */
  char **real_ip_from;        /* trusted proxies as CIDRs (NULL-terminated list) */
  char *real_ip_header;       /* the header they put the client address in */
  fcfs_cidr_t *real_ip_cidrs; /* real_ip_from, parsed */
  int real_ip_ncidrs;
  /* lifecycle: reloads, timers, clients that go away */
  double reload_timeout;  /* s: every worker must have built and initialised a new generation */
  int max_pending_timers; /* host.timer.at/every pending per worker */
  char *client_abort;     /* "finish": a handler outlives its client; "cancel": it is cancelled */
  /* host primitives: shared dictionaries, node identity */
  fcfs_conf_dicts_t shared_dicts; /* host.shared.NAME, laid out in shm by the master */
  char *node_id;                  /* host.node_id; "" in the file = the hostname */
  /* stock gates (host.stock, stock.c) */
  int stock_slots; /* products with a gate at once, laid out in shm by the master */
  /* static files (static.c) and streamed answers (host.stream) */
  char *static_dir;           /* served for GET/HEAD no app route matches; "" = none */
  double static_max_age;      /* s: Cache-Control max-age; 0 = "no-cache" (revalidate by ETag) */
  int static_cache_size;      /* bytes of file contents cached per worker */
  double stream_timeout;      /* s: the longest a streamed answer (SSE) lasts */
  double stream_send_timeout; /* s: the longest host.stream.send waits for a slow client */
} fcfs_conf_t;

/* Fill c from path (NULL: defaults only) and the environment. On error
 * returns -1 and writes a one-line message naming the key or file:line to
 * err. */
int fcfs_conf_load(fcfs_conf_t *c, const char *path, char *err, size_t errlen);
void fcfs_conf_free(fcfs_conf_t *c);

/* 1 when the address is in real_ip_from. family is AF_INET (addr: 4 bytes)
 * or AF_INET6 (16 bytes; an IPv4-mapped address is matched as IPv4). */
/* "IP:port" or "[IPv6]:port" (no names: DNS would block) into *out (may be
 * NULL: just check). 0 or -1. */
struct sockaddr_storage;
int fcfs_conf_ip_port(const char *a, struct sockaddr_storage *out);

int fcfs_conf_trusted(const fcfs_conf_t *c, int family, const void *addr);

/* Push a read-only table view of c on L (host.config). */
struct lua_State;
void fcfs_conf_push(struct lua_State *L, const fcfs_conf_t *c);

#endif
