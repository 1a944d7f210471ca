/* stock.c -- the stock gates: layout, lock-free reads, versioned updates
 * (see stock.h for the API).
 *
 * Layout. A header (capacity, the robust mutex of writers, the gate count)
 * then a power-of-two array of slots, at least twice stock_slots so probe
 * sequences stay short; open addressing with linear probing on a
 * multiplicative hash of the id. A slot's key is 0 (never used: probing
 * stops), TOMB (forgotten: probing goes on) or the id of its gate.
 *
 * Reads. Each slot holds two copies of the gate's state and a sequence
 * number; s[seq & 1] is the published one. An update (under the lock)
 * writes the other copy, then publishes it by incrementing seq. A reader
 * loads seq, copies s[seq & 1], and keeps the copy if seq has not moved
 * meanwhile -- it may have been overwritten only by the update after the
 * next one. So remaining, version, paused and the time are always read
 * together, a reader never waits for a writer (a writer preempted or killed
 * in the middle leaves the published copy intact), and a read costs a few
 * loads: no lock, no syscall, no retry unless an update is published during
 * it. The key is stored after the state it names, so a reader that sees
 * the key sees the state; the copy also carries the id, so a slot reused by
 * another product meanwhile is recognised.
 *
 * Updates. One process-shared robust mutex for the table, held for one
 * probe and one copy. A process killed holding it leaves at worst an
 * unpublished copy (rewritten by the next update) or a stale gate count,
 * which the next locker recounts. forget() turns a tombstone followed by a
 * never-used slot back into never-used (and the tombstones before it), so
 * removals do not lengthen probes forever; no live key lies beyond a
 * never-used slot on its probe sequence, so lock-free readers stay right.
 *
 * Ownership: nothing here owns memory; the table belongs to the shm segment
 * (shm.c) and lives as long as the processes that map it.
 */
#include "stock.h"

#include <pthread.h>

#include "shm_sync.h"

#define TABLE_MAGIC 0x6663667373746b31ull /* "fcfsstk1" */
#define TOMB (-1)
#define PAGE 4096
#define READ_TRIES 1000 /* updates published during one read before giving up */

typedef struct {
  int64_t id, remaining;
  uint64_t version, updated_ms;
  uint32_t paused, pad;
} state_t;

typedef struct {
  int64_t key;
  uint64_t seq;
  state_t s[2];
} slot_t;

typedef struct {
  uint64_t magic;
  uint32_t capacity; /* gates at most (stock_slots) */
  uint32_t mask;     /* slots - 1 */
  uint32_t used;     /* gates now */
  uint32_t pad;
  uint64_t owner_deaths;
  pthread_mutex_t lock;
} table_t;

#define SLOTS_OFF ((sizeof(table_t) + 63) / 64 * 64)

static uint32_t nslots(int capacity) {
  uint32_t n = 16;
  while (n < 2 * (uint32_t)capacity)
    n *= 2;
  return n;
}

size_t fcfs_stock_region_size(int slots) {
  size_t bytes = SLOTS_OFF + (size_t)nslots(slots) * sizeof(slot_t);
  return (bytes + PAGE - 1) / PAGE * PAGE;
}

int fcfs_stock_region_init(void *region, size_t size, int slots) {
  table_t *t = region;
  if (slots < 1 || size < fcfs_stock_region_size(slots)) return -1;
  if (fcfs_shm_mutex_init(&t->lock) != 0) return -1;
  t->capacity = (uint32_t)slots;
  t->mask = nslots(slots) - 1;
  t->magic = TABLE_MAGIC;
  return 0;
}

static inline slot_t *slot(table_t *t, uint32_t i) {
  return (slot_t *)((char *)t + SLOTS_OFF) + i;
}

static inline uint32_t home(const table_t *t, int64_t id) {
  return (uint32_t)(((uint64_t)id * 0x9e3779b97f4a7c15ull) >> 32) & t->mask;
}

/* ---- reads (no lock) -------------------------------------------------------- */

#define LOAD(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)

/* The published state of sl into out: 1, or 0 after READ_TRIES updates
 * published during the read. */
static int read_state(slot_t *sl, state_t *out) {
  for (int tries = 0; tries < READ_TRIES; tries++) {
    uint64_t seq = __atomic_load_n(&sl->seq, __ATOMIC_ACQUIRE);
    state_t *p = &sl->s[seq & 1];
    out->id = LOAD(&p->id);
    out->remaining = LOAD(&p->remaining);
    out->version = LOAD(&p->version);
    out->updated_ms = LOAD(&p->updated_ms);
    out->paused = LOAD(&p->paused);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (LOAD(&sl->seq) == seq) return 1;
  }
  return 0;
}

/* The state of id's gate: 1, 0 when none, FCFS_STOCK_BUSY. */
static int find(table_t *t, int64_t id, state_t *st) {
  if (id <= 0) return 0;
  uint32_t i = home(t, id);
  for (uint32_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
    slot_t *sl = slot(t, i);
    int64_t k = __atomic_load_n(&sl->key, __ATOMIC_ACQUIRE);
    if (k == 0) return 0;
    if (k != id) continue;
    if (!read_state(sl, st)) return FCFS_STOCK_BUSY;
    if (st->id == id) return 1; /* else reused by another gate meanwhile */
  }
  return 0;
}

static uint64_t age(const state_t *st) {
  uint64_t now = fcfs_monotonic_ms();
  return now > st->updated_ms ? now - st->updated_ms : 0;
}

static void give(const state_t *st, int64_t *remaining, uint64_t *version, int *paused,
                 uint64_t *age_ms) {
  if (remaining) *remaining = st->remaining;
  if (version) *version = st->version;
  if (paused) *paused = st->paused != 0;
  if (age_ms) *age_ms = age(st);
}

int fcfs_stock_get(void *gate, int64_t id, int64_t *remaining, uint64_t *version, int *paused,
                   uint64_t *age_ms) {
  state_t st;
  int rc = find(gate, id, &st);
  if (rc == 1) give(&st, remaining, version, paused, age_ms);
  return rc;
}

int fcfs_stock_sold_out(void *gate, int64_t id) {
  state_t st;
  return find(gate, id, &st) == 1 && st.remaining <= 0 && !st.paused;
}

uint32_t fcfs_stock_slots(void *gate) {
  return ((table_t *)gate)->mask + 1;
}

int fcfs_stock_at(void *gate, uint32_t i, int64_t *id, int64_t *remaining, uint64_t *version,
                  int *paused, uint64_t *age_ms) {
  table_t *t = gate;
  if (i > t->mask) return 0;
  slot_t *sl = slot(t, i);
  int64_t k = __atomic_load_n(&sl->key, __ATOMIC_ACQUIRE);
  state_t st;
  if (k <= 0) return 0;
  if (!read_state(sl, &st)) return FCFS_STOCK_BUSY;
  if (st.id != k) return 0;
  *id = k;
  give(&st, remaining, version, paused, age_ms);
  return 1;
}

void fcfs_stock_usage(void *gate, uint32_t *used, uint32_t *capacity, uint64_t *owner_deaths) {
  table_t *t = gate;
  *used = __atomic_load_n(&t->used, __ATOMIC_RELAXED);
  *capacity = t->capacity;
  *owner_deaths = __atomic_load_n(&t->owner_deaths, __ATOMIC_RELAXED);
}

/* ---- updates (lock held) ---------------------------------------------------- */

static int lock(table_t *t) {
  int rc = fcfs_shm_mutex_lock(&t->lock);
  if (rc <= 0) return rc;
  __atomic_add_fetch(&t->owner_deaths, 1, __ATOMIC_RELAXED); /* the count may be off */
  uint32_t used = 0;
  for (uint32_t i = 0; i <= t->mask; i++)
    used += slot(t, i)->key > 0;
  STORE(&t->used, used);
  return 0;
}

/* Write the unpublished copy of sl, then publish it. The release fence
 * keeps the copy's stores from being seen before the previous publication
 * (a reader that sees any of them then sees seq moved). */
static void publish(slot_t *sl, const state_t *st) {
  uint64_t seq = sl->seq;
  state_t *p = &sl->s[(seq + 1) & 1];
  __atomic_thread_fence(__ATOMIC_RELEASE);
  STORE(&p->id, st->id);
  STORE(&p->remaining, st->remaining);
  STORE(&p->version, st->version);
  STORE(&p->updated_ms, st->updated_ms);
  STORE(&p->paused, st->paused);
  __atomic_store_n(&sl->seq, seq + 1, __ATOMIC_RELEASE);
}

/* The slot of id's gate, or UINT32_MAX; *free_slot: where a new gate for id
 * would go (the first tombstone, else the never-used slot that ended the
 * probe; UINT32_MAX when neither). */
static uint32_t probe(table_t *t, int64_t id, uint32_t *free_slot) {
  uint32_t i = home(t, id);
  *free_slot = UINT32_MAX;
  for (uint32_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
    int64_t k = slot(t, i)->key;
    if (k == id) return i;
    if (k == TOMB && *free_slot == UINT32_MAX) *free_slot = i;
    if (k == 0) {
      if (*free_slot == UINT32_MAX) *free_slot = i;
      break;
    }
  }
  return UINT32_MAX;
}

int fcfs_stock_update(void *gate, int64_t id, int64_t remaining, uint64_t version, int paused) {
  table_t *t = gate;
  if (id <= 0) return FCFS_STOCK_BAD_ID;
  if (lock(t) != 0) return FCFS_STOCK_BUSY;
  state_t st = {id, remaining, version, fcfs_monotonic_ms(), paused != 0, 0};
  uint32_t free_slot, i = probe(t, id, &free_slot);
  int rc = FCFS_STOCK_APPLIED;
  if (i != UINT32_MAX) {
    slot_t *sl = slot(t, i);
    if (version < sl->s[sl->seq & 1].version)
      rc = FCFS_STOCK_IGNORED;
    else
      publish(sl, &st);
  } else if (t->used >= t->capacity || free_slot == UINT32_MAX) {
    rc = FCFS_STOCK_FULL;
  } else {
    slot_t *sl = slot(t, free_slot);
    publish(sl, &st);
    __atomic_store_n(&sl->key, id, __ATOMIC_RELEASE);
    STORE(&t->used, t->used + 1);
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

int fcfs_stock_forget(void *gate, int64_t id) {
  table_t *t = gate;
  if (id <= 0) return FCFS_STOCK_BAD_ID;
  if (lock(t) != 0) return FCFS_STOCK_BUSY;
  uint32_t free_slot, i = probe(t, id, &free_slot);
  if (i != UINT32_MAX) {
    __atomic_store_n(&slot(t, i)->key, TOMB, __ATOMIC_RELEASE);
    STORE(&t->used, t->used - 1);
    /* a run of tombstones ending before a never-used slot: never-used too */
    if (slot(t, (i + 1) & t->mask)->key == 0)
      for (uint32_t j = i; slot(t, j)->key == TOMB; j = (j - 1) & t->mask)
        __atomic_store_n(&slot(t, j)->key, 0, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&t->lock);
  return i != UINT32_MAX;
}
