/* metrics.c -- request counters and the /metrics text.
 *
 * Recording is on the hot path: a request adds to its worker's slot in
 * shared memory (shm.h), with no lock and no allocation: a route/status pair
 * is found by open addressing in a fixed table; when the table is full the
 * request is counted in routes_overflow instead
 * (fcfs_requests_unlabelled_total). Rendering walks every live worker slot,
 * sums the counters and writes Prometheus text format 0.0.4 into one
 * malloc'ed buffer owned by the caller.
 *
 * App metrics (host.metrics, lapi_metrics.c) are claimed by name in a table
 * of the shm segment without a lock: a slot goes FREE -> CLAIMED by
 * compare-and-swap, gets its name, then its type; a declarer meeting a
 * CLAIMED slot waits for the type before comparing names, so two workers
 * declaring the same name at once get the same slot. Counters are one
 * double per node (compare-and-swap add); gauges one per worker, summed.
 * The shared dictionaries' counters (shared.c) and the stock gates
 * (stock.c, one series per gate: bounded by stock_slots) are rendered here
 * too.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared.h"
#include "stock.h"

static const double lat_bounds[FCFS_LAT_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static uint32_t hash_route(const char *s, int status) {
  uint32_t h = 2166136261u ^ (uint32_t)status;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

void fcfs_metrics_request(fcfs_worker_slot_t *s, const char *route, int status, double seconds,
                          uint32_t *last) {
  s->requests++;
  int b = 0;
  while (b < FCFS_LAT_BUCKETS - 1 && seconds > lat_bounds[b])
    b++;
  s->lat_buckets[b]++;
  s->lat_count++;
  s->lat_sum += seconds;
  fcfs_route_stat_t *r = &s->routes[*last % FCFS_ROUTE_SLOTS];
  if (r->used && r->status == (uint32_t)status &&
      strncmp(r->route, route, sizeof(r->route) - 1) == 0) { /* the last request's pair */
    r->count++;
    return;
  }
  uint32_t h = hash_route(route, status);
  for (int i = 0; i < FCFS_ROUTE_SLOTS; i++) {
    uint32_t slot = (h + (uint32_t)i) % FCFS_ROUTE_SLOTS;
    r = &s->routes[slot];
    if (!r->used) {
      snprintf(r->route, sizeof(r->route), "%s", route);
      r->status = (uint32_t)status;
      r->count = 1;
      r->used = 1;
      *last = slot;
      return;
    }
    if (r->status == (uint32_t)status && strncmp(r->route, route, sizeof(r->route) - 1) == 0) {
      r->count++;
      *last = slot;
      return;
    }
  }
  s->routes_overflow++;
}

/* ---- app metrics ------------------------------------------------------------------------ */

static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= FCFS_METRIC_NAME || strncmp(s, "fcfs_", 5) == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
             (i > 0 && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

int fcfs_metrics_declare(fcfs_shm_t *shm, const char *name, const char *help, int type,
                         const char **err) {
  if (!valid_name(name)) {
    *err = "bad name (Prometheus [a-zA-Z_:][a-zA-Z0-9_:]*, under 64 bytes, not fcfs_*)";
    return -1;
  }
  for (int i = 0; i < FCFS_APP_METRICS; i++) {
    fcfs_app_metric_t *m = &shm->app[i];
    uint32_t t = __atomic_load_n(&m->type, __ATOMIC_ACQUIRE);
    /* Claimed by someone writing its name: a few hundred ns; one that died
     * there leaves the slot unused for good, hence the bound. */
    for (long spin = 0; t == FCFS_METRIC_CLAIMED && spin < 10000000; spin++)
      t = __atomic_load_n(&m->type, __ATOMIC_ACQUIRE);
    if (t == FCFS_METRIC_FREE) {
      if (!__atomic_compare_exchange_n(&m->type, &t, FCFS_METRIC_CLAIMED, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE)) {
        i--; /* lost the race for this slot: look at it again */
        continue;
      }
      snprintf(m->name, sizeof(m->name), "%s", name);
      snprintf(m->help, sizeof(m->help), "%s", help);
      __atomic_store_n(&m->type, (uint32_t)type, __ATOMIC_RELEASE);
      return i;
    }
    if (t != FCFS_METRIC_CLAIMED && strcmp(m->name, name) == 0) {
      if (t == (uint32_t)type) return i;
      *err = t == FCFS_METRIC_COUNTER ? "already declared as a counter"
                                      : "already declared as a gauge";
      return -1;
    }
  }
  *err = "too many metrics";
  return -1;
}

static double bits_double(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof(d));
  return d;
}

void fcfs_metrics_counter_add(fcfs_app_metric_t *m, double n) {
  uint64_t old = __atomic_load_n(&m->counter_bits, __ATOMIC_RELAXED), next;
  do {
    double v = bits_double(old) + n;
    memcpy(&next, &v, sizeof(next));
  } while (!__atomic_compare_exchange_n(&m->counter_bits, &old, next, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
}

/* ---- rendering --------------------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} buf_t;

static void out(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(buf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

/* Route labels come from route patterns; escape what Prometheus needs. */
static void out_label(buf_t *b, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      out(b, "\\%c", *s);
    else if (*s == '\n')
      out(b, "\\n");
    else
      out(b, "%c", *s);
  }
}

static int route_cmp(const void *a, const void *b) {
  const fcfs_route_stat_t *x = *(const fcfs_route_stat_t *const *)a;
  const fcfs_route_stat_t *y = *(const fcfs_route_stat_t *const *)b;
  int c = strncmp(x->route, y->route, sizeof(x->route));
  return c ? c : (x->status > y->status) - (x->status < y->status);
}

/* HELP text escapes backslash and newline. */
static void out_help(buf_t *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\')
      out(b, "\\\\");
    else if (*s == '\n')
      out(b, "\\n");
    else
      out(b, "%c", *s);
  }
}

static int live(const fcfs_shm_t *shm, int i) {
  return shm->w[i].pid != 0;
}

#define SUM(expr)                                                                                  \
  ({                                                                                               \
    uint64_t s_ = 0;                                                                               \
    for (int i_ = 0; i_ < FCFS_MAX_WORKERS; i_++)                                                  \
      if (live(shm, i_)) {                                                                         \
        const fcfs_worker_slot_t *w = &shm->w[i_];                                                 \
        (void)w;                                                                                   \
        s_ += (expr);                                                                              \
      }                                                                                            \
    s_;                                                                                            \
  })

static void pool_metrics(buf_t *b, const fcfs_shm_t *shm, const char *name, size_t off) {
#define P(field) SUM(((const fcfs_pool_stats_t *)((const char *)w + off))->field)
  out(b, "fcfs_pool_connections{backend=\"%s\"} %llu\n", name, (unsigned long long)P(size));
  out(b, "fcfs_pool_in_use{backend=\"%s\"} %llu\n", name, (unsigned long long)P(in_use));
  out(b, "fcfs_pool_waiting{backend=\"%s\"} %llu\n", name, (unsigned long long)P(waiting));
  out(b, "fcfs_pool_waits_total{backend=\"%s\"} %llu\n", name, (unsigned long long)P(waits));
  out(b, "fcfs_pool_timeouts_total{backend=\"%s\"} %llu\n", name, (unsigned long long)P(timeouts));
  out(b, "fcfs_pool_errors_total{backend=\"%s\"} %llu\n", name, (unsigned long long)P(errors));
  out(b, "fcfs_pool_requests_total{backend=\"%s\"} %llu\n", name, (unsigned long long)P(requests));
  out(b, "fcfs_pool_connects_total{backend=\"%s\"} %llu\n", name, (unsigned long long)P(connects));
  out(b, "fcfs_pool_half_open_probes_total{backend=\"%s\"} %llu\n", name,
      (unsigned long long)P(probes));
  out(b, "fcfs_pool_up{backend=\"%s\"} %llu\n", name, (unsigned long long)(P(up) > 0));
  for (int i = 0; i < FCFS_MAX_WORKERS; i++)
    if (live(shm, i)) {
      const fcfs_pool_stats_t *ps = (const fcfs_pool_stats_t *)((const char *)&shm->w[i] + off);
      out(b, "fcfs_circuit_state{backend=\"%s\",worker=\"%d\"} %llu\n", name, i,
          (unsigned long long)ps->circuit);
    }
#undef P
}

static void shared_metrics(buf_t *b, const fcfs_shm_t *shm) {
  static const struct {
    const char *name, *type, *help;
    size_t off;
  } rows[] = {
      {"fcfs_shared_capacity_bytes", "gauge", "Bytes a shared dictionary can hold.",
       offsetof(fcfs_shared_stats_t, capacity_bytes)},
      {"fcfs_shared_used_bytes", "gauge", "Bytes in use by its entries.",
       offsetof(fcfs_shared_stats_t, used_bytes)},
      {"fcfs_shared_entries", "gauge", "Entries (expired ones until they are met).",
       offsetof(fcfs_shared_stats_t, entries)},
      {"fcfs_shared_evictions_total", "counter",
       "Unexpired entries evicted (least recently used) to make room.",
       offsetof(fcfs_shared_stats_t, evictions)},
      {"fcfs_shared_owner_deaths_total", "counter",
       "Times a process found the dictionary's lock held by a dead process (and recovered it).",
       offsetof(fcfs_shared_stats_t, owner_deaths)},
      {"fcfs_shared_resets_total", "counter",
       "Times a dictionary was emptied because a process died in the middle of changing it.",
       offsetof(fcfs_shared_stats_t, resets)},
  };
  void *region = fcfs_shm_dicts(shm);
  if (fcfs_shared_at(region, 0) == NULL) return;
  for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
    out(b, "# HELP %s %s\n# TYPE %s %s\n", rows[r].name, rows[r].help, rows[r].name, rows[r].type);
    fcfs_shared_dict_t *d;
    for (int i = 0; (d = fcfs_shared_at(region, i)) != NULL; i++) {
      fcfs_shared_stats_t st;
      fcfs_shared_stats(d, &st);
      uint64_t v;
      memcpy(&v, (const char *)&st + rows[r].off, sizeof(v));
      out(b, "%s{dict=\"%s\"} %llu\n", rows[r].name, fcfs_shared_name(d), (unsigned long long)v);
    }
  }
}

static void stock_metrics(buf_t *b, const fcfs_shm_t *shm) {
  static const struct {
    const char *name, *help;
  } rows[] = {
      {"fcfs_stock_remaining", "Last known remaining units of a product with a stock gate."},
      {"fcfs_stock_paused", "1 while sales of the product are paused."},
      {"fcfs_stock_version", "Version of the gate's last applied update."},
  };
  void *gate = fcfs_shm_stock(shm);
  uint32_t used, capacity, n = fcfs_stock_slots(gate);
  uint64_t deaths;
  fcfs_stock_usage(gate, &used, &capacity, &deaths);
  out(b,
      "# HELP fcfs_stock_gates Products with a stock gate.\n# TYPE fcfs_stock_gates gauge\n"
      "fcfs_stock_gates %u\n",
      used);
  out(b,
      "# HELP fcfs_stock_gates_capacity Products that can have a gate at once (stock_slots).\n"
      "# TYPE fcfs_stock_gates_capacity gauge\nfcfs_stock_gates_capacity %u\n",
      capacity);
  for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
    out(b, "# HELP %s %s\n# TYPE %s gauge\n", rows[r].name, rows[r].help, rows[r].name);
    for (uint32_t i = 0; i < n; i++) {
      int64_t id, remaining;
      uint64_t version;
      int paused;
      if (fcfs_stock_at(gate, i, &id, &remaining, &version, &paused, NULL) != 1) continue;
      long long v = r == 0 ? (long long)remaining : r == 1 ? paused : (long long)version;
      out(b, "%s{product=\"%lld\"} %lld\n", rows[r].name, (long long)id, v);
    }
  }
}

static void app_metrics(buf_t *b, const fcfs_shm_t *shm) {
  for (int i = 0; i < FCFS_APP_METRICS; i++) {
    const fcfs_app_metric_t *m = &shm->app[i];
    uint32_t t = __atomic_load_n(&m->type, __ATOMIC_ACQUIRE);
    if (t != FCFS_METRIC_COUNTER && t != FCFS_METRIC_GAUGE) continue;
    double v = 0;
    if (t == FCFS_METRIC_COUNTER)
      v = bits_double(__atomic_load_n(&m->counter_bits, __ATOMIC_RELAXED));
    else
      for (int w = 0; w < FCFS_MAX_WORKERS; w++)
        if (live(shm, w)) v += shm->w[w].app_gauges[i];
    if (m->help[0]) {
      out(b, "# HELP %s ", m->name);
      out_help(b, m->help);
      out(b, "\n");
    }
    out(b, "# TYPE %s %s\n%s %.17g\n", m->name, t == FCFS_METRIC_COUNTER ? "counter" : "gauge",
        m->name, v);
  }
}

char *fcfs_metrics_render(const fcfs_shm_t *shm, size_t *len) {
  buf_t b = {malloc(16384), 0, 16384, 0};
  if (b.p == NULL) return NULL;

  out(&b, "# HELP fcfs_requests_total Requests answered, by route pattern and status.\n"
          "# TYPE fcfs_requests_total counter\n");
  /* Merge route/status pairs across workers: sort them all, sum runs. Room
   * for the workers live now (one more may start meanwhile: bounded). */
  size_t n = 0, cap = FCFS_ROUTE_SLOTS * (SUM(1) + 1);
  const fcfs_route_stat_t **rs = malloc(sizeof(*rs) * cap);
  if (rs == NULL) {
    free(b.p);
    return NULL;
  }
  for (int i = 0; i < FCFS_MAX_WORKERS; i++)
    for (int r = 0; live(shm, i) && r < FCFS_ROUTE_SLOTS && n < cap; r++)
      if (shm->w[i].routes[r].used) rs[n++] = &shm->w[i].routes[r];
  qsort(rs, n, sizeof(*rs), route_cmp);
  for (size_t i = 0; i < n;) {
    uint64_t total = 0;
    size_t j = i;
    for (; j < n && route_cmp(&rs[i], &rs[j]) == 0; j++)
      total += rs[j]->count;
    out(&b, "fcfs_requests_total{route=\"");
    out_label(&b, rs[i]->route);
    out(&b, "\",status=\"%u\"} %llu\n", rs[i]->status, (unsigned long long)total);
    i = j;
  }
  free(rs);
  out(&b, "# HELP fcfs_requests_unlabelled_total Requests beyond the route x status table "
          "(FCFS_ROUTE_SLOTS per worker).\n# TYPE fcfs_requests_unlabelled_total counter\n");
  out(&b, "fcfs_requests_unlabelled_total %llu\n", (unsigned long long)SUM(w->routes_overflow));

  out(&b, "# HELP fcfs_request_duration_seconds Time from request parsed to response queued.\n"
          "# TYPE fcfs_request_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int k = 0; k < FCFS_LAT_BUCKETS; k++) {
    cum += SUM(w->lat_buckets[k]);
    if (k < FCFS_LAT_BUCKETS - 1)
      out(&b, "fcfs_request_duration_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[k],
          (unsigned long long)cum);
    else
      out(&b, "fcfs_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  }
  double sum = 0;
  for (int i = 0; i < FCFS_MAX_WORKERS; i++)
    if (live(shm, i)) sum += shm->w[i].lat_sum;
  out(&b, "fcfs_request_duration_seconds_sum %.6f\n", sum);
  out(&b, "fcfs_request_duration_seconds_count %llu\n", (unsigned long long)SUM(w->lat_count));

  out(&b, "# TYPE fcfs_requests_in_flight gauge\nfcfs_requests_in_flight %llu\n",
      (unsigned long long)SUM(w->in_flight));
  out(&b, "# TYPE fcfs_connections_open gauge\nfcfs_connections_open %llu\n",
      (unsigned long long)SUM(w->connections));
  out(&b, "# TYPE fcfs_reloads_total counter\nfcfs_reloads_total %llu\n",
      (unsigned long long)SUM(w->reloads));
  out(&b, "# TYPE fcfs_reload_failures_total counter\nfcfs_reload_failures_total %llu\n",
      (unsigned long long)SUM(w->reload_failures));
  out(&b, "# TYPE fcfs_worker_restarts_total counter\nfcfs_worker_restarts_total %llu\n",
      (unsigned long long)shm->worker_restarts);
  out(&b, "# TYPE fcfs_workers gauge\nfcfs_workers %llu\n", (unsigned long long)SUM(1));
  out(&b, "# TYPE fcfs_vm_generation gauge\n# TYPE fcfs_lua_memory_bytes gauge\n");
  for (int i = 0; i < FCFS_MAX_WORKERS; i++) {
    if (!live(shm, i)) continue;
    out(&b, "fcfs_vm_generation{worker=\"%d\"} %llu\n", i,
        (unsigned long long)shm->w[i].generation);
    out(&b, "fcfs_lua_memory_bytes{worker=\"%d\"} %llu\n", i,
        (unsigned long long)shm->w[i].lua_mem_bytes);
  }
  out(&b, "# TYPE fcfs_pool_connections gauge\n");
  pool_metrics(&b, shm, "redis", offsetof(fcfs_worker_slot_t, redis));
  out(&b, "# TYPE fcfs_redis_writes_total counter\nfcfs_redis_writes_total %llu\n",
      (unsigned long long)SUM(w->redis.writes));
  pool_metrics(&b, shm, "mysql", offsetof(fcfs_worker_slot_t, mysql));
  shared_metrics(&b, shm);
  stock_metrics(&b, shm);
  app_metrics(&b, shm);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}
