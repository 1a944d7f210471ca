/* http.h -- the HTTP/1.1 request layer: bytes in, one request at a time out;
 * status line and headers of the response out. Pure: no I/O, no event loop.
 *
 * A connection owns one http_in_t. It feeds every byte it reads to
 * http_in_feed(), which returns after at most one complete request, so
 * pipelined requests come out one at a time and in order; the caller keeps
 * the unconsumed rest of its read buffer and feeds it again once it is ready
 * for the next request. A completed request is one heap block the caller owns
 * and frees with http_req_free(), except its strings and body, which stay in
 * in's parse buffer: valid until the request is recycled, or the next
 * http_in_feed() on in, or http_in_free(). Limits are enforced while parsing and
 * reported as an HTTP status (400, 413, 414, 417, 431, 501, 505) plus a static
 * reason string; after an error the caller answers that status and closes.
 *
 * The response side formats the status line and the fixed headers into a
 * caller buffer; the body is written by the caller.
 */
#ifndef FCFS_HTTP_H
#define FCFS_HTTP_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

typedef struct {
  size_t max_url;         /* request target bytes -> 414 */
  size_t max_header_size; /* request line + header bytes -> 431 (trailers too) */
  size_t max_headers;     /* header lines -> 431 */
  size_t max_body;        /* de-chunked body bytes -> 413 */
} http_limits_t;

typedef struct {
  const char *name; /* as received; NUL-terminated */
  size_t name_len;
  const char *value; /* surrounding whitespace trimmed; NUL-terminated */
  size_t value_len;
} http_header_t;

/* One heap block (the struct and the header array), freed with
 * http_req_free(); its strings, as its body, are in in's parse buffer (or
 * static). All strings are NUL-terminated as a convenience; the lengths are
 * authoritative. */
typedef struct http_req_s {
  const char *method; /* "GET", ... (static, as http_method_str's) */
  size_t method_len;
  int method_id;    /* enum http_method */
  const char *path; /* raw path, no query, not decoded ("/" for an empty
                       absolute-form path, "*" for OPTIONS *) */
  size_t path_len;
  const char *query; /* raw query without '?', "" if none */
  size_t query_len;
  http_header_t *headers; /* in order received; trailers are not kept */
  size_t nheaders;
  const http_header_t *request_id; /* the first X-Request-Id header, NULL if none */
  const char *body;                /* de-chunked, in in's parse buffer; NULL when body_len == 0 */
  size_t body_len;
  int keep_alive; /* the connection stays open after the response */
  int http_minor; /* 0 or 1 (major is always 1) */
  int is_head;
  size_t block_size; /* bytes of the heap block (for http_in_recycle) */
} http_req_t;

typedef enum { HTTP_IN_IDLE, HTTP_IN_HEADERS, HTTP_IN_BODY } http_in_state_t;

typedef struct http_in_s http_in_t;

/* lim is copied; NULL gives the defaults below. NULL on out of memory. */
http_in_t *http_in_new(const http_limits_t *lim);
void http_in_free(http_in_t *in);

#define HTTP_DEFAULT_MAX_URL 8192
#define HTTP_DEFAULT_MAX_HEADER_SIZE 16384
#define HTTP_DEFAULT_MAX_HEADERS 100
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)

/* Consume bytes. Stops right after one complete request. Returns the number
 * of bytes consumed (>= 0; everything unless a request completed) and sets
 * *req to the completed request (the caller owns it) or to NULL when more
 * input is needed. On a protocol error returns -1 and sets *req to NULL; see
 * http_in_status()/http_in_error(). Once in error, every later call returns
 * -1 again. After a request with keep_alive == 0 any further non-blank byte
 * is an error (400). */
ssize_t http_in_feed(http_in_t *in, const char *data, size_t len, http_req_t **req);

/* After http_in_feed() returned -1: the status to answer and a static reason
 * (compare by pointer or print). 0 and NULL while there is no error. */
int http_in_status(const http_in_t *in);
const char *http_in_error(const http_in_t *in);

/* IDLE between requests (idle/keep-alive timer), HEADERS from the first byte
 * of a request to the end of its headers (header timer), BODY while a body is
 * being read (body timer). */
http_in_state_t http_in_state(const http_in_t *in);

/* While a request is being read, or after it failed: the value (len bytes,
 * not NUL-terminated, maybe not trimmed yet) of the first header named
 * `name` received so far, case-insensitive; NULL when there is none. For
 * answers that depend on a header (the language of an error body) when no
 * http_req_t exists. */
const char *http_in_header(const http_in_t *in, const char *name, size_t *len);

/* 1 exactly once, after the headers of an HTTP/1.1 request carrying
 * "Expect: 100-continue" whose body has not fully arrived yet: the caller
 * writes "HTTP/1.1 100 Continue\r\n\r\n" before reading on. 0 otherwise. */
int http_in_take_continue(http_in_t *in);

void http_req_free(http_req_t *r);
/* Done with r, a request in's feed returned: in keeps its block for the next
 * request (or frees it). r may be NULL. */
void http_in_recycle(http_in_t *in, http_req_t *r);

/* First header named `name` (len bytes, case-insensitive), or NULL. */
const http_header_t *http_req_header_n(const http_req_t *r, const char *name, size_t len);
/* The same for a NUL-terminated name (the length of a literal is known at
 * compile time). */
static inline const http_header_t *http_req_header(const http_req_t *r, const char *name) {
  return http_req_header_n(r, name, strlen(name));
}

/* The name of method_id id ("GET", ... static, as http_req_t's method), or
 * NULL past the last method: ids run from 0 without a gap. */
const char *http_method_name(int id);

/* "OK", "Not Found", ... (static); "Unknown" for codes without a phrase. */
const char *http_reason(int status);

/* content_length of a streamed body: "Transfer-Encoding: chunked" instead;
 * or, for an HTTP/1.0 client, no length at all (the body ends at the close). */
#define HTTP_CHUNKED ((size_t)-1)
#define HTTP_UNTIL_CLOSE ((size_t)-2)

/* Status line and headers into buf (not NUL-terminated); the length, or -1 if
 * cap is too small or status is not 100..999. Writes, in order:
 *   HTTP/1.1 <status> <reason>, Server: fcfs, Date: <date>,
 *   Content-Length: <content_length> (left out for 1xx and 204, RFC 9110 8.6;
 *   Transfer-Encoding: chunked for HTTP_CHUNKED, neither for HTTP_UNTIL_CLOSE),
 *   Connection: keep-alive|close, then `extra` verbatim (complete
 *   "Name: value\r\n" lines, may be NULL), then the empty line.
 * `date` is a NUL-terminated IMF-fixdate (see http_format_date). */
ssize_t http_format_head(char *buf, size_t cap, int status, const char *date, size_t content_length,
                         int keep_alive, const char *extra, size_t extra_len);

/* Whether a block of "Name: value\r\n" lines (the extra headers of a
 * response) has a line named name, compared case-insensitively. */
int http_head_has(const char *block, size_t len, const char *name, size_t name_len);

/* IMF-fixdate of t, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (29 chars + NUL).
 * Locale-independent. */
void http_format_date(char out[30], time_t t);

#endif
