/* test_http.c -- unit tests of the HTTP request layer (host/http.c).
 *
 * Requests are fed the way server.c feeds them: bytes arrive in chunks, the
 * caller keeps what http_in_feed() did not consume and feeds it again after a
 * request came out. Every run is written down as a transcript (one line per
 * request, then an error or the final parse state), and the same input split
 * at every byte boundary, and byte by byte, must give the same transcript.
 * Prints TAP; exits non-zero if a case fails.
 */
#include "http.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

/* --- a tiny string builder ------------------------------------------------ */

typedef struct {
  char *s;
  size_t len, cap;
} sb_t;

static void sb_add(sb_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->s = realloc(b->s, b->cap);
    if (!b->s) abort();
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_printf(sb_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void sb_req(sb_t *b, const http_req_t *r) {
  sb_printf(b, "%s ", r->method);
  sb_add(b, r->path, r->path_len);
  sb_add(b, " ?", 2);
  sb_add(b, r->query, r->query_len);
  sb_add(b, " {", 2);
  for (size_t i = 0; i < r->nheaders; i++) {
    sb_add(b, r->headers[i].name, r->headers[i].name_len);
    sb_add(b, "=", 1);
    sb_add(b, r->headers[i].value, r->headers[i].value_len);
    sb_add(b, "|", 1);
  }
  sb_add(b, "} [", 3);
  if (r->body)
    sb_add(b, r->body, r->body_len);
  else
    sb_add(b, "NULL", 4);
  sb_printf(b, "] ka=%d 1.%d head=%d\n", r->keep_alive, r->http_minor, r->is_head);
}

/* --- the simulated connection --------------------------------------------- */

static const http_limits_t big = {8192, 16384, 100, 1 << 20};
static const http_limits_t small = {64, 256, 8, 32};

/* Feed data in chunks ending at cuts[0..ncuts-1] (then the rest). Returns the
 * transcript (caller frees). Stops after a keep_alive == 0 request, as the
 * server would close. */
static char *transcript(const http_limits_t *lim, const char *data, size_t len, const size_t *cuts,
                        size_t ncuts) {
  http_in_t *in = http_in_new(lim);
  sb_t out = {0}, pend = {0};
  size_t from = 0, off = 0;
  int closed = 0;
  sb_add(&out, "", 0);
  for (size_t c = 0; c <= ncuts && !closed; c++) {
    size_t to = c < ncuts ? cuts[c] : len;
    if (to < from) continue;
    sb_add(&pend, data + from, to - from);
    from = to;
    while (off < pend.len) {
      http_req_t *req;
      ssize_t n = http_in_feed(in, pend.s + off, pend.len - off, &req);
      if (n < 0) {
        EXPECT(req == NULL);
        sb_printf(&out, "ERR %d %s\n", http_in_status(in), http_in_error(in));
        closed = 1;
        break;
      }
      off += (size_t)n;
      if (!req) {
        EXPECT(off == pend.len); /* without a request everything is consumed */
        break;
      }
      sb_req(&out, req);
      EXPECT(http_in_state(in) == HTTP_IN_IDLE);
      if (!req->keep_alive) closed = 1;
      http_req_free(req);
      if (closed) {
        sb_add(&out, "CLOSE\n", 6);
        break;
      }
    }
  }
  if (!closed) sb_printf(&out, "END state=%d\n", (int)http_in_state(in));
  http_in_free(in);
  free(pend.s);
  return out.s;
}

static char *whole(const http_limits_t *lim, const char *data) {
  return transcript(lim, data, strlen(data), NULL, 0);
}

/* The whole-buffer transcript must equal `want` (when not NULL), and so must
 * every two-way split and the byte-by-byte feed. */
static void check_splits(const http_limits_t *lim, const char *data, const char *want) {
  size_t len = strlen(data);
  char *ref = transcript(lim, data, len, NULL, 0);
  if (want) EXPECT_STR(ref, want);
  for (size_t i = 1; i < len; i++) {
    char *t = transcript(lim, data, len, &i, 1);
    if (strcmp(t, ref) != 0) {
      case_failed = 1;
      printf("# split at %zu differs:\n#   [%s]\n# whole:\n#   [%s]\n", i, t, ref);
      free(t);
      break;
    }
    free(t);
  }
  size_t *cuts = malloc(len * sizeof(*cuts));
  for (size_t i = 0; i < len; i++)
    cuts[i] = i + 1;
  char *t = transcript(lim, data, len, cuts, len);
  if (strcmp(t, ref) != 0) {
    case_failed = 1;
    printf("# byte-by-byte differs:\n#   [%s]\n# whole:\n#   [%s]\n", t, ref);
  }
  free(t);
  free(cuts);
  free(ref);
}

/* --- valid requests -------------------------------------------------------- */

#define R_SIMPLE "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
#define T_SIMPLE "GET / ? {Host=a|} [NULL] ka=1 1.1 head=0\n"
#define R_QUERY                                                                                    \
  "GET /p/a%20b?x=1&y=2#frag HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nx-sp:   v  v \t\r\n\r\n"
#define T_QUERY "GET /p/a%20b ?x=1&y=2 {Host=a|X-Empty=|x-sp=v  v|} [NULL] ka=1 1.1 head=0\n"
#define R_POST "POST /items HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
#define T_POST "POST /items ? {Host=a|Content-Length=11|} [hello world] ka=1 1.1 head=0\n"
#define R_CHUNKED                                                                                  \
  "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"                              \
  "5;ext=1;q=\"x\"\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
#define T_CHUNKED                                                                                  \
  "POST /c ? {Host=a|Transfer-Encoding=chunked|} [hello world0123456789] ka=1 1.1 head=0\n"
#define R_CHUNKED_EMPTY "PUT /e HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"
#define T_CHUNKED_EMPTY "PUT /e ? {Transfer-Encoding=Chunked|} [NULL] ka=1 1.1 head=0\n"
#define R_10KA "GET /old HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
#define T_10KA "GET /old ? {Connection=Keep-Alive|} [NULL] ka=1 1.0 head=0\n"
#define R_HEAD "HEAD /h?a HTTP/1.1\r\nHost: a\r\n\r\n"
#define T_HEAD "HEAD /h ?a {Host=a|} [NULL] ka=1 1.1 head=1\n"
#define R_ABS "GET http://example.com:8080/abs/x?q=1 HTTP/1.1\r\n\r\n"
#define T_ABS "GET /abs/x ?q=1 {} [NULL] ka=1 1.1 head=0\n"
#define R_ABS_NOPATH "GET http://example.com?q=2 HTTP/1.1\r\n\r\n"
#define T_ABS_NOPATH "GET / ?q=2 {} [NULL] ka=1 1.1 head=0\n"
#define R_STAR "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
#define T_STAR "OPTIONS * ? {Host=a|} [NULL] ka=1 1.1 head=0\n"
#define R_UPGRADE "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
#define T_UPGRADE "GET /ws ? {Connection=Upgrade|Upgrade=h2c|} [NULL] ka=1 1.1 head=0\n"
#define R_10CLOSE "GET /bye HTTP/1.0\r\n\r\n"
#define T_10CLOSE "GET /bye ? {} [NULL] ka=0 1.0 head=0\nCLOSE\n"

static void t_simple(void) {
  check_splits(&big, R_SIMPLE, T_SIMPLE "END state=0\n");
}
static void t_query_headers(void) {
  check_splits(&big, R_QUERY, T_QUERY "END state=0\n");
}
static void t_post_cl(void) {
  check_splits(&big, R_POST, T_POST "END state=0\n");
}
static void t_chunked(void) {
  check_splits(&big, R_CHUNKED, T_CHUNKED "END state=0\n");
  check_splits(&big, R_CHUNKED_EMPTY, T_CHUNKED_EMPTY "END state=0\n");
}
static void t_head(void) {
  check_splits(&big, R_HEAD, T_HEAD "END state=0\n");
}
static void t_targets(void) {
  check_splits(&big, R_ABS, T_ABS "END state=0\n");
  check_splits(&big, R_ABS_NOPATH, T_ABS_NOPATH "END state=0\n");
  check_splits(&big, R_STAR, T_STAR "END state=0\n");
}
/* obs-fold: a value's pieces joined without the line breaks between them,
 * as the parser hands them over (they are apart in the head as received). */
#define R_FOLDED "GET /f HTTP/1.1\r\nX-A: a\r\n b\r\n\tc\r\nX-B: d\r\nX-E:\r\n e\r\n\r\n"
#define T_FOLDED "GET /f ? {X-A=a b\tc|X-B=d|X-E=e|} [NULL] ka=1 1.1 head=0\n"
static void t_folded(void) {
  check_splits(&big, R_FOLDED R_SIMPLE, T_FOLDED T_SIMPLE "END state=0\n");
}
static void t_upgrade_ignored(void) {
  check_splits(&big, R_UPGRADE R_SIMPLE, T_UPGRADE T_SIMPLE "END state=0\n");
}

static void t_pipelined(void) {
  const char *all =
      "\r\n" R_SIMPLE R_QUERY R_POST R_CHUNKED R_CHUNKED_EMPTY R_10KA R_HEAD R_ABS R_STAR R_10CLOSE
      "GET /never HTTP/1.1\r\n\r\n";
  const char *want =
      T_SIMPLE T_QUERY T_POST T_CHUNKED T_CHUNKED_EMPTY T_10KA T_HEAD T_ABS T_STAR T_10CLOSE;
  check_splits(&big, all, want);

  /* One feed of three requests gives them one at a time, in order, each
   * consuming exactly its own bytes. */
  const char *three = R_SIMPLE R_POST R_HEAD;
  http_in_t *in = http_in_new(&big);
  http_req_t *r;
  size_t off = 0, len = strlen(three);
  ssize_t n = http_in_feed(in, three, len, &r);
  EXPECT(n == (ssize_t)strlen(R_SIMPLE) && r && strcmp(r->method, "GET") == 0);
  http_req_free(r);
  off += (size_t)n;
  n = http_in_feed(in, three + off, len - off, &r);
  EXPECT(n == (ssize_t)strlen(R_POST) && r && strcmp(r->method, "POST") == 0);
  http_req_free(r);
  off += (size_t)n;
  n = http_in_feed(in, three + off, len - off, &r);
  EXPECT(n == (ssize_t)strlen(R_HEAD) && r && r->is_head);
  http_req_free(r);
  off += (size_t)n;
  EXPECT(off == len);
  n = http_in_feed(in, "", 0, &r);
  EXPECT(n == 0 && r == NULL);
  http_in_free(in);
}

/* --- keep-alive, Expect, state -------------------------------------------- */

static int ka_of(const char *req) {
  http_in_t *in = http_in_new(&big);
  http_req_t *r = NULL;
  int ka = -1;
  if (http_in_feed(in, req, strlen(req), &r) == (ssize_t)strlen(req) && r) ka = r->keep_alive;
  http_req_free(r);
  http_in_free(in);
  return ka;
}

static void t_keep_alive(void) {
  EXPECT(ka_of("GET / HTTP/1.1\r\n\r\n") == 1);
  EXPECT(ka_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n") == 0);
  EXPECT(ka_of("GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n") == 0);
  EXPECT(ka_of("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n") == 1);
  EXPECT(ka_of("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n") == 0);
  EXPECT(ka_of("GET / HTTP/1.0\r\n\r\n") == 0);
  EXPECT(ka_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 1);
  EXPECT(ka_of("GET / HTTP/1.0\r\nConnection: close\r\n\r\n") == 0);

  /* After a close request, more bytes are an error, blank lines are not. */
  http_in_t *in = http_in_new(&big);
  http_req_t *r;
  const char *req = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
  EXPECT(http_in_feed(in, req, strlen(req), &r) == (ssize_t)strlen(req) && r && !r->keep_alive);
  http_req_free(r);
  EXPECT(http_in_feed(in, "\r\n", 2, &r) == 2 && !r);
  EXPECT(http_in_feed(in, req, strlen(req), &r) == -1 && !r && http_in_status(in) == 400);
  http_in_free(in);
}

static void t_expect_continue(void) {
  const char *head = "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
  http_in_t *in = http_in_new(&big);
  http_req_t *r;
  EXPECT(http_in_take_continue(in) == 0);
  EXPECT(http_in_feed(in, head, strlen(head), &r) == (ssize_t)strlen(head) && !r);
  EXPECT(http_in_state(in) == HTTP_IN_BODY);
  EXPECT(http_in_take_continue(in) == 1);
  EXPECT(http_in_take_continue(in) == 0); /* once */
  EXPECT(http_in_feed(in, "hel", 3, &r) == 3 && !r);
  EXPECT(http_in_take_continue(in) == 0);
  EXPECT(http_in_feed(in, "lo", 2, &r) == 2 && r && r->body_len == 5);
  EXPECT(r && memcmp(r->body, "hello", 5) == 0);
  EXPECT(r && http_req_header(r, "expect") != NULL);
  http_req_free(r);

  /* Body already here: nothing to ask for. */
  const char *full = "POST /up HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi";
  EXPECT(http_in_feed(in, full, strlen(full), &r) == (ssize_t)strlen(full) && r);
  http_req_free(r);
  EXPECT(http_in_take_continue(in) == 0);

  /* No body, or HTTP/1.0: no 100 Continue. */
  const char *nobody = "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n";
  EXPECT(http_in_feed(in, nobody, strlen(nobody), &r) == (ssize_t)strlen(nobody) && r);
  http_req_free(r);
  EXPECT(http_in_take_continue(in) == 0);
  http_in_free(in);

  in = http_in_new(&big);
  const char *h10 = "POST /up HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
  EXPECT(http_in_feed(in, h10, strlen(h10), &r) == (ssize_t)strlen(h10) && !r);
  EXPECT(http_in_take_continue(in) == 0);
  http_in_free(in);

  /* Chunked bodies qualify too. */
  in = http_in_new(&big);
  const char *ch =
      "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT(http_in_feed(in, ch, strlen(ch), &r) == (ssize_t)strlen(ch) && !r);
  EXPECT(http_in_take_continue(in) == 1);
  http_in_free(in);
}

static void t_state(void) {
  http_in_t *in = http_in_new(&big);
  http_req_t *r;
  EXPECT(http_in_state(in) == HTTP_IN_IDLE);
  EXPECT(http_in_feed(in, "\r\n", 2, &r) == 2 && http_in_state(in) == HTTP_IN_IDLE);
  EXPECT(http_in_feed(in, "PO", 2, &r) == 2 && http_in_state(in) == HTTP_IN_HEADERS);
  const char *rest = "ST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
  EXPECT(http_in_feed(in, rest, strlen(rest), &r) == (ssize_t)strlen(rest) && !r);
  EXPECT(http_in_state(in) == HTTP_IN_BODY);
  EXPECT(http_in_feed(in, "abc", 3, &r) == 3 && r);
  http_req_free(r);
  EXPECT(http_in_state(in) == HTTP_IN_IDLE);
  http_in_free(in);
}

static void t_header_lookup(void) {
  const char *req = "GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nContent-Type: text/plain\r\n\r\n";
  http_in_t *in = http_in_new(NULL);
  http_req_t *r;
  EXPECT(http_in_feed(in, req, strlen(req), &r) == (ssize_t)strlen(req) && r);
  if (r) {
    const http_header_t *h = http_req_header(r, "x-A");
    EXPECT(h && h->value_len == 1 && h->value[0] == '1' && h->value[1] == '\0');
    h = http_req_header(r, "CONTENT-TYPE");
    EXPECT(h && strcmp(h->value, "text/plain") == 0 && strcmp(h->name, "Content-Type") == 0);
    EXPECT(http_req_header(r, "Content") == NULL);
    EXPECT(http_req_header(r, "Missing") == NULL);
    EXPECT(r->method_id == HTTP_GET && r->method_len == 3);
    EXPECT(r->query_len == 0 && r->query[0] == '\0');
    EXPECT(r->request_id == NULL);
  }
  http_req_free(r);
  /* X-Request-Id is found while parsing: the first one, whatever its case */
  const char *ids = "GET / HTTP/1.1\r\nHost: x\r\nx-REQUEST-id:  a-1 \r\nX-Request-Id: b\r\n\r\n";
  EXPECT(http_in_feed(in, ids, strlen(ids), &r) == (ssize_t)strlen(ids) && r);
  EXPECT(r && r->request_id == &r->headers[1] && strcmp(r->request_id->value, "a-1") == 0);
  http_req_free(r);
  http_in_free(in);
}

/* A POST of blen body bytes (every byte value, NUL included); *hl: the
 * head's length, *len: the whole request's. */
static char *big_post(size_t blen, int *hl, size_t *len) {
  char *req = malloc(blen + 100);
  *hl = sprintf(req, "POST /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", blen);
  for (size_t i = 0; i < blen; i++)
    req[*hl + i] = (char)(i % 256);
  *len = (size_t)*hl + blen;
  return req;
}

/* The body is not copied into the request block: it stays in the parse
 * buffer until the request is recycled; a big body keeps the block small
 * enough to be recycled too. */
static void t_body_in_place(void) {
  static const http_limits_t lim = {8192, 16384, 100, 100000};
  size_t blen = 40000, len;
  int hl;
  char *req = big_post(blen, &hl, &len);
  const char *small = "POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  http_in_t *in = http_in_new(&lim);
  http_req_t *r, *prev = NULL;
  for (int round = 0; round < 3; round++) {
    EXPECT(http_in_feed(in, req, len, &r) == (ssize_t)len && r);
    EXPECT(r && r->body_len == blen && memcmp(r->body, req + hl, blen) == 0 &&
           r->body[blen] == '\0');
    EXPECT(r && (r->body < (const char *)r || r->body >= (const char *)r + r->block_size));
    EXPECT(r && r->block_size < 1024 && (!prev || r == prev)); /* the block is recycled */
    http_in_recycle(in, r);
    EXPECT(http_in_feed(in, small, strlen(small), &r) == (ssize_t)strlen(small) && r);
    EXPECT(r && r->body_len == 5 && strcmp(r->body, "abcde") == 0);
    prev = r;
    http_in_recycle(in, r);
  }
  http_in_free(in);
  free(req);
}

/* The parse buffer is reused, and released after a big body. */
static void t_buffer_reuse(void) {
  static const http_limits_t lim = {8192, 16384, 100, 100000};
  size_t blen = 40000, len;
  int hl;
  char *req = big_post(blen, &hl, &len);
  http_in_t *in = http_in_new(&lim);
  http_req_t *r;
  for (int round = 0; round < 3; round++) {
    EXPECT(http_in_feed(in, req, len, &r) == (ssize_t)len && r);
    EXPECT(r && r->body_len == blen && memcmp(r->body, req + hl, blen) == 0);
    http_req_free(r);
    EXPECT(http_in_feed(in, R_QUERY, strlen(R_QUERY), &r) == (ssize_t)strlen(R_QUERY) && r);
    EXPECT(r && http_req_header(r, "x-sp") &&
           strcmp(http_req_header(r, "x-sp")->value, "v  v") == 0);
    http_req_free(r);
  }
  http_in_free(in);
  free(req);
}

/* --- errors ---------------------------------------------------------------- */

/* The status must be the same for the whole buffer and for every split. */
static void expect_status(const http_limits_t *lim, const char *data, int status) {
  char *t = whole(lim, data);
  char *sp = strstr(t, "ERR ");
  int got = sp ? atoi(sp + 4) : 0;
  if (got != status) {
    case_failed = 1;
    printf("# want %d for [%s]\n# got [%s]\n", status, data, t);
    free(t);
    return;
  }
  free(t);
  check_splits(lim, data, NULL);
}

static void t_413(void) {
  /* Content-Length too big: refused at the end of the headers, no body sent. */
  expect_status(&small, "POST / HTTP/1.1\r\nContent-Length: 33\r\n\r\n", 413);
  expect_status(&small, "POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", 413);
  /* Exactly the limit is fine. */
  char ok[128];
  snprintf(ok, sizeof(ok), "POST / HTTP/1.1\r\nContent-Length: 32\r\n\r\n%032d", 0);
  char *t = whole(&small, ok);
  EXPECT(strstr(t, "ERR") == NULL && strstr(t, "POST /") != NULL);
  free(t);
  /* Chunked, growing past the limit; refused at the chunk header. */
  expect_status(&small,
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                "10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n1\r\n",
                413);
  expect_status(&small, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n", 413);
}

static void t_414(void) {
  char req[256];
  snprintf(req, sizeof(req), "GET /%064d HTTP/1.1\r\n\r\n", 0); /* 65-byte URL */
  expect_status(&small, req, 414);
  snprintf(req, sizeof(req), "GET /%063d HTTP/1.1\r\n\r\n", 0); /* 64: fine */
  char *t = whole(&small, req);
  EXPECT(strstr(t, "ERR") == NULL);
  free(t);
  /* A URL too long wins over a head too large, whatever the split. */
  static const http_limits_t tight = {64, 40, 8, 32};
  snprintf(req, sizeof(req), "GET /%0100d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
  expect_status(&tight, req, 414);
}

static void t_431_size(void) {
  char req[512];
  snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: %0250d\r\n\r\n", 0);
  expect_status(&small, req, 431);
  snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nX-%0250d: 1\r\n\r\n", 0);
  expect_status(&small, req, 431);
  /* URL within max_url but the request line alone beyond max_header_size. */
  static const http_limits_t tight = {64, 40, 8, 32};
  snprintf(req, sizeof(req), "GET /%050d HTTP/1.1\r\n\r\n", 0);
  expect_status(&tight, req, 431);
  /* Trailers count too. */
  snprintf(req, sizeof(req),
           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nT: %0260d\r\n\r\n",
           0);
  expect_status(&small, req, 431);
}

static void t_431_count(void) {
  expect_status(&small,
                "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n"
                "I: 9\r\n\r\n",
                431);
  char *t =
      whole(&small, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\n"
                    "H: 8\r\n\r\n");
  EXPECT(strstr(t, "ERR") == NULL);
  free(t);
}

static void t_501_te(void) {
  expect_status(&big, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
  expect_status(&big, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  expect_status(&big, "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501);
  expect_status(
      &big, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      501);
  expect_status(&big, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 501);
}

static void t_400_cl_te(void) {
  expect_status(&big,
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\n\r\n",
                400);
  expect_status(&big, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                400);
  char *t = whole(&big, "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n");
  EXPECT(strstr(t, "ERR 400 Content-Length together with Transfer-Encoding") != NULL);
  free(t);
}

static void t_400_cl(void) {
  expect_status(&big, "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
  expect_status(&big, "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400);
  expect_status(&big, "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
  expect_status(&big, "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
}

static void t_400_request_line(void) {
  expect_status(&big, "GET\r\n\r\n", 400);
  expect_status(&big, "GET / HTTP/1.1 extra\r\n\r\n", 400);
  expect_status(&big, "GET /a\x01 HTTP/1.1\r\n\r\n", 400);
  expect_status(&big, "get / HTTP/1.1\r\n\r\n", 400);
  expect_status(&big, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
  expect_status(&big, "GET / XTTP/1.1\r\n\r\n", 400);
  expect_status(&big, "GET / HTTP/x.1\r\n\r\n", 400);
  expect_status(&big, "GET / HTTP/1.1\rX\n\r\n", 400);
  expect_status(&big, "GET  HTTP/1.1\r\n\r\n", 400);
}

static void t_400_header(void) {
  expect_status(&big, "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
  expect_status(&big, "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
  expect_status(&big, "GET / HTTP/1.1\r\nX-A: a\x01z\r\n\r\n", 400);
  expect_status(&big, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
}

static void t_505_417(void) {
  expect_status(&big, "GET / HTTP/2.0\r\n\r\n", 505);
  expect_status(&big, "GET / HTTP/1.2\r\n\r\n", 505);
  expect_status(&big, "POST / HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417);
}

static void t_error_sticks(void) {
  http_in_t *in = http_in_new(&small);
  http_req_t *r = (http_req_t *)1;
  const char *bad = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
  EXPECT(http_in_status(in) == 0 && http_in_error(in) == NULL);
  EXPECT(http_in_feed(in, bad, strlen(bad), &r) == -1 && r == NULL);
  EXPECT(http_in_status(in) == 400 && http_in_error(in) != NULL);
  EXPECT(http_in_feed(in, R_SIMPLE, strlen(R_SIMPLE), &r) == -1 && r == NULL);
  EXPECT(http_in_status(in) == 400);
  http_in_free(in);
  /* Freeing mid-request is fine (no leak under ASan). */
  in = http_in_new(&small);
  const char *part = "POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab";
  EXPECT(http_in_feed(in, part, strlen(part), &r) == (ssize_t)strlen(part) && !r);
  EXPECT(http_in_state(in) == HTTP_IN_BODY);
  http_in_free(in);
}

/* --- response side --------------------------------------------------------- */

static const char DATE[] = "Sun, 06 Nov 1994 08:49:37 GMT";

static void t_format_head(void) {
  char buf[512];
  const char *extra = "Content-Type: application/json\r\nX-Request-Id: 7\r\n";
  static const struct {
    int status;
    size_t clen;
    int keep;
    const char *extra, *want;
  } cases[] = {
      {200, 13, 1, "Content-Type: application/json\r\nX-Request-Id: 7\r\n",
       "HTTP/1.1 200 OK\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Content-Length: 13\r\nConnection: keep-alive\r\n"
       "Content-Type: application/json\r\nX-Request-Id: 7\r\n\r\n"},
      {431, 0, 0, NULL,
       "HTTP/1.1 431 Request Header Fields Too Large\r\nServer: fcfs\r\n"
       "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
      {404, 0, 1, NULL,
       "HTTP/1.1 404 Not Found\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"},
      {204, 0, 1, NULL,
       "HTTP/1.1 204 No Content\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Connection: keep-alive\r\n\r\n"},
      /* no phrase: "Unknown"; 1xx: no length */
      {599, 18446744073709551613ull, 1, NULL,
       "HTTP/1.1 599 Unknown\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Content-Length: 18446744073709551613\r\nConnection: keep-alive\r\n\r\n"},
      {123, 5, 0, NULL,
       "HTTP/1.1 123 Unknown\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Connection: close\r\n\r\n"},
      /* a streamed body: chunked instead of a length */
      {200, HTTP_CHUNKED, 1, NULL,
       "HTTP/1.1 200 OK\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
      {200, HTTP_UNTIL_CLOSE, 0, NULL,
       "HTTP/1.1 200 OK\r\nServer: fcfs\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
       "Connection: close\r\n\r\n"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *x = cases[i].extra;
    ssize_t n = http_format_head(buf, sizeof(buf), cases[i].status, DATE, cases[i].clen,
                                 cases[i].keep, x, x ? strlen(x) : 0);
    size_t wl = strlen(cases[i].want);
    if (n != (ssize_t)wl || memcmp(buf, cases[i].want, wl) != 0) {
      case_failed = 1;
      printf("# case %zu (status %d): got %.*s\n", i, cases[i].status, n > 0 ? (int)n : 0, buf);
    }
  }

  /* Every capacity short of the full length fails and writes nothing past it. */
  size_t full = (size_t)http_format_head(buf, sizeof(buf), 200, DATE, 13, 1, extra, strlen(extra));
  for (size_t cap = 0; cap < full; cap++) {
    char small_buf[512];
    memset(small_buf, 'Z', sizeof(small_buf));
    if (http_format_head(small_buf, cap, 200, DATE, 13, 1, extra, strlen(extra)) != -1) {
      case_failed = 1;
      printf("# cap %zu accepted\n", cap);
    }
    if (small_buf[cap] != 'Z') {
      case_failed = 1;
      printf("# cap %zu overrun\n", cap);
    }
  }
  EXPECT(http_format_head(buf, full, 200, DATE, 13, 1, extra, strlen(extra)) == (ssize_t)full);
  EXPECT(http_format_head(buf, sizeof(buf), 99, DATE, 0, 1, NULL, 0) == -1);
  EXPECT(http_format_head(buf, sizeof(buf), 1000, DATE, 0, 1, NULL, 0) == -1);
  EXPECT(http_format_head(buf, sizeof(buf), 200, DATE, 7, 1, "X: y\r\n", (size_t)-1 / 2) == -1);
}

static void t_head_has(void) {
  const char *b = "Content-Type: text/plain\r\nx-request-id: 7\r\nCache-Control: no-store\r\n";
  size_t bl = strlen(b);
  EXPECT(http_head_has(b, bl, "X-Request-Id", 12) == 1);
  EXPECT(http_head_has(b, bl, "CONTENT-TYPE", 12) == 1);
  EXPECT(http_head_has(b, bl, "cache-control", 13) == 1);
  EXPECT(http_head_has(b, bl, "Y-Request-Id", 12) == 0); /* differs in its first byte only */
  EXPECT(http_head_has(b, bl, "X-Request-Ix", 12) == 0);
  EXPECT(http_head_has(b, bl, "Content", 7) == 0);
  EXPECT(http_head_has(b, bl, "x-request-id", 12) == 1);
  EXPECT(http_head_has(b, 10, "Content-Type", 12) == 0); /* cut before the colon */
  EXPECT(http_head_has("", 0, "X", 1) == 0);
}

/* Every id the parser gives has its name; the list ends with NULL. */
static void t_method_name(void) {
  EXPECT_STR(http_method_name(HTTP_GET), "GET");
  EXPECT_STR(http_method_name(HTTP_POST), "POST");
  EXPECT_STR(http_method_name(HTTP_DELETE), "DELETE");
  int n = 0;
  while (http_method_name(n) != NULL)
    n++;
  EXPECT(n > HTTP_PATCH && n > HTTP_OPTIONS);
  for (int i = 0; i < n; i++)
    EXPECT(strcmp(http_method_name(i), http_method_str((enum http_method)i)) == 0);
  EXPECT(http_method_name(-1) == NULL && http_method_name(n + 1) == NULL);
}

static void t_reason(void) {
  EXPECT_STR(http_reason(200), "OK");
  EXPECT_STR(http_reason(404), "Not Found");
  EXPECT_STR(http_reason(413), "Payload Too Large");
  EXPECT_STR(http_reason(414), "URI Too Long");
  EXPECT_STR(http_reason(431), "Request Header Fields Too Large");
  EXPECT_STR(http_reason(503), "Service Unavailable");
  EXPECT_STR(http_reason(203), "Non-Authoritative Information");
  EXPECT_STR(http_reason(299), "Unknown");
  EXPECT_STR(http_reason(-1), "Unknown");
}

static void t_format_date(void) {
  char d[30];
  memset(d, 'X', sizeof(d));
  http_format_date(d, 784111777);
  EXPECT_STR(d, DATE);
  http_format_date(d, 0);
  EXPECT_STR(d, "Thu, 01 Jan 1970 00:00:00 GMT");
  http_format_date(d, 951782400);
  EXPECT_STR(d, "Tue, 29 Feb 2000 00:00:00 GMT");
  http_format_date(d, 1735689599);
  EXPECT_STR(d, "Tue, 31 Dec 2024 23:59:59 GMT");
}

int main(void) {
  run("simple GET, every split", t_simple);
  run("query, fragment, empty and padded header values, every split", t_query_headers);
  run("Content-Length body, every split", t_post_cl);
  run("chunked body with extensions and trailers, every split", t_chunked);
  run("HEAD flag", t_head);
  run("absolute-form and asterisk targets", t_targets);
  run("a folded header value (obs-fold) is its pieces joined, without the line breaks", t_folded);
  run("Upgrade is ignored, the connection stays HTTP/1.1", t_upgrade_ignored);
  run("pipelined batch returned one at a time in order, every split", t_pipelined);
  run("keep-alive rules for 1.0, 1.1 and Connection", t_keep_alive);
  run("Expect: 100-continue", t_expect_continue);
  run("parse state for the caller's timers", t_state);
  run("case-insensitive header lookup", t_header_lookup);
  run("parse buffer reuse across big and small requests", t_buffer_reuse);
  run("the body stays in the parse buffer, not copied into the request block", t_body_in_place);
  run("413 body too large (Content-Length and chunked)", t_413);
  run("414 URL too long, and 414 wins over 431", t_414);
  run("431 headers too large", t_431_size);
  run("431 too many headers", t_431_count);
  run("501 Transfer-Encoding other than chunked, CONNECT", t_501_te);
  run("400 Content-Length with Transfer-Encoding", t_400_cl_te);
  run("400 bad or duplicate Content-Length", t_400_cl);
  run("400 malformed request line", t_400_request_line);
  run("400 bad header or chunk framing", t_400_header);
  run("505 HTTP version, 417 unknown expectation", t_505_417);
  run("errors are sticky", t_error_sticks);
  run("http_format_head exact output and capacity", t_format_head);
  run("http_head_has: names compared regardless of case", t_head_has);
  run("http_method_name: every method id, then NULL", t_method_name);
  run("http_reason", t_reason);
  run("http_format_date", t_format_date);
  return tap_done();
}
