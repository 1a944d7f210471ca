/* test_stock.c -- unit tests of the stock gates' C core (host/stock.c):
 * get / sold_out semantics, monotonic versions, a full table refusing
 * without harm, forget + reinsert and slot reuse under churn, writers and
 * readers in several processes hammering gates (a reader never sees a torn
 * state, never a state of another product, never a version going back; the
 * newest version is never lost), and a writer killed with SIGKILL not
 * wedging the others. The table lives in an anonymous shared mapping, as
 * the shm segment is, so forked children share it. Prints TAP.
 */
#include "stock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

static void *table;
static size_t table_len;

static void *fresh(int slots) {
  if (table) munmap(table, table_len);
  table_len = fcfs_stock_region_size(slots);
  table = mmap(NULL, table_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (table == MAP_FAILED || fcfs_stock_region_init(table, table_len, slots) != 0) abort();
  return table;
}

static uint32_t used(void *g) {
  uint32_t u, cap;
  uint64_t deaths;
  fcfs_stock_usage(g, &u, &cap, &deaths);
  return u;
}

static int wait_all(pid_t *kids, int n) {
  int ok = 1;
  for (int i = 0; i < n; i++) {
    int status;
    waitpid(kids[i], &status, 0);
    ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

static void test_basics(void) {
  void *g = fresh(8);
  int64_t rem = 7;
  uint64_t ver = 7, age = 7;
  int paused = 7;
  EXPECT(fcfs_stock_get(g, 42, &rem, &ver, &paused, &age) == 0);
  EXPECT(rem == 7); /* untouched when absent */
  EXPECT(fcfs_stock_sold_out(g, 42) == 0);
  EXPECT(fcfs_stock_update(g, 42, 3, 10, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_get(g, 42, &rem, &ver, &paused, &age) == 1);
  EXPECT(rem == 3 && ver == 10 && paused == 0 && age < 1000);
  EXPECT(fcfs_stock_get(g, 42, NULL, NULL, NULL, NULL) == 1);
  EXPECT(fcfs_stock_sold_out(g, 42) == 0);
  EXPECT(fcfs_stock_update(g, 42, 0, 11, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_sold_out(g, 42) == 1);
  EXPECT(fcfs_stock_update(g, 42, -2, 12, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_sold_out(g, 42) == 1);
  EXPECT(fcfs_stock_update(g, 42, 0, 13, 1) == FCFS_STOCK_APPLIED); /* paused: not sold out */
  EXPECT(fcfs_stock_sold_out(g, 42) == 0);
  EXPECT(fcfs_stock_get(g, 42, &rem, &ver, &paused, NULL) == 1 && paused == 1);
  EXPECT(fcfs_stock_update(g, 0, 1, 1, 0) == FCFS_STOCK_BAD_ID);
  EXPECT(fcfs_stock_update(g, -5, 1, 1, 0) == FCFS_STOCK_BAD_ID);
  EXPECT(fcfs_stock_get(g, -1, &rem, NULL, NULL, NULL) == 0); /* -1 is the tombstone key */
  EXPECT(fcfs_stock_sold_out(g, 0) == 0);
  EXPECT(used(g) == 1);
}

static void test_versions(void) {
  void *g = fresh(8);
  int64_t rem;
  uint64_t ver;
  EXPECT(fcfs_stock_update(g, 1, 50, 5, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_update(g, 1, 40, 4, 0) == FCFS_STOCK_IGNORED);
  EXPECT(fcfs_stock_get(g, 1, &rem, &ver, NULL, NULL) == 1 && rem == 50 && ver == 5);
  EXPECT(fcfs_stock_update(g, 1, 49, 5, 0) == FCFS_STOCK_APPLIED); /* same version applies */
  EXPECT(fcfs_stock_get(g, 1, &rem, &ver, NULL, NULL) == 1 && rem == 49 && ver == 5);
  EXPECT(fcfs_stock_update(g, 1, 60, 9, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_update(g, 1, 1, 0, 0) == FCFS_STOCK_IGNORED);
  EXPECT(fcfs_stock_get(g, 1, &rem, &ver, NULL, NULL) == 1 && rem == 60 && ver == 9);
  /* versions are per gate */
  EXPECT(fcfs_stock_update(g, 2, 1, 1, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_get(g, 2, &rem, &ver, NULL, NULL) == 1 && rem == 1 && ver == 1);
}

static void test_full(void) {
  void *g = fresh(16);
  for (int64_t id = 1; id <= 16; id++)
    EXPECT(fcfs_stock_update(g, id * 1000003, id, (uint64_t)id, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_update(g, 99, 1, 1, 0) == FCFS_STOCK_FULL);
  EXPECT(fcfs_stock_update(g, 100, 1, 1, 0) == FCFS_STOCK_FULL);
  EXPECT(used(g) == 16);
  /* nothing harmed: every gate still reads back, and still updates */
  for (int64_t id = 1; id <= 16; id++) {
    int64_t rem;
    uint64_t ver;
    EXPECT(fcfs_stock_get(g, id * 1000003, &rem, &ver, NULL, NULL) == 1);
    EXPECT(rem == id && ver == (uint64_t)id);
    EXPECT(fcfs_stock_update(g, id * 1000003, id + 1, (uint64_t)id + 1, 0) == FCFS_STOCK_APPLIED);
  }
  EXPECT(fcfs_stock_get(g, 99, NULL, NULL, NULL, NULL) == 0);
  /* one forgotten makes room for one */
  EXPECT(fcfs_stock_forget(g, 5 * 1000003) == 1);
  EXPECT(fcfs_stock_update(g, 99, 1, 1, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_update(g, 100, 1, 1, 0) == FCFS_STOCK_FULL);
  /* list: exactly the live gates */
  int n = 0;
  for (uint32_t i = 0; i < fcfs_stock_slots(g); i++) {
    int64_t id, rem;
    uint64_t ver;
    int paused;
    if (fcfs_stock_at(g, i, &id, &rem, &ver, &paused, NULL) != 1) continue;
    n++;
    EXPECT(id != 5 * 1000003 && id != 100);
  }
  EXPECT(n == 16);
}

static void test_forget_reinsert(void) {
  void *g = fresh(8);
  int64_t rem;
  uint64_t ver;
  EXPECT(fcfs_stock_forget(g, 7) == 0);
  EXPECT(fcfs_stock_update(g, 7, 10, 100, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_forget(g, 7) == 1);
  EXPECT(fcfs_stock_forget(g, 7) == 0);
  EXPECT(fcfs_stock_get(g, 7, &rem, &ver, NULL, NULL) == 0);
  EXPECT(used(g) == 0);
  /* a new gate: its version starts over */
  EXPECT(fcfs_stock_update(g, 7, 3, 1, 0) == FCFS_STOCK_APPLIED);
  EXPECT(fcfs_stock_get(g, 7, &rem, &ver, NULL, NULL) == 1 && rem == 3 && ver == 1);
  /* churn: many ids through a small table, tombstones reused or cleared */
  int ok = 1;
  for (int64_t id = 100; id < 20100; id++) {
    ok &= fcfs_stock_update(g, id, id, 1, 0) == FCFS_STOCK_APPLIED;
    if (id >= 105) ok &= fcfs_stock_forget(g, id - 5) == 1;
  }
  EXPECT(ok);
  EXPECT(used(g) == 6); /* 7 and the last five */
  for (int64_t id = 20095; id < 20100; id++)
    EXPECT(fcfs_stock_get(g, id, &rem, NULL, NULL, NULL) == 1 && rem == id);
  EXPECT(fcfs_stock_get(g, 7, &rem, NULL, NULL, NULL) == 1 && rem == 3);
  EXPECT(fcfs_stock_get(g, 20094, &rem, NULL, NULL, NULL) == 0);
}

/* Two writers interleave versions of gate 42 (one the even, one the odd
 * ones, both rising), each state written as a pair remaining = K - version,
 * paused = version & 1. Readers check every read is such a pair and that
 * the version they see never goes back. At the end the newest version
 * written is the one stored. Meanwhile a churner reuses the other slots. */
enum { K = 1000000000, WRITES = 1000000 };

static void writer(void *g, uint64_t first) {
  for (uint64_t v = first; v < first + 2 * WRITES; v += 2)
    if (fcfs_stock_update(g, 42, K - (int64_t)v, v, (int)(v & 1)) < 0) _exit(1);
  _exit(0);
}

static void reader(void *g, int rounds) {
  uint64_t last = 0;
  for (int i = 0; i < rounds; i++) {
    int64_t rem;
    uint64_t ver;
    int paused;
    int rc = fcfs_stock_get(g, 42, &rem, &ver, &paused, NULL);
    if (rc == 0) continue; /* not written yet */
    if (rc != 1 || rem != K - (int64_t)ver || paused != (int)(ver & 1) || ver < last) _exit(1);
    last = ver;
    /* other products: never a state of another id */
    int64_t id = 1000 + i % 12;
    if (fcfs_stock_get(g, id, &rem, NULL, NULL, NULL) == 1 && rem / 1000 != id) _exit(2);
  }
  _exit(0);
}

static void churner(void *g) {
  for (int i = 0; i < WRITES; i++) {
    int64_t id = 1000 + i % 12;
    fcfs_stock_update(g, id, id * 1000 + i % 1000, (uint64_t)i, 0);
    fcfs_stock_forget(g, 1000 + (i + 6) % 12);
  }
  _exit(0);
}

static void test_concurrent(void) {
  void *g = fresh(8);
  pid_t kids[5];
  if ((kids[0] = fork()) == 0) writer(g, 2);
  if ((kids[1] = fork()) == 0) writer(g, 3);
  if ((kids[2] = fork()) == 0) reader(g, 2 * WRITES);
  if ((kids[3] = fork()) == 0) reader(g, 2 * WRITES);
  if ((kids[4] = fork()) == 0) churner(g);
  EXPECT(wait_all(kids, 5));
  int64_t rem;
  uint64_t ver;
  int paused;
  EXPECT(fcfs_stock_get(g, 42, &rem, &ver, &paused, NULL) == 1);
  EXPECT(ver == 3 + 2 * (WRITES - 1)); /* the newest one, written by the odd writer */
  EXPECT(rem == K - (int64_t)ver && paused == 1);
  EXPECT(used(g) <= 8);
}

static void sleep_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* A child killed while it hammers updates (mostly inside the lock) does not
 * wedge the others; the gate count is recounted. */
static void test_kill_writer(void) {
  void *g = fresh(64);
  uint32_t u, cap;
  uint64_t deaths = 0;
  int rounds = 0;
  alarm(30); /* a wedged lock fails by SIGALRM instead of hanging ctest */
  do {
    pid_t kid = fork();
    if (kid == 0)
      for (uint64_t v = 1;; v++) {
        fcfs_stock_update(g, (int64_t)(v % 40) + 1, 5, v, 0);
        fcfs_stock_forget(g, (int64_t)((v + 20) % 40) + 1);
      }
    sleep_ms(2 + rounds % 7);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    EXPECT(fcfs_stock_update(g, 1000, 1, (uint64_t)rounds, 0) == FCFS_STOCK_APPLIED);
    fcfs_stock_usage(g, &u, &cap, &deaths);
  } while (deaths == 0 && ++rounds < 500);
  alarm(0);
  printf("# %d round(s), %llu owner death(s)\n", rounds + 1, (unsigned long long)deaths);
  EXPECT(deaths >= 1);
  uint32_t live = 0;
  for (uint32_t i = 0; i < fcfs_stock_slots(g); i++) {
    int64_t id;
    live += fcfs_stock_at(g, i, &id, NULL, NULL, NULL, NULL) == 1;
  }
  EXPECT(used(g) == live);
}

int main(void) {
  run("get, sold_out, paused, bad ids", test_basics);
  run("versions: older ignored, same or newer applied", test_versions);
  run("full table: refused, nothing harmed, room after forget", test_full);
  run("forget + reinsert, churn through a small table", test_forget_reinsert);
  run("2 writers, 2 readers, a churner: no torn read, newest version kept", test_concurrent);
  run("a writer killed holding the lock does not wedge the table", test_kill_writer);
  return tap_done();
}
