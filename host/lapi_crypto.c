/* lapi_crypto.c -- host.crypto, the Lua face of crypto.c.
 *
 *   password_hash(pw)             -> argon2id string | nil, "too long"/"out of memory"  (yields)
 *   password_verify(encoded, pw)  -> boolean                                          (yields)
 *   password_needs_rehash(enc)    -> boolean (not argon2id at the configured cost)
 *   seal(plaintext [, ad])        -> bytes: key id, nonce, ciphertext and tag
 *   open(bytes [, ad])            -> plaintext | nil, "forged"/"unknown key"
 *   blind(s)                      -> 64 hex digits, keyed BLAKE2b (equality lookups)
 *   hmac(msg)                     -> HMAC-SHA256 tag under the token key, base64url (43 chars)
 *   hmac_verify(msg, tag)         -> boolean (tag as hmac returns it; constant time)
 *   hmac_open(body .. "." .. tag) -> the message body encodes (base64url) when tag = hmac(body)
 *                                    | nil, "malformed"/"forged"
 *   token_check(s, bearer)        -> slot, gen | nil, "malformed"/"forged": an access token (or
 *                                    the token of an Authorization value) checked, or found in
 *                                    the VM's cache of checked tokens (lib/auth.lua)
 *   token_request()               -> token_check of the running request's Authorization header,
 *                                    read in place | false (no request runs, a repeated
 *                                    header); FFI only, where host.header_direct(req)
 *   token_claims()                -> uid, sid, role, exp, sid digits of the token last checked
 *   token_slots                   the cache's number of slots (slot numbers 1..token_slots)
 *   random(n)                     -> n random bytes (1..65536)
 *   token([n])                    -> base64url of n random bytes (default 32)
 *   equal(a, b)                   -> boolean, constant time for equal lengths
 *   sha256(s)                     -> 64 hex digits
 *   b64url_encode(s), b64url_decode(s) -> url-safe base64 without padding | nil, "invalid"
 *
 * seal, blind and hmac raise an error when their key is not configured (a
 * deployment mistake, not a request's). The password functions yield the
 * calling task while a pool thread hashes; a cancelled task forgets the op,
 * which frees itself when the hash ends (crypto.c). The fcfs_crypto_t is an
 * upvalue: the worker owns it and it outlives every VM. The token functions
 * are FFI calls under LuaJIT; their cache of checked tokens belongs to the VM
 * (a userdata whose __gc frees it).
 */
#include <lauxlib.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "request.h"
#include "task.h"
#include "vm.h"

#define RANDOM_MAX 65536

static const fcfs_crypto_t *self(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* A scratch buffer the GC frees, left on the stack. */
static unsigned char *scratch(lua_State *L, size_t n) {
  return lua_newuserdata(L, n ? n : 1);
}

/* base64url without padding (RFC 4648 §5), by arithmetic rather than libsodium's constant-time
 * codec: what passes here is not secret (access tokens, their tags, list cursors) and a member's
 * first request decodes its token (libsodium took about 50 instructions a character). The keys
 * (crypto.c) keep libsodium's. */
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Characters b64url_encode writes for len bytes. */
#define B64URL_LEN(len) ((len) / 3 * 4 + ((len) % 3 ? (len) % 3 + 1 : 0))

static void b64url_encode(char *out, const unsigned char *in, size_t len) {
  size_t i = 0;
  for (; i + 3 <= len; i += 3, out += 4) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[0] = B64URL[v >> 18];
    out[1] = B64URL[v >> 12 & 63];
    out[2] = B64URL[v >> 6 & 63];
    out[3] = B64URL[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
    out[0] = B64URL[v >> 18];
    out[1] = B64URL[v >> 12 & 63];
    if (i + 1 < len) out[2] = B64URL[v >> 6 & 63];
  }
}

static void push_b64url(lua_State *L, const unsigned char *bin, size_t len) {
  char small[64];
  size_t n = B64URL_LEN(len);
  char *out = n <= sizeof small ? small : (char *)scratch(L, n);
  b64url_encode(out, bin, len);
  lua_pushlstring(L, out, n);
  if (out != small) lua_remove(L, -2);
}

/* Room b64url_decode needs for len characters. */
#define B64URL_ROOM(len) ((len) / 4 * 3 + 3)

/* Each byte's value in base64url, -1 outside the alphabet. */
/* clang-format off */
static const signed char B64URL_VALUE[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};
/* clang-format on */

/* Decode url-safe base64 without padding into out (B64URL_ROOM(len) bytes); -1 when s is not
 * canonical base64url (a character outside the alphabet, padding, a length of 4k + 1, or bits set
 * past the last byte). */
static int b64url_decode(unsigned char *out, const char *s, size_t len, size_t *outlen) {
  if (len % 4 == 1) return -1;
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0, i = 0;
  for (; i + 4 <= len; i += 4) {
    int a = B64URL_VALUE[u[i]], b = B64URL_VALUE[u[i + 1]], c = B64URL_VALUE[u[i + 2]],
        d = B64URL_VALUE[u[i + 3]];
    if ((a | b | c | d) < 0) return -1;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  if (i < len) { /* 2 or 3 characters: 1 or 2 bytes, and no bits set past them */
    int a = B64URL_VALUE[u[i]], b = B64URL_VALUE[u[i + 1]],
        c = len - i == 3 ? B64URL_VALUE[u[i + 2]] : 0;
    if ((a | b | c) < 0 || (len - i == 2 ? b & 0xf : c & 3)) return -1;
    out[o++] = (unsigned char)(a << 2 | b >> 4);
    if (len - i == 3) out[o++] = (unsigned char)((b & 0xf) << 4 | c >> 2);
  }
  *outlen = o;
  return 0;
}

static int nil_err(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* ---- passwords ------------------------------------------------------------ */

static void hash_done(void *arg, const char *err, const char *encoded, int ok) {
  fcfs_task_t *t = arg;
  lua_State *co = fcfs_task_thread(t);
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    fcfs_task_resume(t, 2);
    return;
  }
  lua_pushstring(co, encoded);
  fcfs_task_resume(t, 1);
}

static void verify_done(void *arg, const char *err, const char *encoded, int ok) {
  if (err) {
    hash_done(arg, err, encoded, ok); /* nil, err */
    return;
  }
  fcfs_task_t *t = arg;
  lua_pushboolean(fcfs_task_thread(t), ok);
  fcfs_task_resume(t, 1);
}

static void pw_cancel(void *op) {
  fcfs_crypto_pw_forget(op);
}

static int c_password_hash(lua_State *L) {
  size_t len;
  const char *pw = luaL_checklstring(L, 1, &len);
  fcfs_task_t *t = fcfs_task_require(L, "host.crypto.password_hash");
  if (len > FCFS_PASSWORD_MAX) return nil_err(L, "too long");
  fcfs_pw_op_t *op = fcfs_crypto_pw_hash(fcfs_task_loop(t), self(L), pw, len, hash_done, t);
  if (op == NULL) return nil_err(L, "out of memory");
  return fcfs_task_wait(L, t, op, pw_cancel);
}

static int c_password_verify(lua_State *L) {
  size_t enclen, len;
  const char *enc = luaL_checklstring(L, 1, &enclen);
  const char *pw = luaL_checklstring(L, 2, &len);
  fcfs_task_t *t = fcfs_task_require(L, "host.crypto.password_verify");
  if (len > FCFS_PASSWORD_MAX || enclen >= FCFS_PWHASH_STRBYTES || strlen(enc) != enclen) {
    lua_pushboolean(L, 0);
    return 1;
  }
  fcfs_pw_op_t *op = fcfs_crypto_pw_verify(fcfs_task_loop(t), self(L), enc, enclen, pw, len,
                                           verify_done, t);
  if (op == NULL) return luaL_error(L, "host.crypto.password_verify: out of memory");
  return fcfs_task_wait(L, t, op, pw_cancel);
}

static int c_password_needs_rehash(lua_State *L) {
  lua_pushboolean(L, fcfs_crypto_pw_needs_rehash(self(L), luaL_checkstring(L, 1)));
  return 1;
}

/* ---- keyed ---------------------------------------------------------------------- */

static int c_seal(lua_State *L) {
  size_t len, adlen;
  const unsigned char *pt = (const unsigned char *)luaL_checklstring(L, 1, &len);
  const unsigned char *ad = (const unsigned char *)luaL_optlstring(L, 2, NULL, &adlen);
  unsigned char *out = scratch(L, len + FCFS_SEAL_OVERHEAD);
  if (fcfs_crypto_seal(self(L), pt, len, ad, ad ? adlen : 0, out) != 0)
    return luaL_error(L, "host.crypto.seal: no seal key configured (FCFS_SECRET_SEAL_KEYS)");
  lua_pushlstring(L, (const char *)out, len + FCFS_SEAL_OVERHEAD);
  return 1;
}

static int c_open(lua_State *L) {
  size_t len, adlen;
  const unsigned char *in = (const unsigned char *)luaL_checklstring(L, 1, &len);
  const unsigned char *ad = (const unsigned char *)luaL_optlstring(L, 2, NULL, &adlen);
  size_t n = len > FCFS_SEAL_OVERHEAD ? len - FCFS_SEAL_OVERHEAD : 0;
  unsigned char *out = scratch(L, n);
  const char *err = fcfs_crypto_open(self(L), in, len, ad, ad ? adlen : 0, out);
  if (err) return nil_err(L, err);
  lua_pushlstring(L, (const char *)out, n);
  sodium_memzero(out, n);
  return 1;
}

static int c_blind(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  char hex[FCFS_BLIND_HEX];
  if (fcfs_crypto_blind(self(L), s, len, hex) != 0)
    return luaL_error(L, "host.crypto.blind: no blind key configured (FCFS_SECRET_BLIND_KEY)");
  lua_pushlstring(L, hex, FCFS_BLIND_HEX - 1);
  return 1;
}

static int hmac_of(lua_State *L, unsigned char tag[FCFS_HMAC_BYTES]) {
  size_t len;
  const unsigned char *msg = (const unsigned char *)luaL_checklstring(L, 1, &len);
  if (fcfs_crypto_hmac(self(L), msg, len, tag) != 0)
    return luaL_error(L, "host.crypto.hmac: no token key configured (FCFS_SECRET_TOKEN_KEY)");
  return 0;
}

static int c_hmac(lua_State *L) {
  unsigned char tag[FCFS_HMAC_BYTES];
  hmac_of(L, tag);
  push_b64url(L, tag, sizeof(tag));
  return 1;
}

/* A tag's length in base64url (no padding): 43. */
#define TAG_CHARS B64URL_LEN(FCFS_HMAC_BYTES)

static int c_hmac_verify(lua_State *L) {
  size_t len;
  unsigned char tag[FCFS_HMAC_BYTES];
  char text[TAG_CHARS];
  const char *given = luaL_checklstring(L, 2, &len);
  hmac_of(L, tag);
  /* the tag computed here, encoded, against the one given (constant time): only the canonical
   * encoding of the right tag matches; on the C stack (this runs for every new access token) */
  b64url_encode(text, tag, sizeof tag);
  lua_pushboolean(L, len == TAG_CHARS && sodium_memcmp(text, given, TAG_CHARS) == 0);
  return 1;
}

/* The tag of signed = body "." tag (an access token's form, lib/auth.lua): NULL and *blen when tag
 * is hmac(body) in base64url (compared in constant time), else "malformed" (no dot) or "forged";
 * NO_TOKEN_KEY without a token key. */
static const char NO_TOKEN_KEY[] = "no token key configured (FCFS_SECRET_TOKEN_KEY)";

static const char *check_tag(const fcfs_crypto_t *c, const char *s, size_t len, size_t *blen) {
  const char *dot = memchr(s, '.', len);
  if (dot == NULL) return "malformed";
  *blen = (size_t)(dot - s);
  unsigned char tag[FCFS_HMAC_BYTES];
  char text[TAG_CHARS];
  if (fcfs_crypto_hmac(c, (const unsigned char *)s, *blen, tag) != 0) return NO_TOKEN_KEY;
  b64url_encode(text, tag, sizeof tag);
  if (len - *blen - 1 != TAG_CHARS || sodium_memcmp(text, dot + 1, TAG_CHARS) != 0) return "forged";
  return NULL;
}

/* hmac_open(signed): signed = body .. "." .. hmac(body), body = b64url(msg) -- the form of an
 * access token (lib/auth.lua) -> msg | nil, "malformed" (no dot, or a body that is not base64url) |
 * nil, "forged" (the tag is not the body's). The tag is checked (constant time) before the body is
 * decoded; on the C stack for bodies up to 512 characters. */
static int c_hmac_open(lua_State *L) {
  size_t len, blen, n;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *err = check_tag(self(L), s, len, &blen);
  if (err == NO_TOKEN_KEY) return luaL_error(L, "host.crypto.hmac_open: %s", err);
  if (err) return nil_err(L, err);
  unsigned char small[B64URL_ROOM(512)];
  unsigned char *out = B64URL_ROOM(blen) <= sizeof small ? small : scratch(L, B64URL_ROOM(blen));
  if (b64url_decode(out, s, blen, &n) != 0) return nil_err(L, "malformed");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* ---- access tokens: for LuaJIT's FFI (token_chunk) ----------------------------------
 *
 * lib/auth.lua's check of an access token in one call that makes no Lua string: the bearer token
 * taken from an Authorization value, its tag checked, its body decoded and parsed -- and a cache
 * of the tokens so verified, so that a member's later requests skip all of that. The cache is a
 * fixed table of TOKEN_BUCKETS x TOKEN_WAYS slots, each holding a whole token (compared whole, in
 * constant time) and its claims; a token may live in either of two buckets chosen by its last 8
 * bytes (a valid token's end is its tag: an HMAC output nobody can aim at a bucket), and a new
 * token takes the least recently used slot of the two. A slot's generation number changes when
 * another token takes it, so that Lua can keep one claims table per slot. The VM owns the cache
 * (token_state_t, freed by its GC); tokens longer than TOKEN_CAP, or whose role and
 * session id do not fit in TEXT_CAP, are checked at every use. */
#define TOKEN_MAX 512 /* longer tokens are "malformed" */
#define TOKEN_CAP 128 /* an issued token is about 100 bytes (ids of up to 19 digits fit) */
#define TEXT_CAP 32
#define TOKEN_WAYS 8
#define TOKEN_BUCKET_BITS 12
/* 32768 slots, ~6.9 MB a VM (pages touched as they fill): a crowd of 10,000 stays */
#define TOKEN_BUCKETS (1u << TOKEN_BUCKET_BITS)

typedef struct {
  uint64_t used; /* the cache's clock at its last use; 0: empty */
  double uid, sid, exp;
  uint32_t gen;
  uint16_t len;
  uint8_t role_len, sid_len;
  char token[TOKEN_CAP];
  char text[TEXT_CAP]; /* the role, then the session id's digits */
} token_slot_t;

struct fcfs_token_cache_s {
  uint64_t clock;
  uint32_t gen;
  /* each slot's token's last 8 bytes: a bucket's in one cache line */
  uint64_t tails[TOKEN_BUCKETS * TOKEN_WAYS];
  token_slot_t slots[TOKEN_BUCKETS * TOKEN_WAYS];
  unsigned char body[B64URL_ROOM(TOKEN_MAX)]; /* the decoded body of the last token not cached */
};

size_t fcfs_token_cache_size(void) {
  return sizeof(fcfs_token_cache_t);
}

static int is_space(unsigned char c) { /* Lua's %s */
  return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whether one of the 8 bytes of x is below 0x21 (Lua's %s are 0x09-0x0d and 0x20). */
static int any_below_0x21(uint64_t x) {
  const uint64_t ones = 0x0101010101010101u;
  return ((x - ones * 0x21) & ~x & ones * 0x80) != 0;
}

/* The token of an Authorization value as lib/auth.lua's pattern
 * ^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$ takes it, but for spaces inside it (has_space: a cached
 * token has none, so only a token the cache does not hold needs that scan): 0, or -1 when it does
 * not match. */
static int bearer_span(const char *v, size_t len, const char **tok, size_t *tlen) {
  uint32_t w4, want4;
  uint16_t w2, want2;
  if (len < 7) return -1;
  memcpy(&w4, v, 4);
  memcpy(&w2, v + 4, 2);
  memcpy(&want4, "bear", 4);
  memcpy(&want2, "er", 2);
  /* each letter in either case (x | 0x20 is a letter's lower case, and only a letter's) */
  if ((w4 | 0x20202020u) != want4 || (uint16_t)(w2 | 0x2020u) != want2) return -1;
  size_t i = 6;
  if (!is_space((unsigned char)v[i])) return -1;
  while (i < len && is_space((unsigned char)v[i]))
    i++;
  while (len > i && is_space((unsigned char)v[len - 1]))
    len--;
  if (i == len) return -1;
  *tok = v + i;
  *tlen = len - i;
  return 0;
}

/* Whether s holds one of Lua's %s, 8 bytes at a time. */
static int has_space(const char *s, size_t len) {
  size_t i = 0;
  for (uint64_t x; i + 8 <= len; i += 8) {
    memcpy(&x, s + i, 8);
    if (any_below_0x21(x)) break;
  }
  for (; i < len; i++)
    if (is_space((unsigned char)s[i])) return 1;
  return 0;
}

/* The end of the run of bytes of s[i..len) that are digits (upper = 0) or upper-case letters. */
static size_t run_end(const unsigned char *s, size_t i, size_t len, int upper) {
  while (i < len && (upper ? s[i] >= 'A' && s[i] <= 'Z' : s[i] >= '0' && s[i] <= '9'))
    i++;
  return i;
}

/* Digits as Lua's tonumber reads them (exact up to 15 digits; beyond, correctly rounded). */
static double digits_value(const unsigned char *d, size_t n) {
  if (n <= 15) {
    double v = 0;
    for (size_t i = 0; i < n; i++)
      v = v * 10 + (d[i] - '0');
    return v;
  }
  char buf[B64URL_ROOM(TOKEN_MAX) + 1];
  memcpy(buf, d, n);
  buf[n] = '\0';
  return strtod(buf, NULL);
}

/* msg as lib/auth.lua's pattern ^at1:(%d+):(%d+):(%u+):(%d+)$: 0 and the claims (role and sid
 * pointing into msg), or -1. */
static int parse_claims(const unsigned char *m, size_t n, fcfs_token_claims_t *out) {
  size_t at[8], i = 4;
  if (n < 4 || memcmp(m, "at1:", 4) != 0) return -1;
  for (int k = 0; k < 4; k++) {
    at[2 * k] = i;
    i = run_end(m, i, n, k == 2);
    at[2 * k + 1] = i;
    if (i == at[2 * k]) return -1;
    if (k < 3 && (i == n || m[i++] != ':')) return -1;
  }
  if (i != n) return -1;
  out->uid = digits_value(m + at[0], at[1] - at[0]);
  out->sid = digits_value(m + at[2], at[3] - at[2]);
  out->role = (const char *)m + at[4];
  out->role_len = (uint32_t)(at[5] - at[4]);
  out->sid_text = (const char *)m + at[2];
  out->sid_len = (uint32_t)(at[3] - at[2]);
  out->exp = digits_value(m + at[6], at[7] - at[6]);
  return 0;
}

static uint64_t tail_of(const char *s, size_t len) {
  uint64_t t = 0;
  if (len >= 8)
    memcpy(&t, s + len - 8, 8);
  else
    for (size_t i = 0; i < len; i++)
      t = t << 8 | (unsigned char)s[i];
  return t;
}

/* Equal bytes, in time that depends on n only: 8 at a time, the last 8 overlapping the others. */
static int same_bytes(const char *a, const char *b, size_t n) {
  uint64_t d = 0, x, y;
  size_t i = 0;
  if (n < 8) {
    for (; i < n; i++)
      d |= (uint64_t)(unsigned char)(a[i] ^ b[i]);
    return d == 0;
  }
  for (; i + 8 <= n; i += 8) {
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    d |= x ^ y;
  }
  memcpy(&x, a + n - 8, 8);
  memcpy(&y, b + n - 8, 8);
  return (d | (x ^ y)) == 0;
}

static void slot_claims(fcfs_token_cache_t *cache, size_t i, fcfs_token_claims_t *out) {
  token_slot_t *sl = &cache->slots[i];
  sl->used = ++cache->clock;
  out->uid = sl->uid;
  out->sid = sl->sid;
  out->exp = sl->exp;
  out->role = sl->text;
  out->role_len = sl->role_len;
  out->sid_text = sl->text + sl->role_len;
  out->sid_len = sl->sid_len;
  out->slot = (uint32_t)i + 1;
  out->gen = sl->gen;
}

/* s checked as a token; spaced: s may hold spaces, which make it malformed (bearer_span). A cached
 * token is base64url, a dot and its tag: no space. */
static int check_token(const fcfs_crypto_t *c, fcfs_token_cache_t *cache, const char *s, size_t len,
                       int spaced, fcfs_token_claims_t *out) {
  if (len > TOKEN_MAX) return FCFS_TOKEN_MALFORMED;
  uint64_t t = tail_of(s, len), h = t * 0x9E3779B97F4A7C15u;
  size_t b[2] = {h >> (64 - TOKEN_BUCKET_BITS), (h >> 20) & (TOKEN_BUCKETS - 1)};
  if (b[1] == b[0]) b[1] ^= 1;
  for (int k = 0; k < 2; k++)
    for (size_t i = b[k] * TOKEN_WAYS; i < (b[k] + 1) * TOKEN_WAYS; i++) {
      const token_slot_t *sl = &cache->slots[i];
      if (cache->tails[i] == t && sl->used && sl->len == len && same_bytes(sl->token, s, len)) {
        slot_claims(cache, i, out);
        return FCFS_TOKEN_OK;
      }
    }
  if (spaced && has_space(s, len)) return FCFS_TOKEN_MALFORMED;
  size_t blen, n;
  const char *err = check_tag(c, s, len, &blen);
  if (err)
    return err == NO_TOKEN_KEY ? FCFS_TOKEN_NO_KEY
           : *err == 'f'       ? FCFS_TOKEN_FORGED
                               : FCFS_TOKEN_MALFORMED;
  if (b64url_decode(cache->body, s, blen, &n) != 0 || parse_claims(cache->body, n, out) != 0)
    return FCFS_TOKEN_MALFORMED;
  out->slot = out->gen = 0;
  if (len > TOKEN_CAP || out->role_len + out->sid_len > TEXT_CAP) return FCFS_TOKEN_OK;
  size_t victim = b[0] * TOKEN_WAYS; /* the least recently used of both buckets */
  for (int k = 0; k < 2; k++)
    for (size_t i = b[k] * TOKEN_WAYS; i < (b[k] + 1) * TOKEN_WAYS; i++)
      if (cache->slots[i].used < cache->slots[victim].used) victim = i;
  token_slot_t *sl = &cache->slots[victim];
  cache->tails[victim] = t;
  sl->uid = out->uid;
  sl->sid = out->sid;
  sl->exp = out->exp;
  if (++cache->gen == 0) cache->gen = 1;
  sl->gen = cache->gen;
  sl->len = (uint16_t)len;
  memcpy(sl->token, s, len);
  sl->role_len = (uint8_t)out->role_len;
  sl->sid_len = (uint8_t)out->sid_len;
  memcpy(sl->text, out->role, out->role_len);
  memcpy(sl->text + out->role_len, out->sid_text, out->sid_len);
  slot_claims(cache, victim, out);
  return FCFS_TOKEN_OK;
}

int fcfs_token_check(const fcfs_crypto_t *c, fcfs_token_cache_t *cache, const char *s, size_t len,
                     int bearer, fcfs_token_claims_t *out) {
  const char *tok = s;
  size_t tlen = len;
  if (bearer && bearer_span(s, len, &tok, &tlen) != 0) return FCFS_TOKEN_MALFORMED;
  return check_token(c, cache, tok, tlen, bearer, out);
}

int fcfs_token_check_request(const fcfs_crypto_t *c, fcfs_token_cache_t *cache, void *vm,
                             fcfs_token_claims_t *out) {
  const char *v;
  size_t len;
  int rc = fcfs_request_header(vm, "authorization", 13, &v, &len);
  if (rc == 0) return FCFS_TOKEN_MALFORMED; /* no token */
  if (rc != 1) return FCFS_TOKEN_UNANSWERED;
  return fcfs_token_check(c, cache, v, len, 1, out);
}

/* A VM's token state: the claims of the token last checked and the cache (calloc'ed: its pages
 * cost memory once touched), a userdata whose __gc frees the cache. Must match token_chunk. */
typedef struct {
  fcfs_token_claims_t out;
  fcfs_token_cache_t *cache;
} token_state_t;

#define TOKEN_STATE_MT "fcfs.token_state"

static int token_state_gc(lua_State *L) {
  token_state_t *st = luaL_checkudata(L, 1, TOKEN_STATE_MT);
  free(st->cache);
  st->cache = NULL;
  return 0;
}

static token_state_t *push_token_state(lua_State *L) {
  token_state_t *st = lua_newuserdata(L, sizeof *st);
  memset(st, 0, sizeof *st);
  if (luaL_newmetatable(L, TOKEN_STATE_MT)) {
    lua_pushcfunction(L, token_state_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  st->cache = calloc(1, sizeof(fcfs_token_cache_t));
  if (st->cache == NULL) luaL_error(L, "host.crypto: out of memory (token cache)");
  return st;
}

/* token_check and token_claims through the Lua C API (upvalues: the keys, the token state), for a
 * VM without the FFI; token_chunk replaces them, and adds token_request. */
static int c_token_check(lua_State *L) {
  token_state_t *st = lua_touserdata(L, lua_upvalueindex(2));
  size_t len;
  if (lua_type(L, 1) != LUA_TSTRING) return nil_err(L, "malformed");
  const char *s = lua_tolstring(L, 1, &len);
  int rc = fcfs_token_check(self(L), st->cache, s, len, lua_toboolean(L, 2), &st->out);
  if (rc == FCFS_TOKEN_NO_KEY) return luaL_error(L, "host.crypto: %s", NO_TOKEN_KEY);
  if (rc != FCFS_TOKEN_OK) return nil_err(L, rc == FCFS_TOKEN_FORGED ? "forged" : "malformed");
  lua_pushnumber(L, st->out.slot);
  lua_pushnumber(L, st->out.gen);
  return 2;
}

static int c_token_claims(lua_State *L) {
  const fcfs_token_claims_t *o = &((token_state_t *)lua_touserdata(L, lua_upvalueindex(2)))->out;
  lua_pushnumber(L, o->uid);
  lua_pushnumber(L, o->sid);
  lua_pushlstring(L, o->role, o->role_len);
  lua_pushnumber(L, o->exp);
  lua_pushlstring(L, o->sid_text, o->sid_len);
  return 5;
}

/* Called with (host.crypto, the fcfs_crypto_t, the VM, the token state): under LuaJIT,
 * token_check and token_claims become FFI calls, and token_request is added (the running request's
 * Authorization header read in place). Must match crypto.h and token_state_t. */
static const char token_chunk[] =
    "local crypto, keys, vm, state = ...\n"
    "local ok, ffi = pcall(require, 'ffi')\n"
    "if not ok then return end\n"
    "local type = type\n"
    "pcall(ffi.cdef, [[\n"
    "typedef struct {\n"
    "  double uid, sid, exp;\n"
    "  const char *role, *sid_text;\n"
    "  uint32_t role_len, sid_len, slot, gen;\n"
    "} fcfs_token_claims_t;\n"
    "typedef struct { fcfs_token_claims_t out; void *cache; } fcfs_token_state_t;\n"
    "int fcfs_token_check(const void *c, void *cache, const char *s, size_t len, int bearer,\n"
    "                     fcfs_token_claims_t *out);\n"
    "int fcfs_token_check_request(const void *c, void *cache, void *vm, fcfs_token_claims_t "
    "*out);\n"
    "]])\n"
    "local C, str = ffi.C, ffi.string\n"
    "keys, vm = ffi.cast('const void *', keys), ffi.cast('void *', vm)\n"
    "local st = ffi.cast('fcfs_token_state_t *', state)\n"
    "local cache, out = st.cache, st.out\n"
    "local WHY = { 'malformed', 'forged' }\n"
    "local function answer(rc)\n"
    "  if rc == 0 then return out.slot, out.gen end\n"
    "  if rc == 3 then error('host.crypto: no token key configured (FCFS_SECRET_TOKEN_KEY)', 3) "
    "end\n"
    "  return nil, WHY[rc]\n"
    "end\n"
    "function crypto.token_check(s, bearer)\n"
    "  if type(s) ~= 'string' then return nil, 'malformed' end\n"
    "  return answer(C.fcfs_token_check(keys, cache, s, #s, bearer and 1 or 0, out))\n"
    "end\n"
    "function crypto.token_request()\n"
    "  local _ = state -- the token state lives as long as these functions\n"
    "  local rc = C.fcfs_token_check_request(keys, cache, vm, out)\n"
    "  if rc == 4 then return false end\n"
    "  return answer(rc)\n"
    "end\n"
    "function crypto.token_claims()\n"
    "  return out.uid, out.sid, str(out.role, out.role_len), out.exp, str(out.sid_text, "
    "out.sid_len)\n"
    "end\n";

/* ---- keyless ---------------------------------------------------------------------- */

static size_t check_count(lua_State *L, int arg, lua_Integer def) {
  lua_Integer n = luaL_optinteger(L, arg, def);
  luaL_argcheck(L, n >= 1 && n <= RANDOM_MAX, arg, "must be 1 to 65536");
  return (size_t)n;
}

static int c_random(lua_State *L) {
  size_t n = check_count(L, 1, 0);
  unsigned char *buf = scratch(L, n);
  randombytes_buf(buf, n);
  lua_pushlstring(L, (const char *)buf, n);
  return 1;
}

static int c_token(lua_State *L) {
  size_t n = check_count(L, 1, 32);
  unsigned char *buf = scratch(L, n);
  randombytes_buf(buf, n);
  push_b64url(L, buf, n);
  return 1;
}

static int c_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && sodium_memcmp(a, b, alen) == 0);
  return 1;
}

static int c_sha256(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  unsigned char h[crypto_hash_sha256_BYTES];
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  crypto_hash_sha256(h, s, len);
  sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
  lua_pushlstring(L, hex, sizeof(hex) - 1);
  return 1;
}

static int c_b64url_encode(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  push_b64url(L, s, len);
  return 1;
}

static int c_b64url_decode(lua_State *L) {
  size_t len, n;
  const char *s = luaL_checklstring(L, 1, &len);
  /* an access token's body (at most 512 characters) decodes on the C stack, longer text into a
   * scratch userdata */
  unsigned char small[B64URL_ROOM(512)];
  unsigned char *out = B64URL_ROOM(len) <= sizeof small ? small : scratch(L, B64URL_ROOM(len));
  if (b64url_decode(out, s, len, &n) != 0) return nil_err(L, "invalid");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

void fcfs_lapi_crypto_open(lua_State *L, const fcfs_crypto_t *c) {
  static const luaL_Reg fns[] = {{"password_hash", c_password_hash},
                                 {"password_verify", c_password_verify},
                                 {"password_needs_rehash", c_password_needs_rehash},
                                 {"seal", c_seal},
                                 {"open", c_open},
                                 {"blind", c_blind},
                                 {"hmac", c_hmac},
                                 {"hmac_verify", c_hmac_verify},
                                 {"hmac_open", c_hmac_open},
                                 {"random", c_random},
                                 {"token", c_token},
                                 {"equal", c_equal},
                                 {"sha256", c_sha256},
                                 {"b64url_encode", c_b64url_encode},
                                 {"b64url_decode", c_b64url_decode},
                                 {NULL, NULL}};
  lua_createtable(L, 0, sizeof(fns) / sizeof(fns[0]) - 1);
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushlightuserdata(L, (void *)c);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  lua_pushinteger(L, TOKEN_BUCKETS * TOKEN_WAYS);
  lua_setfield(L, -2, "token_slots");
  push_token_state(L);
  static const luaL_Reg token_fns[] = {{"token_check", c_token_check},
                                       {"token_claims", c_token_claims}};
  for (size_t i = 0; i < sizeof token_fns / sizeof token_fns[0]; i++) {
    lua_pushlightuserdata(L, (void *)c);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, token_fns[i].func, 2);
    lua_setfield(L, -3, token_fns[i].name);
  }
  if (luaL_loadbuffer(L, token_chunk, sizeof(token_chunk) - 1, "=host.crypto") != 0) lua_error(L);
  lua_pushvalue(L, -3);
  lua_pushlightuserdata(L, (void *)c);
  lua_pushlightuserdata(L, fcfs_vm_of(L));
  lua_pushvalue(L, -5);
  lua_call(L, 4, 0);
  lua_pop(L, 1); /* the token state */
}
