/* fuzz_http.c -- libFuzzer target for the HTTP request layer (host/http.c).
 *
 * The first input byte picks the limits and how the rest is cut into feeds;
 * the rest is fed the way server.c does (unconsumed bytes are fed again after
 * each request). Every request that comes out is checked for internal
 * consistency, and the response formatter is exercised with values taken
 * from it. Crashes, sanitizer reports and failed checks (abort) are findings.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ihost \
 *     spec/fuzz/fuzz_http.c host/http.c -lhttp_parser -o fuzz_http
 *   ./fuzz_http -max_len=4096 corpus/
 */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) abort();                                                                             \
  } while (0)

static void check_req(const http_req_t *r) {
  char buf[1024], date[30];
  CHECK(r->method && strlen(r->method) == r->method_len);
  CHECK(r->path && r->path_len > 0 && r->path[r->path_len] == '\0');
  CHECK(r->query && r->query[r->query_len] == '\0');
  CHECK(memchr(r->path, '?', r->path_len) == NULL);
  CHECK((r->body == NULL) == (r->body_len == 0));
  CHECK(r->body == NULL || r->body[r->body_len] == '\0');
  CHECK(r->keep_alive == 0 || r->keep_alive == 1);
  CHECK(r->http_minor == 0 || r->http_minor == 1);
  for (size_t i = 0; i < r->nheaders; i++) {
    const http_header_t *h = &r->headers[i];
    CHECK(h->name[h->name_len] == '\0' && h->value[h->value_len] == '\0');
    CHECK(h->name_len > 0);
    /* Lookup finds this header or an earlier one of the same name. */
    if (!memchr(h->name, '\0', h->name_len)) {
      const http_header_t *f = http_req_header(r, h->name);
      CHECK(f && f <= h);
    }
  }
  if (r->body) {
    volatile char sum = 0;
    for (size_t i = 0; i < r->body_len; i++)
      sum ^= r->body[i];
    (void)sum;
  }
  http_format_date(date, (time_t)r->body_len * 86400);
  CHECK(strlen(date) == 29);
  ssize_t n = http_format_head(buf, sizeof(buf), 100 + (int)(r->path_len % 900), date, r->body_len,
                               r->keep_alive, r->query, r->query_len);
  CHECK(n == -1 || (n > 0 && (size_t)n <= sizeof(buf)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  http_limits_t lim = {8192, 16384, 100, 1 << 20};
  if (mode & 0x80) lim = (http_limits_t){48, 160, 6, 40};
  size_t step = (size_t)(mode & 0x7f); /* 0: everything at once */

  http_in_t *in = http_in_new(&lim);
  if (!in) return 0;
  /* pend holds what arrived but was not consumed, as a server's read buffer. */
  char *pend = malloc(size + 1);
  size_t plen = 0, off = 0, from = 0;
  int done = 0;
  while (from < size && !done) {
    size_t take = step ? step : size;
    if (take > size - from) take = size - from;
    memcpy(pend + plen, data + from, take);
    plen += take;
    from += take;
    while (off < plen) {
      http_req_t *r;
      ssize_t n = http_in_feed(in, pend + off, plen - off, &r);
      if (n < 0) {
        int st = http_in_status(in);
        CHECK(r == NULL && st >= 400 && st <= 599 && http_in_error(in));
        done = 1;
        break;
      }
      CHECK((size_t)n <= plen - off);
      off += (size_t)n;
      if (!r) {
        CHECK(off == plen);
        (void)http_in_take_continue(in);
        break;
      }
      CHECK(http_in_state(in) == HTTP_IN_IDLE);
      check_req(r);
      if (!r->keep_alive) done = 1;
      http_req_free(r);
      if (done) break;
    }
  }
  free(pend);
  http_in_free(in);
  return 0;
}
