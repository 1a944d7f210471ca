/* http.c -- HTTP/1.1 request parsing on top of http-parser 2.9, and response
 * head formatting. No I/O: server.c owns the sockets and calls in here.
 *
 * Parsing: one http_in_t per connection holds an http_parser plus one growable
 * byte buffer reused for every request on the connection. The parser's data
 * callbacks may deliver the URL, each header name/value and the body in any
 * number of pieces across feeds. The head, from the URL's first byte to its
 * last piece, is copied to the buffer as received, once per feed (at the end
 * of the feed, or of the head: the pieces of one feed are not copied one by
 * one), and the tokens are remembered as (offset, length) spans, so the
 * buffer may move when it grows; body pieces are appended after it. At
 * on_message_complete every string of the request is ended by a NUL in
 * place and the request is one heap block (http_req_t + header array)
 * pointing into the buffer (see below), the parser is paused so
 * http_in_feed() returns right after that request, and the block is handed to
 * the caller, who frees it with http_req_free() or gives it back with
 * http_in_recycle(): the connection keeps one such block (up to
 * HTTP_BUF_KEEP bytes) for its next request, so a keep-alive connection
 * allocates nothing per request once warm. The buffer stays with the
 * connection (released when it grew past HTTP_BUF_KEEP, so one big upload
 * does not pin memory for the connection's lifetime). A request's strings
 * and body point into that buffer: the buffer is neither reused nor
 * released before the request is recycled, or the next request begins (the
 * server feeds nothing while a request is in flight). So they are copied
 * once in here (from the caller's read buffer), and the path and body once
 * more into Lua strings by request.c.
 *
 * Limits are checked as bytes arrive, never after buffering a whole request.
 * Errors are a status code plus a static reason string.
 */
#include "http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A parse buffer bigger than this is freed after its request completes. */
#define HTTP_BUF_KEEP (16 * 1024)
#define HTTP_BUF_MIN 512

typedef struct {
  size_t name_off, name_len;
  size_t value_off, value_len;
} span_hdr_t;

enum { CB_NONE, CB_FIELD, CB_VALUE };

struct http_in_s {
  http_parser p;
  http_limits_t lim;

  char *buf; /* the head's bytes from the URL on, as received, then the body */
  size_t len, cap;
  span_hdr_t *hdr;
  size_t nhdr, hdr_cap;
  size_t url_off, url_len;
  size_t body_off, body_len;

  const char *feed_data; /* start of the buffer being fed, for byte counting */
  const char *raw;       /* in it: the head bytes not yet copied to buf (at len), or NULL */
  const char *raw_end;   /* the end of the last URL/header piece among them */
  size_t head_base;      /* head bytes of this request consumed by earlier feeds */
  size_t head_pos;       /* head bytes up to the end of the last URL/header piece */
  size_t trailer_bytes;

  http_in_state_t state;
  int last_cb;
  int folded; /* the current header's value came in pieces apart in the head (obs-fold) */
  int in_trailers;
  int te_count, te_bad; /* Transfer-Encoding headers seen, any not "chunked" */
  int expect_continue, expect_bad;
  size_t request_id; /* 1 + the index of the first X-Request-Id header, 0 if none */
  int continue_pending;
  int keep_alive;
  int after_close; /* a keep_alive == 0 request completed */

  int status; /* != 0 once in error */
  const char *err;
  http_req_t *done;  /* set by on_message_complete, taken by http_in_feed */
  http_req_t *spare; /* a recycled request block, reused by the next build */
};

static const char ERR_URL[] = "URL too long";
static const char ERR_HEAD[] = "request headers too large";
static const char ERR_NHDR[] = "too many request headers";
static const char ERR_BODY[] = "request body too large";
static const char ERR_TE[] = "unsupported Transfer-Encoding";
static const char ERR_CLTE[] = "Content-Length together with Transfer-Encoding";
static const char ERR_CL[] = "bad or duplicate Content-Length";
static const char ERR_VERSION[] = "unsupported HTTP version";
static const char ERR_CONNECT[] = "CONNECT not supported";
static const char ERR_EXPECT[] = "unsupported expectation";
static const char ERR_NAME[] = "invalid character in header name";
static const char ERR_NOMEM[] = "out of memory";
static const char ERR_AFTER_CLOSE[] = "data after a Connection: close request";

static int fail(http_in_t *in, int status, const char *err) {
  if (!in->status) {
    in->status = status;
    in->err = err;
  }
  return -1;
}

static int grow(http_in_t *in, size_t need) {
  if (need <= in->cap) return 0;
  size_t cap = in->cap ? in->cap : HTTP_BUF_MIN;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *b = realloc(in->buf, cap);
  if (!b) return -1;
  in->buf = b;
  in->cap = cap;
  return 0;
}

/* A parse buffer that grew past HTTP_BUF_KEEP goes (no request uses it). */
static void buf_trim(http_in_t *in) {
  if (in->cap > HTTP_BUF_KEEP) {
    free(in->buf);
    in->buf = NULL;
    in->cap = 0;
  }
}

static int append(http_in_t *in, const char *at, size_t n) {
  if (n > SIZE_MAX - in->len || grow(in, in->len + n)) return fail(in, 500, ERR_NOMEM);
  memcpy(in->buf + in->len, at, n);
  in->len += n;
  return 0;
}

/* The offset in buf of the head byte at (in the data being fed): buf holds
 * the head as received from the URL on, so that is its distance from the
 * URL's first byte. */
static size_t raw_offset(const http_in_t *in, const char *at) {
  return in->len + (size_t)(at - in->raw);
}

/* Copy the head bytes of the data being fed, up to end, to buf. */
static int flush_raw(http_in_t *in, const char *end) {
  const char *from = in->raw;
  if (from == NULL || end == from) return 0;
  in->raw = end;
  return append(in, from, (size_t)(end - from));
}

/* Bytes of the request head so far, up to the end of the piece at..at+n. */
static int check_head(http_in_t *in, const char *at, size_t n) {
  in->head_pos = in->head_base + (size_t)(at + n - in->feed_data);
  if (in->head_pos > in->lim.max_header_size) return fail(in, 431, ERR_HEAD);
  return 0;
}

static int ieq(const char *s, size_t n, const char *lit) {
  size_t l = strlen(lit);
  return n == l && strncasecmp(s, lit, l) == 0;
}

/* A header line is complete (and in buf): trim the value and look at the
 * few names the framing depends on, and X-Request-Id's. */
static void end_header(http_in_t *in) {
  span_hdr_t *h = &in->hdr[in->nhdr - 1];
  char *v = in->buf + h->value_off;
  if (in->folded) { /* the pieces joined, as the parser gave them: without the line breaks */
    size_t k = 0;
    for (size_t i = 0; i < h->value_len; i++)
      if (v[i] != '\r' && v[i] != '\n') v[k++] = v[i];
    h->value_len = k;
    in->folded = 0;
  }
  while (h->value_len && (v[h->value_len - 1] == ' ' || v[h->value_len - 1] == '\t'))
    h->value_len--;
  while (h->value_len && (v[0] == ' ' || v[0] == '\t')) {
    v++;
    h->value_off++;
    h->value_len--;
  }
  const char *name = in->buf + h->name_off;
  if (ieq(name, h->name_len, "transfer-encoding")) {
    in->te_count++;
    if (!ieq(v, h->value_len, "chunked")) in->te_bad = 1;
  } else if (ieq(name, h->name_len, "expect")) {
    if (ieq(v, h->value_len, "100-continue"))
      in->expect_continue = 1;
    else
      in->expect_bad = 1;
  } else if (in->request_id == 0 && ieq(name, h->name_len, "x-request-id")) {
    in->request_id = in->nhdr;
  }
}

/* --- http_parser callbacks; the parser's data field is the http_in_t ----- */

static int on_message_begin(http_parser *p) {
  http_in_t *in = p->data;
  buf_trim(in); /* the previous request's body is gone with it */
  in->len = 0;
  in->nhdr = 0;
  in->url_off = in->url_len = 0;
  in->body_off = in->body_len = 0;
  in->head_base = in->head_pos = 0;
  in->trailer_bytes = 0;
  in->last_cb = CB_NONE;
  in->in_trailers = 0;
  in->te_count = in->te_bad = 0;
  in->expect_continue = in->expect_bad = 0;
  in->request_id = 0;
  in->continue_pending = 0;
  in->keep_alive = 0;
  in->state = HTTP_IN_HEADERS;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  http_in_t *in = p->data;
  in->url_len += n;
  if (in->url_len > in->lim.max_url) return fail(in, 414, ERR_URL);
  /* No 431 yet: a URL that will turn out too long must answer 414 however
   * the bytes were split, so the head size is checked once the URL ends. */
  in->head_pos = in->head_base + (size_t)(at + n - in->feed_data);
  if (in->raw == NULL) in->raw = at; /* the URL's first byte (see http_in_feed) */
  in->raw_end = at + n;
  return 0;
}

/* Account for n bytes of a header name or value: -1 on a limit (the error is
 * set), 1 for trailer bytes (read and dropped, but they still cost head
 * bytes), 0 for a header to keep. */
static int header_bytes(http_in_t *in, const char *at, size_t n) {
  if (in->in_trailers) {
    in->trailer_bytes += n;
    return in->trailer_bytes > in->lim.max_header_size ? fail(in, 431, ERR_HEAD) : 1;
  }
  return check_head(in, at, n) ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  http_in_t *in = p->data;
  int rc = header_bytes(in, at, n);
  if (rc != 0) return rc < 0 ? -1 : 0;
  /* Debian builds http-parser non-strict, which lets a space into names. */
  if (memchr(at, ' ', n)) return fail(in, 400, ERR_NAME);
  if (in->last_cb != CB_FIELD) {
    if (in->nhdr) {
      if (flush_raw(in, in->raw_end)) return -1; /* the last header into buf */
      end_header(in);
    }
    if (in->nhdr >= in->lim.max_headers) return fail(in, 431, ERR_NHDR);
    if (in->nhdr == in->hdr_cap) {
      size_t cap = in->hdr_cap ? in->hdr_cap * 2 : 16;
      span_hdr_t *h = realloc(in->hdr, cap * sizeof(*h));
      if (!h) return fail(in, 500, ERR_NOMEM);
      in->hdr = h;
      in->hdr_cap = cap;
    }
    span_hdr_t *h = &in->hdr[in->nhdr++];
    h->name_off = raw_offset(in, at);
    h->name_len = 0;
    h->value_off = h->name_off; /* empty until a value arrives */
    h->value_len = 0;
    in->last_cb = CB_FIELD;
  }
  in->hdr[in->nhdr - 1].name_len += n;
  in->raw_end = at + n;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  http_in_t *in = p->data;
  int rc = header_bytes(in, at, n);
  if (rc != 0) return rc < 0 ? -1 : 0;
  span_hdr_t *h = &in->hdr[in->nhdr - 1];
  size_t off = raw_offset(in, at);
  if (in->last_cb != CB_VALUE) {
    h->value_off = off;
    in->folded = 0;
    in->last_cb = CB_VALUE;
  } else if (off != h->value_off + h->value_len) {
    in->folded = 1; /* an obs-fold: the line break between the pieces is in buf too */
  }
  h->value_len = off + n - h->value_off;
  in->raw_end = at + n;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  http_in_t *in = p->data;
  /* the head into buf, and a NUL after its last URL or header piece */
  if (flush_raw(in, in->raw_end) || (in->len == in->cap && grow(in, in->len + 1)))
    return fail(in, 500, ERR_NOMEM);
  in->raw = NULL;
  in->buf[in->len++] = '\0';
  if (in->nhdr) end_header(in);
  in->in_trailers = 1;
  if (in->head_pos > in->lim.max_header_size) return fail(in, 431, ERR_HEAD);
  if (p->http_major != 1 || p->http_minor > 1) return fail(in, 505, ERR_VERSION);
  if (p->method == HTTP_CONNECT) return fail(in, 501, ERR_CONNECT);
  /* http-parser accepts "gzip, chunked" and friends; we only do chunked. */
  if (in->te_count > 1 || in->te_bad) return fail(in, 501, ERR_TE);
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_cl = (p->flags & F_CONTENTLENGTH) != 0;
  if (has_cl && !chunked && p->content_length > in->lim.max_body) return fail(in, 413, ERR_BODY);
  int body = chunked || (has_cl && p->content_length > 0);
  if (in->expect_bad && p->http_minor == 1) return fail(in, 417, ERR_EXPECT);
  in->continue_pending = body && in->expect_continue && p->http_minor == 1;
  in->keep_alive = http_should_keep_alive(p);
  /* Upgrade requests (websocket, h2c) are served as plain HTTP/1.1: a server
   * may ignore Upgrade (RFC 9110 7.8). The parser's "stop after an upgrade"
   * changes nothing here, as every message end pauses it anyway. */
  in->body_off = in->len;
  if (has_cl && !chunked && p->content_length > 0 &&
      grow(in, in->len + (size_t)p->content_length + 1)) /* + the NUL after it */
    return fail(in, 500, ERR_NOMEM);
  in->state = body ? HTTP_IN_BODY : HTTP_IN_IDLE;
  return 0;
}

static int on_chunk_header(http_parser *p) {
  http_in_t *in = p->data;
  /* p->content_length is the size of the chunk about to come. */
  if (p->content_length > in->lim.max_body - in->body_len) return fail(in, 413, ERR_BODY);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  http_in_t *in = p->data;
  if (n > in->lim.max_body - in->body_len) return fail(in, 413, ERR_BODY);
  in->body_len += n;
  return append(in, at, n);
}

/* Copy the current request into one heap block. */
static http_req_t *build(http_in_t *in) {
  const http_parser *p = &in->p;
  char *url = in->buf + in->url_off;
  size_t ulen = in->url_len;
  size_t i;

  /* Request target: origin-form "/p?q", absolute-form "http://h/p?q", or
   * "*". The fragment, if any, is dropped. */
  char *path = url;
  size_t plen = ulen;
  if (ulen && url[0] != '/' && url[0] != '*') {
    char *s = memchr(url, '/', ulen);
    if (s && s + 1 < url + ulen && s[1] == '/') { /* scheme://authority */
      char *a = memchr(s + 2, '/', (size_t)(url + ulen - (s + 2)));
      char *q = memchr(s + 2, '?', (size_t)(url + ulen - (s + 2)));
      if (q && (!a || q < a)) a = q;
      path = a ? a : url + ulen;
      plen = (size_t)(url + ulen - path);
    }
  }
  const char *hash = memchr(path, '#', plen);
  if (hash) plen = (size_t)(hash - path);
  char *query = NULL;
  size_t qlen = 0;
  char *qm = memchr(path, '?', plen);
  if (qm) {
    query = qm + 1;
    qlen = plen - (size_t)(qm + 1 - path);
    plen = (size_t)(qm - path);
  }
  /* The strings stay in the buffer, each ended by a NUL written over the
   * byte after it there (a copy of the head as received: a delimiter, the
   * whitespace trimmed after a value, or the NUL after the head's last
   * piece, on_headers_complete). Empty ones are "". */
  char *buf = in->buf;
  size_t total = sizeof(http_req_t) + in->nhdr * sizeof(http_header_t);
  http_req_t *r = in->spare;
  if (r && r->block_size >= total) {
    in->spare = NULL;
  } else {
    r = malloc(total);
    if (!r) return NULL;
    r->block_size = total;
  }
  http_header_t *hs = (http_header_t *)(r + 1);

  static const struct {
    const char *name;
    size_t len;
  } methods[] = {
#define XX(num, name, string) {#string, sizeof(#string) - 1},
      HTTP_METHOD_MAP(XX)
#undef XX
  };
  r->method = methods[p->method].name;
  r->method_len = methods[p->method].len;
  r->method_id = (int)p->method;
  if (plen == 0) {
    r->path = "/";
    r->path_len = 1;
  } else {
    path[plen] = '\0';
    r->path = path;
    r->path_len = plen;
  }
  if (qlen) query[qlen] = '\0';
  r->query = qlen ? query : "";
  r->query_len = qlen;
  for (i = 0; i < in->nhdr; i++) {
    const span_hdr_t *h = &in->hdr[i];
    hs[i].name = h->name_len ? buf + h->name_off : "";
    hs[i].name_len = h->name_len;
    if (h->name_len) buf[h->name_off + h->name_len] = '\0';
    hs[i].value = h->value_len ? buf + h->value_off : "";
    hs[i].value_len = h->value_len;
    if (h->value_len) buf[h->value_off + h->value_len] = '\0';
  }
  r->headers = hs;
  r->nheaders = in->nhdr;
  r->request_id = in->request_id ? &hs[in->request_id - 1] : NULL;
  r->body = in->body_len ? in->buf + in->body_off : NULL; /* in place, NUL-terminated */
  r->body_len = in->body_len;
  r->keep_alive = in->keep_alive;
  r->http_minor = p->http_minor;
  r->is_head = p->method == HTTP_HEAD;
  return r;
}

static int on_message_complete(http_parser *p) {
  http_in_t *in = p->data;
  if (in->body_len && grow(in, in->len + 1)) return fail(in, 500, ERR_NOMEM);
  if (in->body_len) in->buf[in->len] = '\0';
  http_req_t *r = build(in);
  if (!r) return fail(in, 500, ERR_NOMEM);
  in->done = r;
  in->after_close = !r->keep_alive;
  in->state = HTTP_IN_IDLE;
  in->continue_pending = 0; /* the body is all here already */
  in->len = 0; /* the buffer is trimmed at recycle time, or when the next request begins */
  http_parser_pause(p, 1); /* make http_parser_execute return now */
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* --- public API ----------------------------------------------------------- */

http_in_t *http_in_new(const http_limits_t *lim) {
  http_in_t *in = calloc(1, sizeof(*in));
  if (!in) return NULL;
  if (lim) {
    in->lim = *lim;
  } else {
    in->lim.max_url = HTTP_DEFAULT_MAX_URL;
    in->lim.max_header_size = HTTP_DEFAULT_MAX_HEADER_SIZE;
    in->lim.max_headers = HTTP_DEFAULT_MAX_HEADERS;
    in->lim.max_body = HTTP_DEFAULT_MAX_BODY;
  }
  http_parser_init(&in->p, HTTP_REQUEST);
  in->p.data = in;
  in->state = HTTP_IN_IDLE;
  return in;
}

void http_in_free(http_in_t *in) {
  if (!in) return;
  free(in->done);
  free(in->spare);
  free(in->buf);
  free(in->hdr);
  free(in);
}

static int map_errno(http_in_t *in, enum http_errno e) {
  switch (e) {
  case HPE_HEADER_OVERFLOW:
    return fail(in, 431, ERR_HEAD);
  case HPE_INVALID_CONTENT_LENGTH:
    return fail(in, 400, ERR_CL);
  case HPE_UNEXPECTED_CONTENT_LENGTH: {
    /* The last header line has not been through end_header() yet. */
    for (size_t i = 0; i < in->nhdr; i++)
      if (ieq(in->buf + in->hdr[i].name_off, in->hdr[i].name_len, "transfer-encoding"))
        return fail(in, 400, ERR_CLTE);
    return fail(in, 400, ERR_CL);
  }
  case HPE_INVALID_TRANSFER_ENCODING:
    return fail(in, 501, ERR_TE);
  default: /* malformed: request line, header syntax, chunk framing, ... */
    return fail(in, 400, http_errno_description(e));
  }
}

ssize_t http_in_feed(http_in_t *in, const char *data, size_t len, http_req_t **req) {
  *req = NULL;
  if (in->status) return -1;
  if (len == 0) return 0; /* 0 means EOF to http_parser; the caller handles EOF */
  if (len > SSIZE_MAX) len = SSIZE_MAX;
  if (in->after_close) {
    /* The non-strict parser would read on; the connection is closing. */
    for (size_t i = 0; i < len; i++)
      if (data[i] != '\r' && data[i] != '\n') return fail(in, 400, ERR_AFTER_CLOSE);
    return (ssize_t)len;
  }
  in->feed_data = data;
  /* A head that goes on from an earlier feed goes on at the start of this
   * one; it is copied to buf at the end of the feed, or of the head. */
  in->raw = in->state == HTTP_IN_HEADERS && in->url_len ? data : NULL;
  in->raw_end = data;
  size_t n = http_parser_execute(&in->p, &settings, data, len);
  if (flush_raw(in, data + n)) return -1;
  in->raw = NULL;
  enum http_errno e = HTTP_PARSER_ERRNO(&in->p);
  if (e == HPE_PAUSED) {
    http_parser_pause(&in->p, 0);
    *req = in->done;
    in->done = NULL;
    return (ssize_t)n;
  }
  if (e != HPE_OK) {
    if (!in->status) map_errno(in, e);
    return -1;
  }
  if (in->state == HTTP_IN_HEADERS) {
    /* Counts a few blank lines before the request too; harmless. While the
     * request line is still coming, allow for a URL up to max_url (on_url
     * answers 414 beyond that) so the verdict does not depend on the split. */
    in->head_base += n;
    size_t max = in->lim.max_header_size;
    if (in->nhdr == 0)
      max = in->lim.max_url + 1024 > SIZE_MAX - max ? SIZE_MAX : max + in->lim.max_url + 1024;
    if (in->head_base > max) return fail(in, 431, ERR_HEAD);
  }
  return (ssize_t)n;
}

int http_in_status(const http_in_t *in) {
  return in->status;
}

const char *http_in_error(const http_in_t *in) {
  return in->err;
}

http_in_state_t http_in_state(const http_in_t *in) {
  return in->state;
}

const char *http_in_header(const http_in_t *in, const char *name, size_t *len) {
  if (in->state == HTTP_IN_IDLE) return NULL; /* the spans belong to a finished request */
  for (size_t i = 0; i < in->nhdr; i++)
    if (ieq(in->buf + in->hdr[i].name_off, in->hdr[i].name_len, name)) {
      *len = in->hdr[i].value_len;
      return in->buf + in->hdr[i].value_off;
    }
  return NULL;
}

int http_in_take_continue(http_in_t *in) {
  int c = in->continue_pending && !in->status;
  in->continue_pending = 0;
  return c;
}

void http_req_free(http_req_t *r) {
  free(r);
}

void http_in_recycle(http_in_t *in, http_req_t *r) {
  if (r == NULL) return;
  if (in->state == HTTP_IN_IDLE) buf_trim(in); /* r's body lived there */
  if (in->spare == NULL && r->block_size <= HTTP_BUF_KEEP) {
    in->spare = r;
    return;
  }
  if (in->spare && in->spare->block_size < r->block_size && r->block_size <= HTTP_BUF_KEEP) {
    free(in->spare); /* keep the bigger one */
    in->spare = r;
    return;
  }
  free(r);
}

const http_header_t *http_req_header_n(const http_req_t *r, const char *name, size_t n) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (r->headers[i].name_len == n && strncasecmp(r->headers[i].name, name, n) == 0)
      return &r->headers[i];
  return NULL;
}

const char *http_method_name(int id) {
  enum {
#define XX(num, name, string) +1
    NMETHODS = 0 HTTP_METHOD_MAP(XX)
#undef XX
  };
  return id >= 0 && id < NMETHODS ? http_method_str((enum http_method)id) : NULL;
}

/* --- response side -------------------------------------------------------- */

const char *http_reason(int status) {
  switch (status) {
#define XX(num, name, string)                                                                      \
  case num:                                                                                        \
    return #string;
    HTTP_STATUS_MAP(XX)
#undef XX
  default:
    return "Unknown";
  }
}

/* The head's start for a status with a phrase, "HTTP/1.1 <status> <reason>
 * \r\nServer: fcfs\r\nDate: ", made at compile time (its length in *len);
 * NULL for a status without one. */
static const char *status_head(int status, size_t *len) {
#define HEAD_START(num, string) "HTTP/1.1 " #num " " #string "\r\nServer: fcfs\r\nDate: "
  switch (status) {
#define XX(num, name, string)                                                                      \
  case num:                                                                                        \
    *len = sizeof(HEAD_START(num, string)) - 1;                                                    \
    return HEAD_START(num, string);
    HTTP_STATUS_MAP(XX)
#undef XX
  default:
    return NULL;
  }
#undef HEAD_START
}

/* v in decimal at the end of tmp[24]; its first digit. */
static char *uint_digits(char tmp[24], size_t v) {
  char *t = tmp + 24;
  do {
    *--t = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return t;
}

ssize_t http_format_head(char *buf, size_t cap, int status, const char *date, size_t content_length,
                         int keep_alive, const char *extra, size_t extra_len) {
  static const char unknown[] = "HTTP/1.1 000 Unknown\r\nServer: fcfs\r\nDate: ";
  static const char cl[] = "Content-Length: ";
  static const char te[] = "Transfer-Encoding: chunked\r\n";
  static const char conn_ka[] = "Connection: keep-alive\r\n";
  static const char conn_close[] = "Connection: close\r\n";
  if (status < 100 || status > 999) return -1;
  char line[sizeof(unknown)];
  size_t sl;
  const char *start = status_head(status, &sl);
  if (start == NULL) {
    memcpy(line, unknown, sizeof(unknown));
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    start = line;
    sl = sizeof(unknown) - 1;
  }
  size_t dl = strlen(date);
  const char *conn = keep_alive ? conn_ka : conn_close;
  size_t connl = keep_alive ? sizeof(conn_ka) - 1 : sizeof(conn_close) - 1;
  int has_body = status >= 200 && status != 204;
  int chunked = has_body && content_length == HTTP_CHUNKED;
  int length = has_body && !chunked && content_length != HTTP_UNTIL_CLOSE;
  char tmp[24];
  const char *digits = length ? uint_digits(tmp, content_length) : tmp + 24;
  size_t nd = (size_t)(tmp + 24 - digits);
  if (extra == NULL) extra_len = 0;
  if (extra_len > cap || dl > cap) return -1; /* the other parts are small: no sum wraps */
  size_t total = sl + dl + 2 + connl + extra_len + 2;
  if (chunked) total += sizeof(te) - 1;
  if (length) total += sizeof(cl) - 1 + nd + 2;
  if (total > cap) return -1;
  char *p = buf;
  memcpy(p, start, sl);
  p += sl;
  memcpy(p, date, dl);
  p += dl;
  *p++ = '\r';
  *p++ = '\n';
  if (chunked) {
    memcpy(p, te, sizeof(te) - 1);
    p += sizeof(te) - 1;
  } else if (length) {
    memcpy(p, cl, sizeof(cl) - 1);
    p += sizeof(cl) - 1;
    memcpy(p, digits, nd);
    p += nd;
    *p++ = '\r';
    *p++ = '\n';
  }
  memcpy(p, conn, connl);
  p += connl;
  if (extra_len) memcpy(p, extra, extra_len);
  p += extra_len;
  *p++ = '\r';
  *p++ = '\n';
  return (ssize_t)(p - buf);
}

int http_head_has(const char *block, size_t len, const char *name, size_t name_len) {
  for (size_t i = 0; i < len;) {
    const char *line = block + i;
    const char *nl = memchr(line, '\n', len - i);
    size_t ll = nl ? (size_t)(nl - line) : len - i;
    /* the first bytes equal but for case (0x20) before the whole name is compared */
    if (ll > name_len && line[name_len] == ':' && ((line[0] ^ name[0]) & ~0x20) == 0 &&
        strncasecmp(line, name, name_len) == 0)
      return 1;
    i += ll + 1;
  }
  return 0;
}

void http_format_date(char out[30], time_t t) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
    memcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT", 30);
    return;
  }
  int y = tm.tm_year + 1900;
  memcpy(out, days[tm.tm_wday], 3);
  out[3] = ',';
  out[4] = ' ';
  out[5] = (char)('0' + tm.tm_mday / 10);
  out[6] = (char)('0' + tm.tm_mday % 10);
  out[7] = ' ';
  memcpy(out + 8, months[tm.tm_mon], 3);
  out[11] = ' ';
  out[12] = (char)('0' + y / 1000);
  out[13] = (char)('0' + y / 100 % 10);
  out[14] = (char)('0' + y / 10 % 10);
  out[15] = (char)('0' + y % 10);
  out[16] = ' ';
  out[17] = (char)('0' + tm.tm_hour / 10);
  out[18] = (char)('0' + tm.tm_hour % 10);
  out[19] = ':';
  out[20] = (char)('0' + tm.tm_min / 10);
  out[21] = (char)('0' + tm.tm_min % 10);
  out[22] = ':';
  out[23] = (char)('0' + tm.tm_sec / 10);
  out[24] = (char)('0' + tm.tm_sec % 10);
  memcpy(out + 25, " GMT", 5);
}
