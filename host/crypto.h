/* crypto.h -- the node's keys and the primitives behind host.crypto
 * (libsodium): argon2id password hashing on the libuv thread pool, sealing
 * with XChaCha20-Poly1305 and key rotation, a keyed blind index, HMAC.
 *
 * The keys are read once at start (fcfs_crypto_new) from the secrets file
 * and the FCFS_SECRET_* environment, kept in guarded, read-only memory
 * (sodium_malloc) and never handed to Lua. See crypto.c for the formats.
 */
#ifndef FCFS_CRYPTO_H
#define FCFS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct fcfs_crypto_s fcfs_crypto_t;
struct uv_loop_s;

/* A sealed value: 1 byte key id, 24 bytes nonce, the ciphertext, 16 bytes tag. */
#define FCFS_SEAL_HEADER 25
#define FCFS_SEAL_OVERHEAD (FCFS_SEAL_HEADER + 16)
#define FCFS_BLIND_HEX 65 /* 64 hex digits and a NUL */
#define FCFS_HMAC_BYTES 32
#define FCFS_PASSWORD_MAX 4096 /* bytes; longer passwords are refused ("too long") */
#define FCFS_PWHASH_STRBYTES 128

/* Read the keys of conf (secrets_file, then FCFS_SECRET_* from the
 * environment, which win). NULL with a message naming the secret (never its
 * value) in err when a secret is malformed, or is one of the shipped DEMO
 * keys while conf->dev is false. Missing keys are allowed: the functions
 * that need one report it. */
fcfs_crypto_t *fcfs_crypto_new(const fcfs_conf_t *conf, char *err, size_t errlen);
void fcfs_crypto_free(fcfs_crypto_t *c);

/* Which keys are configured (for the start-up log line; no key material). */
int fcfs_crypto_seal_key_count(const fcfs_crypto_t *c);

/* Seal pt into out (FCFS_SEAL_OVERHEAD + ptlen bytes) with the newest seal
 * key, binding ad (may be NULL/0). 0, or -1 when no seal key is configured. */
int fcfs_crypto_seal(const fcfs_crypto_t *c, const unsigned char *pt, size_t ptlen,
                     const unsigned char *ad, size_t adlen, unsigned char *out);

/* Open a sealed value into out (inlen - FCFS_SEAL_OVERHEAD bytes, when that
 * is not negative). NULL on success, else "forged" (too short, tampered,
 * wrong ad) or "unknown key" (a key id no longer configured). */
const char *fcfs_crypto_open(const fcfs_crypto_t *c, const unsigned char *in, size_t inlen,
                             const unsigned char *ad, size_t adlen, unsigned char *out);

/* Keyed BLAKE2b-256 of s as lower-case hex. 0, or -1 without a blind key. */
int fcfs_crypto_blind(const fcfs_crypto_t *c, const unsigned char *s, size_t len,
                      char hex[FCFS_BLIND_HEX]);

/* HMAC-SHA256 of msg under the token key. 0, or -1 without a token key. */
int fcfs_crypto_hmac(const fcfs_crypto_t *c, const unsigned char *msg, size_t len,
                     unsigned char tag[FCFS_HMAC_BYTES]);

/* Whether each key is configured. */
int fcfs_crypto_has_blind_key(const fcfs_crypto_t *c);
int fcfs_crypto_has_token_key(const fcfs_crypto_t *c);

/* Password hashing off the loop. The op copies the password (wiped after
 * use) and the encoded hash; the hash runs on the libuv thread pool and cb
 * runs on the loop when it is done: for a hash with err NULL and the
 * encoded string (valid during the call), for a verify with ok 0 or 1.
 * A hash costs c's argon2 ops and memory; a verify costs what its encoded
 * string says, and c's memory bounds what its pool thread keeps after.
 * err is "out of memory" when argon2 could not get its memory (a verify
 * then reports no match either way).
 * fcfs_crypto_pw_forget() (e.g. the request was cancelled) means cb is not
 * called; a hash still queued is dropped, one running finishes; either way
 * the op frees itself in the after-work callback on the loop. NULL
 * when the op could not be started (out of memory). */
typedef struct fcfs_pw_op_s fcfs_pw_op_t;
typedef void (*fcfs_pw_cb)(void *arg, const char *err, const char *encoded, int ok);
fcfs_pw_op_t *fcfs_crypto_pw_hash(struct uv_loop_s *loop, const fcfs_crypto_t *c, const char *pw,
                                  size_t pwlen, fcfs_pw_cb cb, void *arg);
fcfs_pw_op_t *fcfs_crypto_pw_verify(struct uv_loop_s *loop, const fcfs_crypto_t *c,
                                    const char *encoded, size_t enclen, const char *pw,
                                    size_t pwlen, fcfs_pw_cb cb, void *arg);
void fcfs_crypto_pw_forget(fcfs_pw_op_t *op);

/* Whether encoded is not an argon2id hash at the configured cost. */
int fcfs_crypto_pw_needs_rehash(const fcfs_crypto_t *c, const char *encoded);

/* Access tokens (lapi_crypto.c, called by lib/auth.lua through LuaJIT's FFI): a token, or the
 * bearer token of an Authorization value (bearer != 0: "Bearer <token>", any case, as lib/auth.lua
 * matches it), checked against the token key -- its tag, then its body decoded and parsed as
 * "at1:<uid>:<sid>:<ROLE>:<exp>" -- or found in cache, the tokens already so checked (cache:
 * fcfs_token_cache_size() zeroed bytes, 8-byte aligned, owned by the caller). FCFS_TOKEN_OK and
 * the claims in out: role and sid_text (the session id's digits) point into the cache, valid
 * until its next check; slot (1..) and gen name the cache slot holding the token and its
 * generation, which changes when another token takes the slot (slot and gen 0: not cached).
 * Expiry and revocation are the caller's. fcfs_token_check_request checks the Authorization
 * header of the request running on vm (fcfs_request_header): FCFS_TOKEN_UNANSWERED when no
 * request runs or it has several such headers. */
typedef struct {
  double uid, sid, exp;
  const char *role, *sid_text;
  uint32_t role_len, sid_len, slot, gen;
} fcfs_token_claims_t;
enum {
  FCFS_TOKEN_OK,
  FCFS_TOKEN_MALFORMED,
  FCFS_TOKEN_FORGED,
  FCFS_TOKEN_NO_KEY,
  FCFS_TOKEN_UNANSWERED,
};
typedef struct fcfs_token_cache_s fcfs_token_cache_t;
size_t fcfs_token_cache_size(void);
int fcfs_token_check(const fcfs_crypto_t *c, fcfs_token_cache_t *cache, const char *s, size_t len,
                     int bearer, fcfs_token_claims_t *out);
int fcfs_token_check_request(const fcfs_crypto_t *c, fcfs_token_cache_t *cache, void *vm,
                             fcfs_token_claims_t *out);

/* Push the host.crypto table (lapi_crypto.c); c must outlive the VM. */
struct lua_State;
void fcfs_lapi_crypto_open(struct lua_State *L, const fcfs_crypto_t *c);

#endif
