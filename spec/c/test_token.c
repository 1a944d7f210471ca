/* test_token.c -- unit tests of the access-token check lib/auth.lua calls through the FFI
 * (fcfs_token_check, lapi_crypto.c): the bearer forms lib/auth.lua's pattern accepts and refuses,
 * the tag, the body, the claims, the 512-byte limit, and the cache of verified tokens (a hit is a
 * whole token, never a prefix, a tail or a body with another tag; a crowd stays cached while
 * one-off tokens pass; a slot taken by another token changes generation). Prints TAP; exits
 * non-zero on failure.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "tap.h"

#define KEY "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="

static fcfs_crypto_t *keys(const char *token_key) {
  fcfs_conf_t conf;
  char err[256];
  unsetenv("FCFS_SECRET_SEAL_KEYS");
  unsetenv("FCFS_SECRET_BLIND_KEY");
  if (token_key)
    setenv("FCFS_SECRET_TOKEN_KEY", token_key, 1);
  else
    unsetenv("FCFS_SECRET_TOKEN_KEY");
  if (fcfs_conf_load(&conf, NULL, err, sizeof err) != 0) {
    printf("# conf: %s\n", err);
    exit(1);
  }
  fcfs_crypto_t *c = fcfs_crypto_new(&conf, err, sizeof err);
  fcfs_conf_free(&conf);
  if (c == NULL) printf("# keys: %s\n", err);
  return c;
}

static fcfs_crypto_t *K;

static void b64url(char *out, size_t cap, const unsigned char *in, size_t len) {
  sodium_bin2base64(out, cap, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* b64url(payload) "." b64url(hmac of that), as auth.issue signs, into out (cap bytes). */
static const char *sign_into(char *out, size_t cap, const char *payload) {
  unsigned char tag[FCFS_HMAC_BYTES];
  b64url(out, cap, (const unsigned char *)payload, strlen(payload));
  size_t blen = strlen(out);
  fcfs_crypto_hmac(K, (const unsigned char *)out, blen, tag);
  out[blen] = '.';
  b64url(out + blen + 1, cap - blen - 1, tag, sizeof tag);
  return out;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* body "." b64url(hmac of body), for a body of any text, into out (1024 bytes). */
static const char *sign_body(char *out, const char *body) {
  unsigned char tag[FCFS_HMAC_BYTES];
  size_t blen = strlen(body);
  memmove(out, body, blen);
  fcfs_crypto_hmac(K, (const unsigned char *)out, blen, tag);
  out[blen] = '.';
  b64url(out + blen + 1, 1024 - blen - 1, tag, sizeof tag);
  return out;
}

/* into out of 1024 bytes */
static const char *sign(char *out, const char *payload) {
  return sign_into(out, 1024, payload);
}

static fcfs_token_cache_t *new_cache(void) {
  return calloc(1, fcfs_token_cache_size());
}

static int check(fcfs_token_cache_t *cache, const char *s, int bearer, fcfs_token_claims_t *out) {
  return fcfs_token_check(K, cache, s, strlen(s), bearer, out);
}

static int check_rc(fcfs_token_cache_t *cache, const char *s, int bearer) {
  fcfs_token_claims_t out;
  return check(cache, s, bearer, &out);
}

static void test_claims(void) {
  fcfs_token_cache_t *cache = new_cache();
  char tok[1024];
  fcfs_token_claims_t a, b;
  sign(tok, "at1:7:42:MEMBER:1790000000");
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK);
  EXPECT(a.uid == 7 && a.sid == 42 && a.exp == 1790000000);
  EXPECT(a.role_len == 6 && memcmp(a.role, "MEMBER", 6) == 0);
  EXPECT(a.sid_len == 2 && memcmp(a.sid_text, "42", 2) == 0);
  EXPECT(a.slot >= 1 && a.gen >= 1);
  /* the second time from the cache: the same slot, generation and claims */
  memset(&b, 0, sizeof b);
  EXPECT(check(cache, tok, 0, &b) == FCFS_TOKEN_OK);
  EXPECT(b.slot == a.slot && b.gen == a.gen && b.uid == 7 && b.sid == 42 && b.exp == 1790000000);
  EXPECT(b.role_len == 6 && memcmp(b.role, "MEMBER", 6) == 0);
  EXPECT(b.sid_len == 2 && memcmp(b.sid_text, "42", 2) == 0);
  /* digits as Lua's tonumber reads them, the session id's digits as written */
  sign(tok, "at1:12345678901234567890:007:ADMIN:0");
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK);
  EXPECT(a.uid == 12345678901234567890.0 && a.sid == 7 && a.exp == 0);
  EXPECT(a.sid_len == 3 && memcmp(a.sid_text, "007", 3) == 0);
  /* what the pattern ^at1:(%d+):(%d+):(%u+):(%d+)$ refuses, tag valid */
  const char *bad[] = {"junk",           "at1:1:2:user:5",  "at1:1:2:USER:",
                       "at1::2:USER:5",  "at1:1:2::5",      "at1:1:2:USER:5:",
                       "at2:1:2:USER:5", "at1:1:2:USER:5 ", "at1:1:-2:USER:5",
                       "at1:1:2:US3R:5", "at1:1:2:USER",    ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = check_rc(cache, sign(tok, bad[i]), 0);
    if (rc != FCFS_TOKEN_MALFORMED) printf("# %s: %d\n", bad[i], rc);
    EXPECT(rc == FCFS_TOKEN_MALFORMED);
  }
  /* bodies of every length modulo 4 decode; a last character with bits set past the last byte
   * (not canonical base64url, signed all the same) is malformed */
  char payload[64];
  for (int digits = 1; digits <= 12; digits++) {
    snprintf(payload, sizeof payload, "at1:%.*s:2:USER:1790000000", digits, "123456789012");
    EXPECT(check(cache, sign(tok, payload), 0, &a) == FCFS_TOKEN_OK);
    EXPECT(a.uid == atof(payload + 4) && a.sid == 2 && a.role_len == 4);
  }
  for (int extra = 1; extra <= 2; extra++) { /* 1 or 2 bytes past the last group of 3 */
    snprintf(payload, sizeof payload, "at1:1:2:USER:%.*s", 8 + extra, "1790000000");
    sign(tok, payload);
    size_t blen = (size_t)(strchr(tok, '.') - tok);
    char last = tok[blen - 1], *pos = strchr(B64, last);
    char body[64];
    snprintf(body, sizeof body, "%.*s%c", (int)blen - 1, tok, B64[(pos - B64) | 1]);
    EXPECT(sign_body(tok, body) && check_rc(cache, tok, 0) == FCFS_TOKEN_MALFORMED);
  }
  /* a NUL inside the payload */
  unsigned char nul[] = "at1:1:2:USER:5\0";
  unsigned char tag[FCFS_HMAC_BYTES];
  b64url(tok, sizeof tok, nul, sizeof nul - 1);
  size_t blen = strlen(tok);
  fcfs_crypto_hmac(K, (unsigned char *)tok, blen, tag);
  tok[blen] = '.';
  b64url(tok + blen + 1, sizeof tok - blen - 1, tag, sizeof tag);
  EXPECT(check_rc(cache, tok, 0) == FCFS_TOKEN_MALFORMED);
  free(cache);
}

static void test_refusals(void) {
  fcfs_token_cache_t *cache = new_cache();
  char tok[1024], other[1024], forged[1200];
  sign(tok, "at1:8:43:MEMBER:1790000000");
  sign(other, "at1:9:43:MEMBER:1790000000");
  EXPECT(check_rc(cache, tok, 0) == FCFS_TOKEN_OK); /* cached from here on */
  size_t blen = (size_t)(strchr(tok, '.') - tok);
  /* the cached token's body with another token's tag */
  snprintf(forged, sizeof forged, "%.*s%s", (int)blen, tok, strchr(other, '.'));
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_FORGED);
  /* another body with the cached token's tag (the same last 8 bytes: the same buckets) */
  snprintf(forged, sizeof forged, "%.*s%s", (int)(strchr(other, '.') - other), other, tok + blen);
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_FORGED);
  /* one byte changed at the front, the tail intact */
  snprintf(forged, sizeof forged, "%s", tok);
  forged[0] = forged[0] == 'Y' ? 'Z' : 'Y';
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_FORGED);
  /* the cached token and more after it; the cached token cut short */
  snprintf(forged, sizeof forged, "%sA", tok);
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_FORGED);
  snprintf(forged, sizeof forged, "%.*s", (int)strlen(tok) - 1, tok);
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_FORGED);
  EXPECT(check_rc(cache, "nodot", 0) == FCFS_TOKEN_MALFORMED);
  EXPECT(check_rc(cache, "", 0) == FCFS_TOKEN_MALFORMED);
  /* a tag-valid body that is not base64url */
  unsigned char t[FCFS_HMAC_BYTES];
  char tb[64];
  fcfs_crypto_hmac(K, (const unsigned char *)"a+b/", 4, t);
  b64url(tb, sizeof tb, t, sizeof t);
  snprintf(forged, sizeof forged, "a+b/.%s", tb);
  EXPECT(check_rc(cache, forged, 0) == FCFS_TOKEN_MALFORMED);
  /* the token still answers from the cache */
  EXPECT(check_rc(cache, tok, 0) == FCFS_TOKEN_OK);
  /* without a token key: no dot is malformed, a dot cannot be checked */
  fcfs_crypto_t *none = keys(NULL), *saved = K;
  fcfs_token_cache_t *empty = new_cache();
  K = none;
  EXPECT(check_rc(empty, "nodot", 0) == FCFS_TOKEN_MALFORMED);
  EXPECT(check_rc(empty, tok, 0) == FCFS_TOKEN_NO_KEY);
  EXPECT(check_rc(empty, "Bearer", 1) == FCFS_TOKEN_MALFORMED);
  K = saved;
  fcfs_crypto_free(none);
  free(empty);
  free(cache);
}

/* A validly signed token of len bytes (its role pads it out), into out; its role's length in *role.
 */
static const char *token_of_len(char *out, size_t len, size_t *role) {
  size_t body = len - 44, p = body / 4 * 3 + (body % 4 ? body % 4 - 1 : 0);
  char payload[600], letters[600];
  *role = p - 19; /* "at1:5:6:" and ":1790000000" */
  memset(letters, 'A', *role);
  snprintf(payload, sizeof payload, "at1:5:6:%.*s:1790000000", (int)*role, letters);
  return sign(out, payload);
}

static void test_lengths(void) {
  fcfs_token_cache_t *cache = new_cache();
  char tok[1024], hdr[1100];
  size_t role;
  fcfs_token_claims_t a;
  EXPECT(strlen(token_of_len(tok, 512, &role)) == 512);
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK && a.uid == 5 && a.role_len == role);
  EXPECT(a.slot == 0 && a.gen == 0); /* longer than the cache holds: checked at every use */
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK && a.slot == 0 && a.gen == 0);
  snprintf(hdr, sizeof hdr, "Bearer %s", tok);
  EXPECT(check_rc(cache, hdr, 1) == FCFS_TOKEN_OK);
  /* 513 bytes (forged, were it checked) and 514 validly signed: refused before any check */
  snprintf(hdr, sizeof hdr, "%sA", tok);
  EXPECT(strlen(hdr) == 513 && check_rc(cache, hdr, 0) == FCFS_TOKEN_MALFORMED);
  EXPECT(strlen(token_of_len(tok, 514, &role)) == 514);
  EXPECT(check_rc(cache, tok, 0) == FCFS_TOKEN_MALFORMED);
  snprintf(hdr, sizeof hdr, "Bearer %s", tok);
  EXPECT(check_rc(cache, hdr, 1) == FCFS_TOKEN_MALFORMED);
  /* a short token the cache cannot hold whole */
  EXPECT(strlen(token_of_len(tok, 132, &role)) == 132);
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK && a.slot == 0 && a.gen == 0);
  /* 128 bytes (a 39-digit user id): cached */
  EXPECT(strlen(sign(tok, "at1:123456789012345678901234567890123456789:6:MEMBER:1790000000")) ==
         128);
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK && a.slot > 0 && a.gen > 0);
  free(cache);
}

static void test_bearer(void) {
  fcfs_token_cache_t *cache = new_cache();
  char tok[1024], h[1200];
  fcfs_token_claims_t a, b;
  sign(tok, "at1:10:44:MEMBER:1790000000");
  EXPECT(check(cache, tok, 0, &a) == FCFS_TOKEN_OK);
  const char *good[] = {"Bearer %s",  "bearer %s",      "BEARER\t%s",   "BeArEr   %s",
                        "Bearer %s ", "Bearer \t%s\t ", "Bearer\n%s\r", "Bearer\v%s\f"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(h, sizeof h, good[i], tok);
    memset(&b, 0, sizeof b);
    int rc = check(cache, h, 1, &b);
    if (rc != FCFS_TOKEN_OK) printf("# accepted form %zu: %d\n", i, rc);
    EXPECT(rc == FCFS_TOKEN_OK && b.slot == a.slot && b.gen == a.gen && b.uid == 10);
  }
  const char *bad[] = {"Bearer",
                       "Bearer ",
                       "Bearer%s",
                       " Bearer %s",
                       "Basic %s",
                       "Bearer %s x",
                       "Bearer %s, Bearer %s",
                       "Bearer: %s",
                       "Bearerr %s",
                       "Bear %s",
                       "",
                       "B",
                       "Bearer \t "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(h, sizeof h, bad[i], tok, tok);
    int rc = check_rc(cache, h, 1);
    if (rc != FCFS_TOKEN_MALFORMED) printf("# refused form %zu: %d\n", i, rc);
    EXPECT(rc == FCFS_TOKEN_MALFORMED);
  }
  /* a NUL is not a space (Lua's %S takes it): part of the token, which is then forged */
  snprintf(h, sizeof h, "Bearer %s", tok);
  size_t hl = strlen(h);
  h[hl] = '\0';
  EXPECT(fcfs_token_check(K, cache, h, hl + 1, 1, &b) == FCFS_TOKEN_FORGED);
  free(cache);
}

/* A crowd of 10,000 members, each checked once, then clicking again in turn while one-off members
 * pass (one for every 10 clicks): every click of the crowd is a cache hit. */
static void test_crowd(void) {
  enum { CROWD = 10000, ROUNDS = 4 };
  fcfs_token_cache_t *cache = new_cache();
  static char toks[CROWD][128];
  static uint32_t slot[CROWD], gen[CROWD];
  char payload[64], tok[1024];
  fcfs_token_claims_t a;
  int ok = 1, changed = 0, oneoff = 0;
  for (int i = 0; i < CROWD; i++) {
    snprintf(payload, sizeof payload, "at1:%d:%d:MEMBER:1790000000", 100000 + i, 500000 + i);
    sign_into(toks[i], sizeof toks[i], payload);
    ok &= check(cache, toks[i], 0, &a) == FCFS_TOKEN_OK && a.slot > 0;
    slot[i] = a.slot;
    gen[i] = a.gen;
  }
  EXPECT(ok);
  for (int r = 0; r < ROUNDS; r++)
    for (int i = 0; i < CROWD; i++) {
      ok &= check(cache, toks[i], 0, &a) == FCFS_TOKEN_OK && a.uid == 100000 + i &&
            a.sid == 500000 + i;
      changed += a.slot != slot[i] || a.gen != gen[i];
      slot[i] = a.slot;
      gen[i] = a.gen;
      if (i % 10 == 0) {
        snprintf(payload, sizeof payload, "at1:%d:%d:MEMBER:1790000000", 900000 + oneoff, oneoff);
        oneoff++;
        ok &= check(cache, sign(tok, payload), 0, &a) == FCFS_TOKEN_OK;
      }
    }
  EXPECT(ok);
  if (changed) printf("# %d crowd clicks missed the cache\n", changed);
  EXPECT(changed == 0);
  /* more one-off members than the cache holds: the crowd's slots go to them, in new generations */
  for (int i = 0; i < 40000; i++) {
    snprintf(payload, sizeof payload, "at1:%d:%d:MEMBER:1790000000", 2000000 + i, i);
    ok &= check(cache, sign(tok, payload), 0, &a) == FCFS_TOKEN_OK;
  }
  EXPECT(ok);
  EXPECT(check(cache, toks[0], 0, &a) == FCFS_TOKEN_OK && a.uid == 100000);
  EXPECT(a.gen != gen[0]);
  free(cache);
}

int main(void) {
  K = keys(KEY);
  if (K == NULL) return 1;
  run("claims of a valid token, again from the cache; payloads the pattern refuses", test_claims);
  run("forged and malformed tokens, a cached token's body or tag reused, no token key",
      test_refusals);
  run("512 bytes accepted (not cached), 513 refused", test_lengths);
  run("Authorization values: Bearer in any case, spaces and tabs; other forms refused",
      test_bearer);
  run("a crowd stays cached while one-off tokens pass; the cache's slots are reused", test_crowd);
  fcfs_crypto_free(K);
  return tap_done();
}
