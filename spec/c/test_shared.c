/* test_shared.c -- unit tests of the shared dictionaries' C core
 * (host/shared.c): values of every type, add/incr/delete/ttl semantics,
 * lazy expiry, LRU eviction, values spanning many chunks, exact counts
 * under concurrent incr from several processes, and a process killed with
 * SIGKILL in the middle of operations not wedging the others (robust
 * mutex). The dictionaries live in an anonymous shared mapping, as the shm
 * segment is, so forked children share them. Prints TAP.
 */
#include "shared.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#define EXPECT_ERR(got, want)                                                                      \
  do {                                                                                             \
    const char *g_ = (got), *w_ = (want);                                                          \
    if (!(g_ == w_ || (g_ && w_ && strcmp(g_, w_) == 0))) {                                        \
      case_failed = 1;                                                                             \
      printf("# %s:%d: got %s, want %s\n", __FILE__, __LINE__, g_ ? g_ : "ok", w_ ? w_ : "ok");    \
    }                                                                                              \
  } while (0)

/* A fresh region with one dictionary "t" of the given size. */
static void *region;
static size_t region_len;

static fcfs_shared_dict_t *fresh(size_t bytes) {
  if (region) munmap(region, region_len);
  fcfs_conf_dicts_t ds;
  memset(&ds, 0, sizeof(ds));
  ds.n = 1;
  snprintf(ds.d[0].name, sizeof(ds.d[0].name), "t");
  ds.d[0].bytes = bytes;
  region_len = fcfs_shared_region_size(&ds);
  region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED || fcfs_shared_region_init(region, region_len, &ds) != 0) abort();
  return fcfs_shared_find(region, "t", 1);
}

static fcfs_shared_value_t str(const char *s) {
  fcfs_shared_value_t v = {FCFS_SHARED_STRING, 0, s, strlen(s)};
  return v;
}

static fcfs_shared_value_t num(double n) {
  fcfs_shared_value_t v = {FCFS_SHARED_NUMBER, n, NULL, 0};
  return v;
}

static const char *set(fcfs_shared_dict_t *d, const char *k, fcfs_shared_value_t v, double ttl) {
  return fcfs_shared_set(d, k, strlen(k), &v, ttl, 0, NULL);
}

/* get as a type and, for strings, the text (in a static buffer). */
static char got_buf[65536];
static fcfs_shared_value_t get(fcfs_shared_dict_t *d, const char *k) {
  fcfs_shared_value_t v;
  const char *err = fcfs_shared_get(d, k, strlen(k), &v, got_buf, sizeof(got_buf) - 1);
  if (err) v.type = -1;
  if (v.type == FCFS_SHARED_STRING && v.str) got_buf[v.len] = '\0';
  return v;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static void test_layout(void) {
  fcfs_conf_dicts_t ds;
  memset(&ds, 0, sizeof(ds));
  EXPECT(fcfs_shared_region_size(&ds) == 0);
  EXPECT(fcfs_shared_at(NULL, 0) == NULL);
  fcfs_shared_dict_t *d = fresh(1 << 20);
  EXPECT(d != NULL);
  EXPECT(fcfs_shared_find(region, "x", 1) == NULL);
  EXPECT(fcfs_shared_at(region, 0) == d);
  EXPECT(fcfs_shared_at(region, 1) == NULL);
  EXPECT(strcmp(fcfs_shared_name(d), "t") == 0);
  fcfs_shared_stats_t st;
  fcfs_shared_stats(d, &st);
  EXPECT(st.capacity_bytes > (1 << 20) * 9 / 10 && st.capacity_bytes < (1 << 20));
  EXPECT(st.used_bytes == 0 && st.entries == 0);
}

/* shared_dicts from the environment (the text form a config table becomes). */
static const char *load_dicts(const char *text, fcfs_conf_t *c, char *err, size_t errlen) {
  setenv("FCFS_SHARED_DICTS", text, 1);
  int rc = fcfs_conf_load(c, NULL, err, errlen);
  unsetenv("FCFS_SHARED_DICTS");
  return rc == 0 ? NULL : err;
}

static void test_conf(void) {
  fcfs_conf_t c;
  char err[512];
  EXPECT(load_dicts("revoked=8m,limits=4096K,b=20000", &c, err, sizeof(err)) == NULL);
  EXPECT(c.shared_dicts.n == 3);
  EXPECT_STR(c.shared_dicts.d[0].name, "b");
  EXPECT(c.shared_dicts.d[0].bytes == 20000);
  EXPECT_STR(c.shared_dicts.d[1].name, "limits");
  EXPECT(c.shared_dicts.d[1].bytes == 4 << 20);
  EXPECT_STR(c.shared_dicts.d[2].name, "revoked");
  EXPECT(c.shared_dicts.d[2].bytes == 8 << 20);
  EXPECT(c.node_id[0] != '\0'); /* the hostname */
  fcfs_conf_free(&c);
  EXPECT(load_dicts("", &c, err, sizeof(err)) == NULL && c.shared_dicts.n == 0);
  fcfs_conf_free(&c);
  const char *bad[] = {"a=8x", "a=1k", "a=2g", "a", "=8m", "1a=8m", "a=8m,a=4m", "a-b=8m", NULL};
  for (int i = 0; bad[i]; i++) {
    const char *e = load_dicts(bad[i], &c, err, sizeof(err));
    EXPECT(e != NULL && strstr(e, "shared_dicts") != NULL);
    if (e == NULL) fcfs_conf_free(&c);
  }
}

static void test_types(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  EXPECT(get(d, "a").type == FCFS_SHARED_NIL);
  EXPECT_ERR(set(d, "a", str("hello"), 0), NULL);
  fcfs_shared_value_t v = get(d, "a");
  EXPECT(v.type == FCFS_SHARED_STRING && strcmp(got_buf, "hello") == 0);
  EXPECT_ERR(set(d, "a", num(-2.5), 0), NULL);
  v = get(d, "a");
  EXPECT(v.type == FCFS_SHARED_NUMBER && v.num == -2.5);
  fcfs_shared_value_t b = {FCFS_SHARED_BOOLEAN, 1, NULL, 0};
  EXPECT_ERR(fcfs_shared_set(d, "a", 1, &b, 0, 0, NULL), NULL);
  v = get(d, "a");
  EXPECT(v.type == FCFS_SHARED_BOOLEAN && v.num == 1);
  EXPECT_ERR(set(d, "e", str(""), 0), NULL);
  v = get(d, "e");
  EXPECT(v.type == FCFS_SHARED_STRING && v.len == 0);
  /* binary-safe keys and values */
  fcfs_shared_value_t bin = {FCFS_SHARED_STRING, 0, "x\0y", 3};
  EXPECT_ERR(fcfs_shared_set(d, "k\0z", 3, &bin, 0, 0, NULL), NULL);
  EXPECT(get(d, "k").type == FCFS_SHARED_NIL);
  EXPECT_ERR(fcfs_shared_get(d, "k\0z", 3, &v, got_buf, sizeof(got_buf)), NULL);
  EXPECT(v.len == 3 && memcmp(got_buf, "x\0y", 3) == 0);
  /* a nil value deletes */
  fcfs_shared_value_t nil = {FCFS_SHARED_NIL, 0, NULL, 0};
  EXPECT_ERR(fcfs_shared_set(d, "a", 1, &nil, 0, 0, NULL), NULL);
  EXPECT(get(d, "a").type == FCFS_SHARED_NIL);
  fcfs_shared_stats_t st;
  fcfs_shared_stats(d, &st);
  EXPECT(st.entries == 2);
}

static void test_keys(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  char k[300];
  memset(k, 'k', sizeof(k));
  fcfs_shared_value_t v = str("v");
  EXPECT_ERR(fcfs_shared_set(d, k, 0, &v, 0, 0, NULL), "empty key");
  EXPECT_ERR(fcfs_shared_set(d, k, 251, &v, 0, 0, NULL), "key too long");
  EXPECT_ERR(fcfs_shared_set(d, k, 250, &v, 0, 0, NULL), NULL);
  EXPECT_ERR(fcfs_shared_get(d, k, 250, &v, got_buf, sizeof(got_buf)), NULL);
  EXPECT(v.type == FCFS_SHARED_STRING && v.len == 1 && got_buf[0] == 'v');
  /* keys differing in the last byte, in a long key spanning chunks */
  k[249] = 'j';
  EXPECT_ERR(fcfs_shared_get(d, k, 250, &v, got_buf, sizeof(got_buf)), NULL);
  EXPECT(v.type == FCFS_SHARED_NIL);
}

static void test_add_incr_delete(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  fcfs_shared_value_t v = num(1);
  EXPECT_ERR(fcfs_shared_set(d, "a", 1, &v, 0, 1, NULL), NULL);
  EXPECT_ERR(fcfs_shared_set(d, "a", 1, &v, 0, 1, NULL), "exists");
  double out = 0, init = 10;
  EXPECT_ERR(fcfs_shared_incr(d, "a", 1, 2, NULL, 0, &out), NULL);
  EXPECT(out == 3);
  EXPECT_ERR(fcfs_shared_incr(d, "a", 1, -0.5, NULL, 0, &out), NULL);
  EXPECT(out == 2.5);
  EXPECT_ERR(fcfs_shared_incr(d, "n", 1, 1, NULL, 0, &out), "not found");
  EXPECT_ERR(fcfs_shared_incr(d, "n", 1, 1, &init, 0, &out), NULL);
  EXPECT(out == 11);
  EXPECT_ERR(fcfs_shared_incr(d, "n", 1, 1, &init, 0, &out), NULL);
  EXPECT(out == 12);
  EXPECT_ERR(set(d, "s", str("x"), 0), NULL);
  EXPECT_ERR(fcfs_shared_incr(d, "s", 1, 1, &init, 0, &out), "not a number");
  EXPECT_ERR(fcfs_shared_delete(d, "s", 1), NULL);
  EXPECT_ERR(fcfs_shared_delete(d, "s", 1), "not found");
  EXPECT(get(d, "s").type == FCFS_SHARED_NIL);
  /* incr on a key whose value straddles two chunks */
  char k[40];
  memset(k, 'q', sizeof(k));
  for (int i = 0; i < 5; i++)
    EXPECT_ERR(fcfs_shared_incr(d, k, 26, 1, &init, 0, &out), NULL);
  EXPECT(out == 15);
}

static void test_ttl(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  double left = -1, out;
  EXPECT_ERR(set(d, "forever", str("x"), 0), NULL);
  EXPECT_ERR(fcfs_shared_ttl(d, "forever", 7, &left), NULL);
  EXPECT(left == 0);
  EXPECT_ERR(fcfs_shared_ttl(d, "none", 4, &left), "not found");
  EXPECT_ERR(set(d, "brief", num(1), 0.05), NULL);
  EXPECT_ERR(fcfs_shared_ttl(d, "brief", 5, &left), NULL);
  EXPECT(left > 0 && left <= 0.05);
  EXPECT(get(d, "brief").type == FCFS_SHARED_NUMBER);
  fcfs_shared_value_t v = num(1);
  EXPECT_ERR(fcfs_shared_set(d, "brief", 5, &v, 0, 1, NULL), "exists");
  sleep_ms(70);
  EXPECT(get(d, "brief").type == FCFS_SHARED_NIL);
  EXPECT_ERR(fcfs_shared_ttl(d, "brief", 5, &left), "not found");
  /* expired: add works, incr without init does not */
  EXPECT_ERR(set(d, "c", num(5), 0.02), NULL);
  sleep_ms(40);
  EXPECT_ERR(fcfs_shared_incr(d, "c", 1, 1, NULL, 0, &out), "not found");
  EXPECT_ERR(set(d, "c", num(5), 0.02), NULL);
  sleep_ms(40);
  EXPECT_ERR(fcfs_shared_set(d, "c", 1, &v, 0, 1, NULL), NULL);
  /* incr with init applies the ttl only on creation */
  double init = 0;
  EXPECT_ERR(fcfs_shared_incr(d, "w", 1, 1, &init, 0.05, &out), NULL);
  EXPECT_ERR(fcfs_shared_incr(d, "w", 1, 1, &init, 100, &out), NULL);
  EXPECT_ERR(fcfs_shared_ttl(d, "w", 1, &left), NULL);
  EXPECT(left > 0 && left <= 0.05);
  /* flush_expired removes exactly the expired ones */
  for (int i = 0; i < 10; i++) {
    char k[16];
    snprintf(k, sizeof(k), "f%d", i);
    EXPECT_ERR(set(d, k, num(i), i % 2 ? 0.01 : 0), NULL);
  }
  sleep_ms(60);
  EXPECT(fcfs_shared_flush_expired(d, 2) == 2);
  EXPECT(fcfs_shared_flush_expired(d, 0) == 4); /* 3 more f, and w */
  EXPECT(fcfs_shared_flush_expired(d, 0) == 0);
  EXPECT(get(d, "f0").type == FCFS_SHARED_NUMBER);
}

static void test_big_values(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  static char big[60000];
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)('a' + i % 26);
  fcfs_shared_value_t v = {FCFS_SHARED_STRING, 0, big, sizeof(big)};
  EXPECT_ERR(fcfs_shared_set(d, "big", 3, &v, 0, 0, NULL), NULL);
  fcfs_shared_value_t out;
  EXPECT_ERR(fcfs_shared_get(d, "big", 3, &out, got_buf, 100), NULL);
  EXPECT(out.type == FCFS_SHARED_STRING && out.len == sizeof(big) && out.str == NULL);
  EXPECT_ERR(fcfs_shared_get(d, "big", 3, &out, got_buf, sizeof(got_buf)), NULL);
  EXPECT(out.len == sizeof(big) && memcmp(got_buf, big, sizeof(big)) == 0);
  /* replaced by a small value: the chunks come back */
  fcfs_shared_stats_t st;
  fcfs_shared_stats(d, &st);
  EXPECT(st.used_bytes > sizeof(big));
  EXPECT_ERR(set(d, "big", str("small"), 0), NULL);
  fcfs_shared_stats(d, &st);
  EXPECT(st.used_bytes == 64);
  /* larger than the whole dictionary */
  d = fresh(16384);
  v.len = 20000;
  EXPECT_ERR(fcfs_shared_set(d, "big", 3, &v, 0, 0, NULL), "no memory");
}

static void test_lru(void) {
  fcfs_shared_dict_t *d = fresh(65536);
  fcfs_shared_stats_t st;
  fcfs_shared_stats(d, &st);
  int fit = (int)(st.capacity_bytes / 64); /* one chunk per entry below */
  char k[16];
  int evicted = 0;
  for (int i = 0; i < fit; i++) {
    snprintf(k, sizeof(k), "k%d", i);
    fcfs_shared_value_t v = num(i);
    EXPECT_ERR(fcfs_shared_set(d, k, strlen(k), &v, 0, 0, &evicted), NULL);
    EXPECT(evicted == 0);
    if (i == 10) EXPECT(get(d, "k0").type == FCFS_SHARED_NUMBER); /* k0 is now recent */
  }
  fcfs_shared_stats(d, &st);
  EXPECT(st.evictions == 0 && st.used_bytes == st.capacity_bytes && st.entries == (uint64_t)fit);
  for (int i = fit; i < fit + 5; i++) {
    snprintf(k, sizeof(k), "k%d", i);
    fcfs_shared_value_t v = num(i);
    EXPECT_ERR(fcfs_shared_set(d, k, strlen(k), &v, 0, 0, &evicted), NULL);
    EXPECT(evicted == 1);
  }
  fcfs_shared_stats(d, &st);
  EXPECT(st.evictions == 5);
  EXPECT(get(d, "k0").type == FCFS_SHARED_NUMBER); /* touched: survived */
  EXPECT(get(d, "k1").type == FCFS_SHARED_NIL);    /* the least recently used went */
  EXPECT(get(d, "k5").type == FCFS_SHARED_NIL);
  EXPECT(get(d, "k6").type == FCFS_SHARED_NUMBER);
  snprintf(k, sizeof(k), "k%d", fit + 4);
  EXPECT(get(d, k).type == FCFS_SHARED_NUMBER);
  /* a big value evicts as many as it needs */
  static char big[4000];
  memset(big, 'b', sizeof(big));
  fcfs_shared_value_t v = {FCFS_SHARED_STRING, 0, big, sizeof(big)};
  EXPECT_ERR(fcfs_shared_set(d, "big", 3, &v, 0, 0, &evicted), NULL);
  fcfs_shared_stats(d, &st);
  EXPECT(evicted == 1 && st.evictions > 5 + 60);
  fcfs_shared_value_t out;
  EXPECT_ERR(fcfs_shared_get(d, "big", 3, &out, got_buf, sizeof(got_buf)), NULL);
  EXPECT(out.len == sizeof(big) && memcmp(got_buf, big, sizeof(big)) == 0);
  /* expired entries make room without counting as evictions */
  d = fresh(65536);
  for (int i = 0; i < fit; i++) {
    snprintf(k, sizeof(k), "k%d", i);
    EXPECT_ERR(set(d, k, num(i), 0.01), NULL);
  }
  sleep_ms(30);
  EXPECT_ERR(set(d, "new", num(1), 0), NULL);
  fcfs_shared_stats(d, &st);
  EXPECT(st.evictions == 0);
}

/* Children hammering incr on one key: the total is exact. */
static void test_concurrent_incr(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  enum { KIDS = 4, N = 50000 };
  pid_t kids[KIDS];
  for (int i = 0; i < KIDS; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      double out, init = 0;
      for (int j = 0; j < N; j++) {
        char k[16];
        snprintf(k, sizeof(k), "other%d", j % 100);
        if (fcfs_shared_incr(d, "hits", 4, 1, &init, 0, &out) != NULL) _exit(1);
        if (set(d, k, num(j), 0) != NULL) _exit(1); /* churn the same structures */
      }
      _exit(0);
    }
  }
  int ok = 1;
  for (int i = 0; i < KIDS; i++) {
    int status;
    waitpid(kids[i], &status, 0);
    ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  EXPECT(ok);
  fcfs_shared_value_t v = get(d, "hits");
  EXPECT(v.type == FCFS_SHARED_NUMBER && v.num == KIDS * N);
}

/* A child killed with SIGKILL while it hammers the dictionary (mostly from
 * inside the lock) must not wedge the others: the next locker recovers the
 * mutex. Repeated until at least one kill landed while the lock was held. */
static void test_kill_holder(void) {
  fcfs_shared_dict_t *d = fresh(1 << 20);
  fcfs_shared_stats_t st;
  int rounds = 0;
  alarm(30); /* a wedged lock fails the test by SIGALRM instead of hanging ctest */
  do {
    pid_t kid = fork();
    if (kid == 0) {
      double out, init = 0;
      for (unsigned j = 0;; j++) {
        char k[16];
        snprintf(k, sizeof(k), "k%u", j % 5000);
        fcfs_shared_incr(d, "hits", 4, 1, &init, 0, &out);
        set(d, k, str("some value to copy"), 0);
      }
    }
    sleep_ms(2 + rounds % 7);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    double out, init = 0;
    EXPECT_ERR(fcfs_shared_incr(d, "probe", 5, 1, &init, 0, &out), NULL);
    fcfs_shared_stats(d, &st);
  } while (st.owner_deaths == 0 && ++rounds < 500);
  alarm(0);
  printf("# %d round(s), %llu owner death(s), %llu reset(s)\n", rounds + 1,
         (unsigned long long)st.owner_deaths, (unsigned long long)st.resets);
  EXPECT(st.owner_deaths >= 1);
  /* the dictionary works and is whole afterwards */
  double out = 0, init = 0;
  EXPECT_ERR(fcfs_shared_incr(d, "after", 5, 2, &init, 0, &out), NULL);
  EXPECT(out == 2);
  EXPECT(get(d, "after").num == 2);
  EXPECT(fcfs_shared_flush_expired(d, 0) == 0);
}

int main(void) {
  run("layout: directory, sizes, lookup by name", test_layout);
  run("config: shared_dicts sizes, order and refusals", test_conf);
  run("values: strings, numbers, booleans, binary, nil deletes", test_types);
  run("keys: empty, 250 bytes max, long keys compared whole", test_keys);
  run("add, incr, delete", test_add_incr_delete);
  run("ttl: lazy expiry, ttl(), add after expiry, flush_expired", test_ttl);
  run("big values across many chunks; too big for the dictionary", test_big_values);
  run("LRU eviction when full, counted; expired entries go first", test_lru);
  run("4 processes x 50,000 incr on one key: exact", test_concurrent_incr);
  run("a process killed holding the lock does not wedge the others", test_kill_holder);
  return tap_done();
}
