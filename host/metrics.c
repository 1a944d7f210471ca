/* metrics.c -- request counters and the /metrics text.
 *
 * Recording is on the hot path: a request adds to its worker's slot in
 * shared memory (shm.h), with no lock and no allocation: a route/status pair
 * is found by open addressing in a fixed table; when the table is full the
 * request is counted in routes_overflow instead. Rendering walks every live
 * worker slot, sums the counters and writes Prometheus text format 0.0.4
 * into one malloc'ed buffer owned by the caller.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_bounds[FCFS_LAT_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static uint32_t hash_route(const char *s, int status) {
  uint32_t h = 2166136261u ^ (uint32_t)status;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

void fcfs_metrics_request(fcfs_worker_slot_t *s, const char *route, int status, double seconds) {
  s->requests++;
  int b = 0;
  while (b < FCFS_LAT_BUCKETS - 1 && seconds > lat_bounds[b])
    b++;
  s->lat_buckets[b]++;
  s->lat_count++;
  s->lat_sum += seconds;
  uint32_t h = hash_route(route, status);
  for (int i = 0; i < FCFS_ROUTE_SLOTS; i++) {
    fcfs_route_stat_t *r = &s->routes[(h + (uint32_t)i) % FCFS_ROUTE_SLOTS];
    if (!r->used) {
      snprintf(r->route, sizeof(r->route), "%s", route);
      r->status = (uint32_t)status;
      r->count = 1;
      r->used = 1;
      return;
    }
    if (r->status == (uint32_t)status && strncmp(r->route, route, sizeof(r->route) - 1) == 0) {
      r->count++;
      return;
    }
  }
  s->routes_overflow++;
}

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

char *fcfs_metrics_render(const fcfs_shm_t *shm, size_t *len) {
  buf_t b = {malloc(16384), 0, 16384, 0};
  if (b.p == NULL) return NULL;

  out(&b, "# HELP fcfs_requests_total Requests answered, by route pattern and status.\n"
          "# TYPE fcfs_requests_total counter\n");
  /* Merge route/status pairs across workers: small tables, quadratic is fine. */
  for (int i = 0; i < FCFS_MAX_WORKERS; i++) {
    if (!live(shm, i)) continue;
    for (int r = 0; r < FCFS_ROUTE_SLOTS; r++) {
      const fcfs_route_stat_t *rs = &shm->w[i].routes[r];
      if (!rs->used) continue;
      int seen = 0;
      for (int j = 0; j < i && !seen; j++) {
        if (!live(shm, j)) continue;
        for (int k = 0; k < FCFS_ROUTE_SLOTS && !seen; k++) {
          const fcfs_route_stat_t *o = &shm->w[j].routes[k];
          seen = o->used && o->status == rs->status && strcmp(o->route, rs->route) == 0;
        }
      }
      if (seen) continue;
      uint64_t total = 0;
      for (int j = i; j < FCFS_MAX_WORKERS; j++) {
        if (!live(shm, j)) continue;
        for (int k = 0; k < FCFS_ROUTE_SLOTS; k++) {
          const fcfs_route_stat_t *o = &shm->w[j].routes[k];
          if (o->used && o->status == rs->status && strcmp(o->route, rs->route) == 0)
            total += o->count;
        }
      }
      out(&b, "fcfs_requests_total{route=\"");
      out_label(&b, rs->route);
      out(&b, "\",status=\"%u\"} %llu\n", rs->status, (unsigned long long)total);
    }
  }
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
  pool_metrics(&b, shm, "mysql", offsetof(fcfs_worker_slot_t, mysql));
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}
