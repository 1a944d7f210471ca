/* static.c -- serving the files of static_dir (see static.h for when).
 *
 * The request path is percent-decoded and checked before any file system
 * call: an encoded "/" or "\", a NUL or another control character, a
 * malformed escape, a "." or ".." segment is a 400; a segment that starts
 * with "." (.git, .env) is treated as absent. The file is then resolved with
 * realpath(): a symlink is followed only when the file it leads to is inside
 * the root, otherwise the file counts as absent (404). Only regular files are
 * served.
 *
 * Answers: Content-Type by extension, a strong ETag from the file's mtime
 * and size (If-None-Match -> 304), Last-Modified, Cache-Control ("no-cache"
 * or "public, max-age=N" with static_max_age), no ranges (Accept-Ranges:
 * none, a Range header is ignored: the whole file, 200).
 *
 * Cache: each worker keeps file contents in memory, at most
 * static_cache_size bytes in total, least recently used out first. Every
 * request stats the file: an entry whose inode, size or mtime changed is
 * read again, so an edited or replaced file is served at once (no reload
 * needed). A file larger than the cache is read for each request.
 *
 * Ownership: fcfs_static_t owns its entries and their data; an answer is
 * copied by the server as needed (fcfs_request_respond), so entries may be
 * evicted right after.
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

#define BUCKETS 256

typedef struct entry_s {
  char *path; /* resolved, absolute */
  dev_t dev;
  ino_t ino;
  off_t size;
  int64_t mtime_ns;
  char *data;
  struct entry_s *hnext;         /* bucket chain */
  struct entry_s *newer, *older; /* LRU list */
} entry_t;

struct fcfs_static_s {
  char root[PATH_MAX];
  size_t root_len;
  double max_age;
  size_t cap, used;
  entry_t *buckets[BUCKETS];
  entry_t *newest, *oldest;
};

static const struct {
  const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
};

static const char *content_type(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot && (slash == NULL || dot > slash))
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
      if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

fcfs_static_t *fcfs_static_new(const fcfs_conf_t *conf, char *err, size_t errlen) {
  fcfs_static_t *st = calloc(1, sizeof(*st));
  struct stat sb;
  if (st == NULL) {
    snprintf(err, errlen, "static_dir: out of memory");
    return NULL;
  }
  if (realpath(conf->static_dir, st->root) == NULL || stat(st->root, &sb) != 0 ||
      (!S_ISDIR(sb.st_mode) && (errno = ENOTDIR))) {
    snprintf(err, errlen, "static_dir \"%s\": %s", conf->static_dir, strerror(errno));
    free(st);
    return NULL;
  }
  st->root_len = strlen(st->root);
  st->max_age = conf->static_max_age;
  st->cap = (size_t)conf->static_cache_size;
  return st;
}

static unsigned bucket_of(const char *path) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)path; *p; p++)
    h = (h ^ *p) * 16777619u;
  return h % BUCKETS;
}

static void lru_unlink(fcfs_static_t *st, entry_t *e) {
  if (e->newer)
    e->newer->older = e->older;
  else
    st->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    st->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void lru_front(fcfs_static_t *st, entry_t *e) {
  e->older = st->newest;
  e->newer = NULL;
  if (st->newest) st->newest->newer = e;
  st->newest = e;
  if (st->oldest == NULL) st->oldest = e;
}

static void entry_drop(fcfs_static_t *st, entry_t *e) {
  entry_t **pp = &st->buckets[bucket_of(e->path)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(st, e);
  st->used -= (size_t)e->size;
  free(e->path);
  free(e->data);
  free(e);
}

void fcfs_static_free(fcfs_static_t *st) {
  if (st == NULL) return;
  while (st->oldest)
    entry_drop(st, st->oldest);
  free(st);
}

/* The whole file at path (its stat in sb) into a new buffer; NULL on error
 * or when it changed size under us. */
static char *read_file(const char *path, const struct stat *sb) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return NULL;
  size_t size = (size_t)sb->st_size, got = 0;
  char *data = malloc(size ? size : 1);
  while (data && got < size) {
    ssize_t n = read(fd, data + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  if (data && got != size) {
    free(data);
    data = NULL;
  }
  return data;
}

/* The cached entry for path when it still matches sb, else a fresh one
 * (cached if it fits); *owned set when the caller must free the result. */
static entry_t *lookup(fcfs_static_t *st, const char *path, const struct stat *sb, int *owned) {
  int64_t mtime = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
  unsigned b = bucket_of(path);
  *owned = 0;
  for (entry_t *e = st->buckets[b]; e; e = e->hnext) {
    if (strcmp(e->path, path) != 0) continue;
    if (e->dev == sb->st_dev && e->ino == sb->st_ino && e->size == sb->st_size &&
        e->mtime_ns == mtime) {
      lru_unlink(st, e);
      lru_front(st, e);
      return e;
    }
    entry_drop(st, e); /* changed on disk */
    break;
  }
  entry_t *e = calloc(1, sizeof(*e));
  if (e == NULL) return NULL;
  e->path = strdup(path);
  e->data = read_file(path, sb);
  if (e->path == NULL || e->data == NULL) {
    free(e->path);
    free(e->data);
    free(e);
    return NULL;
  }
  e->dev = sb->st_dev;
  e->ino = sb->st_ino;
  e->size = sb->st_size;
  e->mtime_ns = mtime;
  if ((size_t)e->size > st->cap) {
    *owned = 1;
    return e;
  }
  while (st->used + (size_t)e->size > st->cap && st->oldest)
    entry_drop(st, st->oldest);
  e->hnext = st->buckets[b];
  st->buckets[b] = e;
  lru_front(st, e);
  st->used += (size_t)e->size;
  return e;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The decoded, checked path (starting with '/') into out. 0, 400 for a
 * path that is malformed or tries to leave the root, 404 for one that
 * cannot name a file we serve (hidden segment, too long). */
static int decode_path(const char *raw, size_t len, char *out, size_t cap) {
  size_t n = 0;
  if (len == 0 || raw[0] != '/') return 400;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)raw[i];
    if (ch == '%') {
      int hi = i + 2 < len ? hexval(raw[i + 1]) : -1, lo = i + 2 < len ? hexval(raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) return 400;
      ch = (unsigned char)(hi * 16 + lo);
      if (ch == '/' || ch == '\\') return 400; /* an encoded separator */
      i += 2;
    } else if (ch == '\\') {
      return 400;
    }
    if (ch < 0x20 || ch == 0x7f) return 400;               /* NUL and other control characters */
    if (ch == '/' && n > 0 && out[n - 1] == '/') continue; /* "//" is "/" */
    if (n + 1 >= cap) return 404;
    out[n++] = (char)ch;
  }
  out[n] = '\0';
  /* segments: "." and ".." refused, hidden names absent */
  for (char *seg = out + 1; *seg;) {
    char *end = strchr(seg, '/');
    size_t sl = end ? (size_t)(end - seg) : strlen(seg);
    if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.')) return 400;
    if (sl > 0 && seg[0] == '.') return 404;
    seg += sl + (end ? 1 : 0);
  }
  return 0;
}

/* Whether an If-None-Match value lists etag (weak comparison) or is "*". */
static int etag_matches(const char *v, size_t len, const char *etag) {
  size_t el = strlen(etag);
  for (size_t i = 0; i < len;) {
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    if (i < len && v[i] == '*') return 1;
    if (i + 2 <= len && v[i] == 'W' && v[i + 1] == '/') i += 2;
    size_t s = i;
    while (i < len && v[i] != ',')
      i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e - s == el && memcmp(v + s, etag, el) == 0) return 1;
  }
  return 0;
}

static void answer(fcfs_static_t *st, fcfs_request_t *r, entry_t *e) {
  char etag[64], lm[30], cache[64], head[512];
  snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)e->mtime_ns,
           (unsigned long long)e->size);
  http_format_date(lm, (time_t)(e->mtime_ns / 1000000000));
  if (st->max_age > 0)
    snprintf(cache, sizeof(cache), "public, max-age=%lld", (long long)st->max_age);
  else
    snprintf(cache, sizeof(cache), "no-cache");
  int n = snprintf(head, sizeof(head),
                   "Content-Type: %s\r\nETag: %s\r\nLast-Modified: %s\r\nCache-Control: %s\r\n"
                   "Accept-Ranges: none\r\nX-Content-Type-Options: nosniff\r\n",
                   content_type(e->path), etag, lm, cache);
  const http_header_t *inm = http_req_header(r->http, "if-none-match");
  int status = inm && etag_matches(inm->value, inm->value_len, etag) ? 304 : 200;
  fcfs_request_respond(r, status, head, (size_t)n, e->data, (size_t)e->size);
}

int fcfs_static_serve(fcfs_static_t *st, fcfs_request_t *r) {
  const http_req_t *h = r->http;
  if (!h->is_head && !(h->method_len == 3 && memcmp(h->method, "GET", 3) == 0)) return 0;
  char rel[PATH_MAX], full[PATH_MAX * 2 + 16], real[PATH_MAX];
  int bad = decode_path(h->path, h->path_len, rel, sizeof(rel) - 16);
  if (bad == 404) return 0;
  r->route = "static";
  if (bad) {
    fcfs_request_fail(r, 400, "static path");
    return 1;
  }
  size_t rl = strlen(rel);
  snprintf(full, sizeof(full), "%s%s%s", st->root, rel, rel[rl - 1] == '/' ? "index.html" : "");
  struct stat sb;
  if (realpath(full, real) == NULL || strncmp(real, st->root, st->root_len) != 0 ||
      real[st->root_len] != '/' || stat(real, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    r->route = r->route_buf; /* not ours: the app's 404 stands */
    return 0;
  }
  int owned;
  entry_t *e = lookup(st, real, &sb, &owned);
  if (e == NULL) {
    fcfs_request_fail(r, 500, "static file unreadable");
    return 1;
  }
  answer(st, r, e);
  if (owned) {
    free(e->path);
    free(e->data);
    free(e);
  }
  return 1;
}
