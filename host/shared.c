/* shared.c -- shared-memory dictionaries: layout, allocation, eviction,
 * locking (see shared.h for the API).
 *
 * Layout. The region starts with a directory (the byte offset of each
 * dictionary). A dictionary is its header, a hash index (a power-of-two
 * array of entry indexes, chained through the entries) and an arena of
 * 64-byte chunks. An entry is a chain of chunks: the head chunk carries the
 * index and LRU links, the hash, the expiry and the lengths, then the key
 * followed by the value, continued over as many chunks as needed. All
 * chunks are alike, so memory freed by any entry serves any other: no size
 * classes, no fragmentation, and eviction of the least recently used entry
 * always makes progress. Chunks never used yet come from a bump index, so a
 * large dictionary touches (and costs) only the memory it has used.
 *
 * Locking. One process-shared robust mutex per dictionary, held for one
 * operation; nothing under it allocates, calls Lua or makes a syscall. A
 * process killed while holding it (kill -9, OOM killer) does not wedge the
 * node: the next locker gets EOWNERDEAD. Operations raise `dirty` while they
 * change the structure; if the dead owner was in such a section the
 * dictionary cannot be trusted and is emptied (counted in `resets`),
 * otherwise it is intact and simply marked consistent.
 *
 * Expiry is lazy: an entry past its deadline (CLOCK_MONOTONIC ms, the same
 * clock in every process of a boot) is removed when met, by get, set,
 * eviction or flush_expired.
 *
 * Ownership: nothing here owns memory; the region belongs to the shm
 * segment (shm.c) and lives as long as the processes that map it.
 */
#include "shared.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "shm_sync.h"

#define REGION_MAGIC 0x66636673646963ull /* "fcfsdic" */
#define PAGE 4096
#define CHUNK 64
#define HEAD_DATA 30
#define CONT_DATA (CHUNK - 4)
#define NUM_LEN 8

typedef struct {
  uint64_t magic;
  uint32_t n;
  uint32_t pad;
  uint64_t off[FCFS_MAX_DICTS]; /* from the region start */
} region_t;

/* The head chunk of an entry. Indexes are 1-based chunk numbers, 0 = none. */
typedef struct {
  uint32_t next;     /* continuation chunk */
  uint32_t hnext;    /* next entry in the same bucket */
  uint32_t lru_prev; /* toward the most recently used */
  uint32_t lru_next; /* toward the least recently used */
  uint32_t hash;
  uint32_t vlen;       /* value bytes (NUM_LEN for numbers and booleans) */
  uint64_t expires_ms; /* 0 = never */
  uint8_t klen, type;
  uint8_t data[HEAD_DATA]; /* key, then value */
} head_t;

typedef struct {
  uint32_t next;
  uint8_t data[CONT_DATA];
} cont_t;

_Static_assert(sizeof(head_t) == CHUNK, "head chunk size");
_Static_assert(sizeof(cont_t) == CHUNK, "continuation chunk size");

struct fcfs_shared_dict_s {
  pthread_mutex_t lock;
  char name[FCFS_DICT_NAME];
  uint64_t buckets_off, chunks_off; /* from the dictionary start */
  uint32_t nbuckets, nchunks;
  uint32_t free_head; /* chunks freed, linked through next */
  uint32_t bump;      /* chunks 1..bump have been handed out at least once */
  uint32_t used;      /* chunks in entries now */
  uint32_t lru_head, lru_tail;
  volatile uint32_t dirty; /* the structure is being changed */
  uint64_t entries, evictions, resets, owner_deaths;
};

/* ---- layout ----------------------------------------------------------------- */

static size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

size_t fcfs_shared_region_size(const fcfs_conf_dicts_t *dicts) {
  if (dicts->n == 0) return 0;
  size_t total = round_up(sizeof(region_t), PAGE);
  for (int i = 0; i < dicts->n; i++)
    total += round_up(dicts->d[i].bytes, PAGE);
  return total;
}

static void dict_layout(fcfs_shared_dict_t *d, size_t bytes) {
  size_t hdr = round_up(sizeof(*d), CHUNK);
  uint32_t nb = 16;
  while ((size_t)nb * 4 * CHUNK <= bytes) /* one bucket per two to four chunks */
    nb *= 2;
  d->nbuckets = nb;
  d->buckets_off = hdr;
  d->chunks_off = hdr + round_up((size_t)nb * sizeof(uint32_t), CHUNK);
  d->nchunks = (uint32_t)((bytes - d->chunks_off) / CHUNK);
}

int fcfs_shared_region_init(void *region, size_t size, const fcfs_conf_dicts_t *dicts) {
  region_t *r = region;
  size_t off = round_up(sizeof(region_t), PAGE);
  for (int i = 0; i < dicts->n; i++) {
    size_t bytes = round_up(dicts->d[i].bytes, PAGE);
    if (off + bytes > size) return -1;
    fcfs_shared_dict_t *d = (fcfs_shared_dict_t *)((char *)region + off);
    if (fcfs_shm_mutex_init(&d->lock) != 0) return -1;
    snprintf(d->name, sizeof(d->name), "%s", dicts->d[i].name);
    dict_layout(d, bytes);
    r->off[i] = off;
    off += bytes;
  }
  r->n = (uint32_t)dicts->n;
  r->magic = REGION_MAGIC;
  return 0;
}

fcfs_shared_dict_t *fcfs_shared_at(void *region, int i) {
  region_t *r = region;
  if (r == NULL || r->magic != REGION_MAGIC || i < 0 || (uint32_t)i >= r->n) return NULL;
  return (fcfs_shared_dict_t *)((char *)region + r->off[i]);
}

fcfs_shared_dict_t *fcfs_shared_find(void *region, const char *name, size_t len) {
  fcfs_shared_dict_t *d;
  for (int i = 0; (d = fcfs_shared_at(region, i)) != NULL; i++)
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) return d;
  return NULL;
}

const char *fcfs_shared_name(const fcfs_shared_dict_t *d) {
  return d->name;
}

void fcfs_shared_stats(const fcfs_shared_dict_t *d, fcfs_shared_stats_t *st) {
  st->capacity_bytes = (uint64_t)d->nchunks * CHUNK;
  st->used_bytes = (uint64_t)d->used * CHUNK;
  st->entries = d->entries;
  st->evictions = d->evictions;
  st->resets = d->resets;
  st->owner_deaths = d->owner_deaths;
}

/* ---- chunks ------------------------------------------------------------------ */

static inline head_t *head(fcfs_shared_dict_t *d, uint32_t i) {
  return (head_t *)((char *)d + d->chunks_off + (size_t)(i - 1) * CHUNK);
}

static inline cont_t *cont(fcfs_shared_dict_t *d, uint32_t i) {
  return (cont_t *)head(d, i);
}

static inline uint32_t *buckets(fcfs_shared_dict_t *d) {
  return (uint32_t *)((char *)d + d->buckets_off);
}

static uint32_t chunks_for(size_t payload) {
  if (payload <= HEAD_DATA) return 1;
  return 1 + (uint32_t)((payload - HEAD_DATA + CONT_DATA - 1) / CONT_DATA);
}

enum { SPAN_OUT, SPAN_IN, SPAN_CMP };

/* Visit payload bytes [pos, pos + n) of entry e piece by piece: copy them
 * out to mem, in from mem, or compare with mem (non-zero when different). */
static int span(fcfs_shared_dict_t *d, uint32_t e, size_t pos, void *mem, size_t n, int op) {
  uint8_t *m = mem, *p = head(d, e)->data;
  size_t room = HEAD_DATA;
  uint32_t c = e;
  while (pos >= room) {
    pos -= room;
    c = head(d, c)->next;
    p = cont(d, c)->data;
    room = CONT_DATA;
  }
  while (n > 0) {
    size_t k = room - pos < n ? room - pos : n;
    if (op == SPAN_OUT)
      memcpy(m, p + pos, k);
    else if (op == SPAN_IN)
      memcpy(p + pos, m, k);
    else if (memcmp(p + pos, m, k) != 0)
      return 1;
    m += k;
    n -= k;
    pos = 0;
    if (n > 0) {
      c = head(d, c)->next;
      p = cont(d, c)->data;
      room = CONT_DATA;
    }
  }
  return 0;
}

/* ---- lock ------------------------------------------------------------------- */

static void reset(fcfs_shared_dict_t *d) {
  memset(buckets(d), 0, (size_t)d->nbuckets * sizeof(uint32_t));
  d->free_head = d->bump = d->used = 0;
  d->lru_head = d->lru_tail = 0;
  d->entries = 0;
  d->resets++;
  d->dirty = 0;
}

static int lock(fcfs_shared_dict_t *d) {
  int rc = fcfs_shm_mutex_lock(&d->lock);
  if (rc <= 0) return rc;
  d->owner_deaths++; /* it died holding the lock */
  if (d->dirty) reset(d);
  return 0;
}

static void unlock(fcfs_shared_dict_t *d) {
  pthread_mutex_unlock(&d->lock);
}

/* Mutations are bracketed by these; the fences keep the compiler from moving
 * structure writes outside the bracket (a dead owner's stores are all in
 * memory: it is the order in the program that matters). */
static inline void begin(fcfs_shared_dict_t *d) {
  d->dirty = 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static inline void end(fcfs_shared_dict_t *d) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  d->dirty = 0;
}

/* ---- entries (lock held) ------------------------------------------------------ */

/* Whether payload bytes [pos, pos + n) lie in one chunk: then storing them
 * is one machine store for n = 8, which a death cannot tear. */
static int one_piece(size_t pos, size_t n) {
  if (pos < HEAD_DATA) return pos + n <= HEAD_DATA;
  return (pos - HEAD_DATA) / CONT_DATA == (pos - HEAD_DATA + n - 1) / CONT_DATA;
}

static uint32_t hash_key(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 16777619u;
  return h;
}

/* The entry for key, and the link that points at it (for unlinking). */
static uint32_t lookup(fcfs_shared_dict_t *d, const char *key, size_t klen, uint32_t hash,
                       uint32_t **link) {
  uint32_t *l = &buckets(d)[hash & (d->nbuckets - 1)];
  while (*l) {
    head_t *h = head(d, *l);
    if (h->hash == hash && h->klen == klen && span(d, *l, 0, (void *)key, klen, SPAN_CMP) == 0) {
      if (link) *link = l;
      return *l;
    }
    l = &h->hnext;
  }
  return 0;
}

static void lru_unlink(fcfs_shared_dict_t *d, uint32_t e) {
  head_t *h = head(d, e);
  if (h->lru_prev)
    head(d, h->lru_prev)->lru_next = h->lru_next;
  else
    d->lru_head = h->lru_next;
  if (h->lru_next)
    head(d, h->lru_next)->lru_prev = h->lru_prev;
  else
    d->lru_tail = h->lru_prev;
}

static void lru_push(fcfs_shared_dict_t *d, uint32_t e) {
  head_t *h = head(d, e);
  h->lru_prev = 0;
  h->lru_next = d->lru_head;
  if (d->lru_head) head(d, d->lru_head)->lru_prev = e;
  d->lru_head = e;
  if (d->lru_tail == 0) d->lru_tail = e;
}

static void touch(fcfs_shared_dict_t *d, uint32_t e) {
  if (d->lru_head == e) return;
  begin(d);
  lru_unlink(d, e);
  lru_push(d, e);
  end(d);
}

/* Unlink entry e (link points at it) and give its chunks back. */
static void remove_entry(fcfs_shared_dict_t *d, uint32_t e, uint32_t *link) {
  head_t *h = head(d, e);
  *link = h->hnext;
  lru_unlink(d, e);
  uint32_t last = e, n = 1;
  while (head(d, last)->next) {
    last = head(d, last)->next;
    n++;
  }
  head(d, last)->next = d->free_head;
  d->free_head = e;
  d->used -= n;
  d->entries--;
}

/* Remove e wherever it is in its bucket. */
static void remove_any(fcfs_shared_dict_t *d, uint32_t e) {
  uint32_t *l = &buckets(d)[head(d, e)->hash & (d->nbuckets - 1)];
  while (*l != e)
    l = &head(d, *l)->hnext;
  remove_entry(d, e, l);
}

static uint64_t now_ms(uint64_t *now) {
  if (*now == 0) *now = fcfs_monotonic_ms();
  return *now;
}

static int expired(fcfs_shared_dict_t *d, uint32_t e, uint64_t *now) {
  uint64_t x = head(d, e)->expires_ms;
  return x != 0 && x <= now_ms(now);
}

static uint64_t deadline(double ttl, uint64_t *now) {
  if (!(ttl > 0)) return 0;
  return now_ms(now) + (uint64_t)ceil(ttl * 1000);
}

static uint32_t pop_chunk(fcfs_shared_dict_t *d) {
  uint32_t c = d->free_head;
  if (c)
    d->free_head = head(d, c)->next;
  else
    c = ++d->bump;
  return c;
}

/* A new entry, linked into its bucket and at the LRU head. The caller has
 * checked that it fits in the dictionary at all; least recently used
 * entries are evicted until it fits now. */
static uint32_t insert(fcfs_shared_dict_t *d, const char *key, size_t klen, uint32_t hash, int type,
                       double num, const char *str, size_t len, uint64_t expires_ms, uint64_t *now,
                       int *evicted) {
  size_t vlen = type == FCFS_SHARED_STRING ? len : NUM_LEN;
  uint32_t need = chunks_for(klen + vlen);
  while (d->nchunks - d->used < need) {
    uint32_t victim = d->lru_tail;
    if (!expired(d, victim, now)) {
      d->evictions++;
      if (evicted) *evicted = 1;
    }
    remove_any(d, victim);
  }
  uint32_t e = pop_chunk(d), c = e;
  for (uint32_t i = 1; i < need; i++) {
    uint32_t n = pop_chunk(d);
    head(d, c)->next = n;
    c = n;
  }
  head(d, c)->next = 0;
  d->used += need;
  d->entries++;
  head_t *h = head(d, e);
  h->hash = hash;
  h->klen = (uint8_t)klen;
  h->type = (uint8_t)type;
  h->vlen = (uint32_t)vlen;
  h->expires_ms = expires_ms;
  span(d, e, 0, (void *)key, klen, SPAN_IN);
  if (type == FCFS_SHARED_STRING)
    span(d, e, klen, (void *)str, len, SPAN_IN);
  else
    span(d, e, klen, &num, NUM_LEN, SPAN_IN);
  uint32_t *b = &buckets(d)[hash & (d->nbuckets - 1)];
  h->hnext = *b;
  *b = e;
  lru_push(d, e);
  return e;
}

/* ---- operations ----------------------------------------------------------------- */

/* Find key, dropping it when expired. Lock held. */
static uint32_t find_live(fcfs_shared_dict_t *d, const char *key, size_t klen, uint32_t hash,
                          uint64_t *now, uint32_t **link) {
  uint32_t *l = NULL;
  uint32_t e = lookup(d, key, klen, hash, &l);
  if (e && expired(d, e, now)) {
    begin(d);
    remove_entry(d, e, l);
    end(d);
    return 0;
  }
  *link = l;
  return e;
}

/* One keyed operation in progress: the key's hash, the clock (read once,
 * when first needed), the live entry (0 = none) and the link to it. */
typedef struct {
  uint32_t hash;
  uint64_t now;
  uint32_t e;
  uint32_t *link;
} op_t;

/* The prologue of every keyed operation: check the key, take the lock,
 * find the live entry. NULL with the lock held, or the error (not held). */
static const char *enter(fcfs_shared_dict_t *d, const char *key, size_t klen, op_t *o) {
  if (klen == 0) return "empty key";
  if (klen > FCFS_SHARED_KEY_MAX) return "key too long";
  o->hash = hash_key(key, klen);
  o->now = 0;
  o->link = NULL;
  if (lock(d) != 0) return "unavailable";
  o->e = find_live(d, key, klen, o->hash, &o->now, &o->link);
  return NULL;
}

const char *fcfs_shared_get(fcfs_shared_dict_t *d, const char *key, size_t klen,
                            fcfs_shared_value_t *out, char *buf, size_t cap) {
  op_t o;
  const char *err = enter(d, key, klen, &o);
  if (err) return err;
  out->type = FCFS_SHARED_NIL;
  out->str = NULL;
  out->len = 0;
  if (o.e) {
    head_t *h = head(d, o.e);
    out->type = h->type;
    if (h->type == FCFS_SHARED_STRING) {
      out->len = h->vlen;
      if (h->vlen <= cap) {
        span(d, o.e, h->klen, buf, h->vlen, SPAN_OUT);
        out->str = buf;
      }
    } else {
      span(d, o.e, h->klen, &out->num, NUM_LEN, SPAN_OUT);
    }
    touch(d, o.e);
  }
  unlock(d);
  return NULL;
}

const char *fcfs_shared_set(fcfs_shared_dict_t *d, const char *key, size_t klen,
                            const fcfs_shared_value_t *v, double ttl, int add, int *evicted) {
  if (evicted) *evicted = 0;
  size_t vlen = v->type == FCFS_SHARED_STRING ? v->len : NUM_LEN;
  if (v->type != FCFS_SHARED_NIL && chunks_for(klen + vlen) > d->nchunks) return "no memory";
  op_t o;
  const char *err = enter(d, key, klen, &o);
  if (err) return err;
  if (o.e && add) {
    unlock(d);
    return "exists";
  }
  begin(d);
  if (o.e) remove_entry(d, o.e, o.link);
  if (v->type != FCFS_SHARED_NIL)
    insert(d, key, klen, o.hash, v->type, v->num, v->str, v->len, deadline(ttl, &o.now), &o.now,
           evicted);
  end(d);
  unlock(d);
  return NULL;
}

const char *fcfs_shared_incr(fcfs_shared_dict_t *d, const char *key, size_t klen, double n,
                             const double *init, double ttl, double *out) {
  op_t o;
  const char *err = enter(d, key, klen, &o);
  if (err) return err;
  if (o.e) {
    head_t *h = head(d, o.e);
    if (h->type != FCFS_SHARED_NUMBER) {
      err = "not a number";
    } else {
      double v;
      span(d, o.e, h->klen, &v, NUM_LEN, SPAN_OUT);
      v += n;
      int torn = !one_piece(h->klen, NUM_LEN);
      if (torn) begin(d);
      span(d, o.e, h->klen, &v, NUM_LEN, SPAN_IN);
      if (torn) end(d);
      *out = v;
      touch(d, o.e);
    }
  } else if (init == NULL) {
    err = "not found";
  } else {
    *out = *init + n;
    begin(d);
    insert(d, key, klen, o.hash, FCFS_SHARED_NUMBER, *out, NULL, 0, deadline(ttl, &o.now), &o.now,
           NULL);
    end(d);
  }
  unlock(d);
  return err;
}

const char *fcfs_shared_delete(fcfs_shared_dict_t *d, const char *key, size_t klen) {
  op_t o;
  const char *err = enter(d, key, klen, &o);
  if (err) return err;
  if (o.e) {
    begin(d);
    remove_entry(d, o.e, o.link);
    end(d);
  }
  unlock(d);
  return o.e ? NULL : "not found";
}

const char *fcfs_shared_ttl(fcfs_shared_dict_t *d, const char *key, size_t klen, double *left) {
  op_t o;
  const char *err = enter(d, key, klen, &o);
  if (err) return err;
  if (o.e) {
    uint64_t x = head(d, o.e)->expires_ms;
    *left = x == 0 ? 0 : (double)(x - now_ms(&o.now)) / 1000.0;
  }
  unlock(d);
  return o.e ? NULL : "not found";
}

int fcfs_shared_flush_expired(fcfs_shared_dict_t *d, int max) {
  uint64_t now = 0;
  int n = 0;
  if (lock(d) != 0) return 0;
  begin(d);
  uint32_t e = d->lru_tail;
  while (e && (max <= 0 || n < max)) {
    uint32_t prev = head(d, e)->lru_prev;
    if (expired(d, e, &now)) {
      remove_any(d, e);
      n++;
    }
    e = prev;
  }
  end(d);
  unlock(d);
  return n;
}
