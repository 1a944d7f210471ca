/* conf.c -- loading and checking the host configuration.
 *
 * A config file is a Lua chunk returning a flat table whose keys are the
 * rows of `keys[]` below, plus a free-form `app` table for handlers. Values
 * are strings, numbers, booleans, or lists of strings (a Lua array, where a
 * number stands for its text; in the environment, comma-separated). The
 * file is run in a throwaway lua_State (no host module: config is data, not
 * code with effects), then every key may be overridden from the environment
 * as FCFS_<KEY in upper case>. Unknown keys and out-of-range values are
 * refused with a message naming the key, so a typo never silently falls back
 * to a default.
 *
 * Ownership: every string field of fcfs_conf_t is malloc'ed here and freed by
 * fcfs_conf_free(). fcfs_conf_push() re-reads the file for the `app` table,
 * so nothing Lua-side is kept in the struct.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cpu.h"

/* CONF_LIST: a list of strings; CONF_DICTS: a table of name = size ("8m",
 * "512k", bytes). Their text form (defaults, FCFS_<KEY>) is "a,b" and
 * "name=8m,other=4m". */
typedef enum { CONF_STR, CONF_INT, CONF_NUM, CONF_BOOL, CONF_LIST, CONF_DICTS } conf_type_t;

typedef struct {
  const char *name;
  conf_type_t type;
  size_t offset;
  const char *def; /* default, as the text an env variable would hold */
  double min, max; /* numeric bounds */
} conf_key_t;

#define S(k, d)                                                                                    \
  { #k, CONF_STR, offsetof(fcfs_conf_t, k), d, 0, 0 }
#define I(k, d, lo, hi)                                                                            \
  { #k, CONF_INT, offsetof(fcfs_conf_t, k), d, lo, hi }
#define N(k, d, lo, hi)                                                                            \
  { #k, CONF_NUM, offsetof(fcfs_conf_t, k), d, lo, hi }
#define B(k, d)                                                                                    \
  { #k, CONF_BOOL, offsetof(fcfs_conf_t, k), d, 0, 1 }
#define L(k, d)                                                                                    \
  { #k, CONF_LIST, offsetof(fcfs_conf_t, k), d, 0, 0 }
#define D(k, d, lo, hi)                                                                            \
  { #k, CONF_DICTS, offsetof(fcfs_conf_t, k), d, lo, hi }

/* "" as the default of workers means "one per core", resolved below. */
static const conf_key_t keys[] = {
    S(listen, "127.0.0.1:8080"),
    I(workers, "", 0, 64),
    I(backlog, "4096", 1, 65535),
    I(max_connections, "16384", 1, 1000000),
    S(run_dir, "var/run"),
    S(pid_file, ""),
    N(heartbeat_timeout, "2", 0.2, 3600),
    N(drain_timeout, "10", 0, 3600),
    L(worker_cpu_affinity, ""),
    S(lua_dir, "lua"),
    S(lua_path, ""),
    B(dev, "false"),
    N(request_timeout, "30", 0.001, 86400),
    N(header_timeout, "10", 0.001, 3600),
    N(body_timeout, "10", 0.001, 3600),
    N(idle_timeout, "60", 0.001, 86400),
    I(max_requests_per_conn, "10000", 1, INT_MAX),
    I(max_url, "8192", 16, 1 << 20),
    I(max_header_size, "16384", 256, 1 << 24),
    I(max_headers, "100", 1, 10000),
    I(max_body, "1048576", 0, INT_MAX),
    S(error_log, ""),
    S(access_log, ""),
    S(log_level, "info"),
    S(redis, "127.0.0.1:6379"),
    I(redis_connections, "2", 1, 64),
    I(redis_pinned_max, "16", 0, 1024),
    N(redis_connect_timeout, "1", 0.001, 60),
    N(redis_timeout, "1", 0.001, 3600),
    /* redis: queue bound, AUTH, SELECT (issue 6) */
    I(redis_queue_max, "10000", 1, 10000000),
    S(redis_password, ""),
    I(redis_db, "0", 0, 1000000),
    /* redis: Sentinel (issue 11) */
    L(redis_sentinels, ""),
    S(redis_master_name, "mymaster"),
    S(mysql_host, "127.0.0.1"),
    I(mysql_port, "3306", 1, 65535),
    S(mysql_socket, ""),
    S(mysql_user, "fcfs"),
    S(mysql_password, ""),
    S(mysql_database, "fcfs"),
    I(mysql_pool_size, "8", 1, 1024),
    I(mysql_queue_size, "1024", 0, 1000000),
    N(mysql_wait_timeout, "1", 0.001, 3600),
    N(mysql_connect_timeout, "2", 0.001, 60),
    N(mysql_query_timeout, "5", 0.001, 3600),
    I(mysql_breaker_failures, "5", 1, 1000),
    N(mysql_breaker_cooldown, "2", 0.01, 3600),
    S(migrations_dir, "migrations"),
    /* host.crypto */
    S(secrets_file, ""),
    I(argon2_ops, "2", 1, 64),
    I(argon2_mem_kib, "19456", 8, 4194304),
    /* outbound TCP (host.tcp) */
    N(tcp_connect_timeout, "5", 0.001, 3600),
    N(tcp_send_timeout, "10", 0.001, 3600),
    N(tcp_read_timeout, "10", 0.001, 3600),
    I(tcp_buffer_max, "1048576", 1024, 1 << 30),

    /* admin listener and client addresses */
    S(admin_listen, "unix:var/run/admin.sock"),
    L(real_ip_from, ""),
    S(real_ip_header, "X-Forwarded-For"),
    /* lifecycle: reloads, timers, clients that go away */
    N(reload_timeout, "30", 0.1, 3600),
    I(max_pending_timers, "4096", 1, 10000000),
    S(client_abort, "finish"),
    /* host primitives: shared dictionaries (bytes each), node identity */
    D(shared_dicts, "", 16384, 1 << 30),
    S(node_id, ""),
    /* stock gates (host.stock): products with a gate at once */
    I(stock_slots, "1024", 1, 1 << 22),
    /* static files (static.c) and streamed answers (host.stream) */
    S(static_dir, ""),
    N(static_max_age, "0", 0, 31536000),
    I(static_cache_size, "8388608", 0, 1 << 30),
    N(stream_timeout, "3600", 1, 604800),
    N(stream_send_timeout, "10", 0.001, 3600),
};

#undef S
#undef I
#undef N
#undef B
#undef L
#undef D

static const char *log_levels[] = {"debug", "info", "notice", "warn", "error", NULL};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static const conf_key_t *find_key(const char *name) {
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

static void list_free(char **list) {
  for (char **p = list; p && *p; p++)
    free(*p);
  free(list);
}

/* "a, b,c" -> {"a", "b", "c", NULL}; empty items are skipped. */
static char **list_parse(const char *v) {
  size_t n = 1;
  for (const char *p = v; *p; p++)
    n += *p == ',';
  char **list = calloc(n + 1, sizeof(*list));
  if (list == NULL) return NULL;
  size_t i = 0;
  for (const char *p = v; *p;) {
    while (*p == ',' || isspace((unsigned char)*p))
      p++;
    const char *e = p;
    while (*e && *e != ',')
      e++;
    size_t len = (size_t)(e - p);
    while (len > 0 && isspace((unsigned char)p[len - 1]))
      len--;
    if (len > 0 && (list[i++] = strndup(p, len)) == NULL) {
      list_free(list);
      return NULL;
    }
    p = e;
  }
  return list;
}

/* "8m", "512k", "1g" or bytes; -1 when malformed. */
static double parse_size(const char *v, const char *end) {
  char *stop;
  errno = 0;
  double d = strtod(v, &stop);
  if (errno != 0 || stop == v || d != (double)(long long)d) return -1;
  if (stop < end) {
    const char *units = "kmg";
    const char *u = strchr(units, tolower((unsigned char)*stop));
    if (*stop == '\0' || u == NULL || stop + 1 != end) return -1;
    for (long i = 0; i <= u - units; i++)
      d *= 1024;
  }
  return d;
}

static int by_name(const void *a, const void *b) {
  return strcmp(a, b); /* name is the first member */
}

static int set_dicts(fcfs_conf_dicts_t *out, const conf_key_t *k, const char *v, const char *from,
                     char *err, size_t errlen) {
  fcfs_conf_dicts_t ds;
  memset(&ds, 0, sizeof(ds));
  for (const char *p = v; *p;) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL || eq == p)
      return fail(err, errlen, "%s: %s: expected name=size, got \"%.*s\"", from, k->name,
                  (int)(end - p), p);
    size_t nlen = (size_t)(eq - p);
    int ok = nlen < FCFS_DICT_NAME && (isalpha((unsigned char)*p) || *p == '_');
    for (size_t i = 0; i < nlen; i++)
      ok &= isalnum((unsigned char)p[i]) || p[i] == '_';
    if (!ok)
      return fail(err, errlen, "%s: %s: bad dictionary name \"%.*s\"", from, k->name, (int)nlen, p);
    if (ds.n == FCFS_MAX_DICTS)
      return fail(err, errlen, "%s: %s: at most %d dictionaries", from, k->name, FCFS_MAX_DICTS);
    memcpy(ds.d[ds.n].name, p, nlen);
    for (int i = 0; i < ds.n; i++)
      if (strcmp(ds.d[i].name, ds.d[ds.n].name) == 0)
        return fail(err, errlen, "%s: %s: \"%s\" twice", from, k->name, ds.d[i].name);
    double bytes = parse_size(eq + 1, end);
    if (bytes < k->min || bytes > k->max)
      return fail(
          err, errlen, "%s: %s.%s must be a size between %gk and %gm (\"8m\"), got \"%.*s\"", from,
          k->name, ds.d[ds.n].name, k->min / 1024, k->max / 1048576, (int)(end - eq - 1), eq + 1);
    ds.d[ds.n++].bytes = (size_t)bytes;
    p = comma ? comma + 1 : end;
  }
  qsort(ds.d, (size_t)ds.n, sizeof(ds.d[0]), by_name);
  *out = ds;
  return 0;
}

/* Set one key from its text form (defaults and env use this path). */
static int set_text(fcfs_conf_t *c, const conf_key_t *k, const char *v, const char *from, char *err,
                    size_t errlen) {
  char *p = (char *)c + k->offset;
  char *end;
  switch (k->type) {
  case CONF_STR: {
    char *dup = strdup(v);
    if (dup == NULL) return fail(err, errlen, "out of memory");
    free(*(char **)p);
    *(char **)p = dup;
    return 0;
  }
  case CONF_LIST: {
    char **list = list_parse(v);
    if (list == NULL) return fail(err, errlen, "out of memory");
    list_free(*(char ***)p);
    *(char ***)p = list;
    return 0;
  }
  case CONF_DICTS:
    return set_dicts((fcfs_conf_dicts_t *)p, k, v, from, err, errlen);
  case CONF_BOOL:
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "on") == 0)
      *(int *)p = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "off") == 0)
      *(int *)p = 0;
    else
      return fail(err, errlen, "%s: %s must be true or false, got \"%s\"", from, k->name, v);
    return 0;
  case CONF_INT:
  case CONF_NUM: {
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(d))
      return fail(err, errlen, "%s: %s must be a number, got \"%s\"", from, k->name, v);
    if (k->type == CONF_INT && d != (double)(long long)d)
      return fail(err, errlen, "%s: %s must be an integer, got \"%s\"", from, k->name, v);
    if (d < k->min || d > k->max)
      return fail(err, errlen, "%s: %s must be between %g and %g, got %s", from, k->name, k->min,
                  k->max, v);
    if (k->type == CONF_INT)
      *(int *)p = (int)d;
    else
      memcpy(p, &d, sizeof(d));
    return 0;
  }
  }
  return fail(err, errlen, "%s: %s: bad type", from, k->name);
}

/* The text form of the name = size table at the top of L, into buf. */
static int dicts_text(lua_State *L, const char *file, const char *key, char *buf, size_t len,
                      char *err, size_t errlen) {
  size_t n = 0;
  buf[0] = '\0';
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    int tv = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING || (tv != LUA_TSTRING && tv != LUA_TNUMBER)) {
      lua_pop(L, 2);
      return fail(err, errlen, "%s: %s must map names to sizes, e.g. { limits = \"4m\" }", file,
                  key);
    }
    char num[32];
    const char *v = lua_tostring(L, -1);
    if (tv == LUA_TNUMBER) {
      snprintf(num, sizeof(num), "%.17g", lua_tonumber(L, -1));
      v = num;
    }
    int w = snprintf(buf + n, len - n, "%s%s=%s", n ? "," : "", lua_tostring(L, -2), v);
    if (w < 0 || (size_t)w >= len - n) {
      lua_pop(L, 2);
      return fail(err, errlen, "%s: %s is too long", file, key);
    }
    n += (size_t)w;
    lua_pop(L, 1);
  }
  return 0;
}

/* The array of strings on top of L as one comma-separated string, pushed. */
static int list_join(lua_State *L, const char *file, const char *name, char *err, size_t errlen) {
  int t = lua_gettop(L), n = (int)lua_objlen(L, t), count = 0, ok = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vt = lua_type(L, -1);
    ok &= vt == LUA_TNUMBER || (vt == LUA_TSTRING && strchr(lua_tostring(L, -1), ',') == NULL);
    count++;
    lua_pop(L, 1);
  }
  if (!ok || count != n)
    return fail(err, errlen, "%s: %s must be a list of strings without commas (or numbers)", file,
                name);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, ',');
    lua_rawgeti(L, t, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 0;
}

/* Read the table at the top of L into c. */
static int set_from_table(fcfs_conf_t *c, lua_State *L, const char *file, char *err,
                          size_t errlen) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    char text[64];
    const char *v;
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return fail(err, errlen, "%s: keys must be strings", file);
    }
    const char *name = lua_tostring(L, -2);
    if (strcmp(name, "app") == 0) {
      if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return fail(err, errlen, "%s: app must be a table", file);
      }
      lua_pop(L, 1);
      continue;
    }
    const conf_key_t *k = find_key(name);
    if (k == NULL) {
      fail(err, errlen, "%s: unknown key \"%s\"", file, name);
      lua_pop(L, 2);
      return -1;
    }
    int t = lua_type(L, -1);
    char table_text[4096];
    if (k->type == CONF_DICTS && t == LUA_TTABLE) {
      if (dicts_text(L, file, name, table_text, sizeof(table_text), err, errlen) != 0) {
        lua_pop(L, 2);
        return -1;
      }
      v = table_text;
    } else if (k->type == CONF_BOOL && t == LUA_TBOOLEAN) {
      v = lua_toboolean(L, -1) ? "true" : "false";
    } else if ((k->type == CONF_INT || k->type == CONF_NUM) && t == LUA_TNUMBER) {
      snprintf(text, sizeof(text), "%.17g", lua_tonumber(L, -1));
      v = text;
    } else if ((k->type == CONF_STR || k->type == CONF_LIST || k->type == CONF_DICTS) &&
               t == LUA_TSTRING) {
      v = lua_tostring(L, -1);
    } else if (k->type == CONF_LIST && t == LUA_TTABLE) {
      if (list_join(L, file, name, err, errlen) != 0) {
        lua_pop(L, 2);
        return -1;
      }
      lua_replace(L, -2); /* the joined text stands in for the table */
      v = lua_tostring(L, -1);
    } else {
      fail(err, errlen, "%s: %s has the wrong type (%s)", file, name, lua_typename(L, t));
      lua_pop(L, 2);
      return -1;
    }
    if (set_text(c, k, v, file, err, errlen) != 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Run the config chunk and leave its table on top of L. */
static int run_file(lua_State *L, const char *path, char *err, size_t errlen) {
  if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fail(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return fail(err, errlen, "%s: must return a table", path);
  }
  return 0;
}

/* "a.b.c.d[/n]" or "x::y[/n]" (no /n: one address) into out. */
static int parse_cidr(const char *s, fcfs_cidr_t *out) {
  char buf[INET6_ADDRSTRLEN];
  const char *slash = strchr(s, '/');
  size_t len = slash ? (size_t)(slash - s) : strlen(s);
  if (len >= sizeof(buf)) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET, buf, out->addr) == 1)
    out->family = AF_INET;
  else if (inet_pton(AF_INET6, buf, out->addr) == 1)
    out->family = AF_INET6;
  else
    return -1;
  int max = out->family == AF_INET ? 32 : 128;
  out->bits = max;
  if (slash) {
    char *end;
    errno = 0;
    long bits = strtol(slash + 1, &end, 10);
    if (!isdigit((unsigned char)slash[1]) || *end != '\0' || errno || bits < 0 || bits > max)
      return -1;
    out->bits = (int)bits;
  }
  for (int i = out->bits; i < max; i++) /* the network address: host bits cleared */
    out->addr[i / 8] &= (unsigned char)~(0x80 >> (i % 8));
  return 0;
}

int fcfs_conf_ip_port(const char *a, struct sockaddr_storage *out) {
  struct sockaddr_storage tmp;
  if (!out) out = &tmp;
  const char *colon = a ? strrchr(a, ':') : NULL;
  if (!colon || colon == a) return -1;
  char host[64];
  size_t hl = (size_t)(colon - a);
  int bracketed = a[0] == '[' && hl >= 2 && a[hl - 1] == ']';
  if (bracketed) {
    a++;
    hl -= 2;
  }
  if (hl >= sizeof host || (!bracketed && memchr(a, ':', hl))) return -1; /* IPv6: [addr]:port */
  memcpy(host, a, hl);
  host[hl] = 0;
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || port <= 0 || port > 65535) return -1;
  memset(out, 0, sizeof *out);
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    return 0;
  }
  return -1;
}

int fcfs_conf_trusted(const fcfs_conf_t *c, int family, const void *addr) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const unsigned char *a = addr;
  if (family == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0) {
    family = AF_INET;
    a += sizeof(mapped);
  }
  for (int i = 0; i < c->real_ip_ncidrs; i++) {
    const fcfs_cidr_t *n = &c->real_ip_cidrs[i];
    int whole = n->bits / 8, rest = n->bits % 8;
    if (n->family != family || memcmp(n->addr, a, (size_t)whole) != 0) continue;
    if (rest == 0 || ((a[whole] ^ n->addr[whole]) & (0xff00 >> rest)) == 0) return 1;
  }
  return 0;
}

/* admin_listen: "" (none), "unix:PATH", or IP:port with a loopback IP. */
static int check_admin_listen(const char *v, char *err, size_t errlen) {
  static const char want[] = "admin_listen must be \"unix:PATH\", a loopback IP:port "
                             "(127.x.x.x or [::1]) or \"\"";
  if (v[0] == '\0') return 0;
  if (strncmp(v, "unix:", 5) == 0) {
    if (v[5] == '\0' || strlen(v + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
      return fail(err, errlen, "%s, got \"%s\" (empty or too long a path)", want, v);
    return 0;
  }
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon = strrchr(v, ':');
  size_t hl = colon ? (size_t)(colon - v) : 0;
  int loopback = 0;
  if (colon && hl < sizeof(host) && atoi(colon + 1) > 0 && atoi(colon + 1) < 65536) {
    unsigned char a[16];
    if (v[0] == '[' && hl >= 2 && v[hl - 1] == ']') {
      memcpy(host, v + 1, hl - 2);
      host[hl - 2] = '\0';
      loopback = inet_pton(AF_INET6, host, a) == 1 && memcmp(a, &in6addr_loopback, 16) == 0;
    } else {
      memcpy(host, v, hl);
      host[hl] = '\0';
      loopback = inet_pton(AF_INET, host, a) == 1 && a[0] == 127;
    }
  }
  if (!loopback) return fail(err, errlen, "%s, got \"%s\"", want, v);
  return 0;
}

static int check(fcfs_conf_t *c, char *err, size_t errlen) {
  int ok = 0;
  for (int i = 0; log_levels[i]; i++)
    ok |= strcmp(log_levels[i], c->log_level) == 0;
  if (!ok)
    return fail(err, errlen,
                "log_level must be one of debug, info, notice, warn, error, got \"%s\"",
                c->log_level);
  if (strchr(c->listen, ':') == NULL)
    return fail(err, errlen, "listen must be host:port, got \"%s\"", c->listen);
  if (c->redis[0] == '\0') return fail(err, errlen, "redis must not be empty");
  for (char **p = c->redis_sentinels; *p; p++)
    if (fcfs_conf_ip_port(*p, NULL) != 0)
      return fail(err, errlen, "redis_sentinels: \"%s\" is not IP:port (an IP, never a name)", *p);
  if (c->redis_sentinels[0] && !c->redis_master_name[0])
    return fail(err, errlen, "redis_master_name must not be empty with redis_sentinels");
  if (check_admin_listen(c->admin_listen, err, errlen) != 0) return -1;
  if (fcfs_cpu_check(c->worker_cpu_affinity, err, errlen) != 0) return -1;
  int n = 0;
  while (c->real_ip_from[n])
    n++;
  if (n > 0 && (c->real_ip_cidrs = calloc((size_t)n, sizeof(fcfs_cidr_t))) == NULL)
    return fail(err, errlen, "out of memory");
  for (int i = 0; i < n; i++)
    if (parse_cidr(c->real_ip_from[i], &c->real_ip_cidrs[i]) != 0)
      return fail(err, errlen,
                  "real_ip_from: \"%s\" is not an IP address or CIDR (e.g. 10.0.0.0/8)",
                  c->real_ip_from[i]);
  c->real_ip_ncidrs = n;
  unsigned char ip[16];
  if (inet_pton(AF_INET, c->mysql_host, ip) != 1 && inet_pton(AF_INET6, c->mysql_host, ip) != 1)
    return fail(err, errlen,
                "mysql_host must be an IP address (a name would block the loop on DNS), got \"%s\"",
                c->mysql_host);
  if (strcmp(c->client_abort, "finish") != 0 && strcmp(c->client_abort, "cancel") != 0)
    return fail(err, errlen, "client_abort must be \"finish\" or \"cancel\", got \"%s\"",
                c->client_abort);
  return 0;
}

static int derive(fcfs_conf_t *c, char *err, size_t errlen) {
  char buf[4096];
  if (c->workers < 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
  }
  if (c->pid_file[0] == '\0') {
    snprintf(buf, sizeof(buf), "%s/fcfs.pid", c->run_dir);
    free(c->pid_file);
    if ((c->pid_file = strdup(buf)) == NULL) return fail(err, errlen, "out of memory");
  }
  if (c->error_log[0] == '\0') {
    snprintf(buf, sizeof(buf), "%s/error.log", c->run_dir);
    free(c->error_log);
    if ((c->error_log = strdup(buf)) == NULL) return fail(err, errlen, "out of memory");
  }
  if (c->node_id[0] == '\0') {
    if (gethostname(buf, sizeof(buf)) != 0) snprintf(buf, sizeof(buf), "localhost");
    buf[sizeof(buf) - 1] = '\0';
    free(c->node_id);
    if ((c->node_id = strdup(buf)) == NULL) return fail(err, errlen, "out of memory");
  }
  if (c->access_log[0] == '\0') {
    snprintf(buf, sizeof(buf), "%s/access.log", c->run_dir);
    free(c->access_log);
    if ((c->access_log = strdup(buf)) == NULL) return fail(err, errlen, "out of memory");
  }
  return 0;
}

int fcfs_conf_load(fcfs_conf_t *c, const char *path, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  c->workers = -1;
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    if (keys[i].def[0] == '\0' && keys[i].type != CONF_STR && keys[i].type != CONF_LIST) continue;
    if (set_text(c, &keys[i], keys[i].def, "default", err, errlen) != 0) goto fail;
  }
  char abs[PATH_MAX];
  if (path != NULL && realpath(path, abs) == NULL) {
    fail(err, errlen, "%s: %s", path, strerror(errno));
    goto fail;
  }
  if ((c->conf_file = strdup(path ? abs : "")) == NULL) goto fail;
  if (path != NULL) {
    lua_State *L = luaL_newstate();
    if (L == NULL) {
      fail(err, errlen, "out of memory");
      goto fail;
    }
    luaL_openlibs(L);
    int rc = run_file(L, path, err, errlen);
    if (rc == 0) rc = set_from_table(c, L, path, err, errlen);
    lua_close(L);
    if (rc != 0) goto fail;
  }
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    char env[128];
    size_t n = snprintf(env, sizeof(env), "FCFS_%s", keys[i].name);
    for (size_t j = 5; j < n; j++)
      env[j] = (char)toupper((unsigned char)env[j]);
    const char *v = getenv(env);
    if (v != NULL && set_text(c, &keys[i], v, env, err, errlen) != 0) goto fail;
  }
  if (derive(c, err, errlen) != 0 || check(c, err, errlen) != 0) goto fail;
  return 0;
fail:
  fcfs_conf_free(c);
  return -1;
}

void fcfs_conf_free(fcfs_conf_t *c) {
  free(c->conf_file);
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (keys[i].type == CONF_STR) {
      char **p = (char **)((char *)c + keys[i].offset);
      free(*p);
      *p = NULL;
    } else if (keys[i].type == CONF_LIST) {
      char ***p = (char ***)((char *)c + keys[i].offset);
      list_free(*p);
      *p = NULL;
    }
  free(c->real_ip_cidrs);
  c->real_ip_cidrs = NULL;
  c->real_ip_ncidrs = 0;
  c->conf_file = NULL;
}

/* host.config: a proxy table whose __index is the real data and whose
 * __newindex refuses writes. */
static int conf_readonly(lua_State *L) {
  return luaL_error(L, "host.config is read-only");
}

void fcfs_conf_push(lua_State *L, const fcfs_conf_t *c) {
  lua_newtable(L); /* proxy */
  lua_newtable(L); /* metatable */
  lua_newtable(L); /* data */
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    const char *p = (const char *)c + keys[i].offset;
    if (strcmp(keys[i].name, "mysql_password") == 0 || strcmp(keys[i].name, "redis_password") == 0)
      continue; /* never handed to handlers */
    switch (keys[i].type) {
    case CONF_STR:
      lua_pushstring(L, *(char *const *)p);
      break;
    case CONF_INT:
      lua_pushinteger(L, *(const int *)p);
      break;
    case CONF_NUM: {
      double d;
      memcpy(&d, p, sizeof(d));
      lua_pushnumber(L, d);
      break;
    }
    case CONF_BOOL:
      lua_pushboolean(L, *(const int *)p);
      break;
    case CONF_LIST: {
      char *const *list = *(char **const *)p;
      lua_newtable(L);
      for (int j = 0; list[j]; j++) {
        lua_pushstring(L, list[j]);
        lua_rawseti(L, -2, j + 1);
      }
      break;
    }
    case CONF_DICTS: {
      const fcfs_conf_dicts_t *ds = (const fcfs_conf_dicts_t *)p;
      lua_createtable(L, 0, ds->n);
      for (int j = 0; j < ds->n; j++) {
        lua_pushnumber(L, (double)ds->d[j].bytes);
        lua_setfield(L, -2, ds->d[j].name);
      }
      break;
    }
    }
    lua_setfield(L, -2, keys[i].name);
  }
  /* The app table comes from the file itself, read again here in L. */
  char err[256];
  if (c->conf_file[0] != '\0' && run_file(L, c->conf_file, err, sizeof(err)) == 0) {
    lua_getfield(L, -1, "app");
    lua_remove(L, -2);
  } else {
    lua_newtable(L);
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_setfield(L, -2, "app");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, conf_readonly);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}
