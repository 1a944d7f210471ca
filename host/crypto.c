/* crypto.c -- the node's secrets and the primitives of host.crypto.
 *
 * Secrets. Three names, each read from the environment or else from the
 * file named by the config key secrets_file (lines NAME=value, `#`
 * comments, no quotes, so a shell can source it too):
 *   FCFS_SECRET_SEAL_KEYS  "1:<base64 32 bytes>,2:<base64 32 bytes>"  ids 1..255
 *   FCFS_SECRET_BLIND_KEY  "<base64 32 bytes>"   BLAKE2b key of blind()
 *   FCFS_SECRET_TOKEN_KEY  "<base64 32 bytes>"   HMAC-SHA256 key of hmac()
 * Values are standard or url-safe base64. A key whose bytes begin with
 * "fcfs DEMO " is one of the shipped demo keys (etc/secrets.dev): with
 * dev = false it is refused, naming the secret. The keys are parsed once,
 * at start, into one sodium_malloc'ed struct (guard pages, no swap where
 * mlock works, read-only after loading, wiped by sodium_free). The file's
 * text is wiped once parsed. Nothing here ever prints a key.
 *
 * Seal format: key id (1 byte) | nonce (24) | XChaCha20-Poly1305-IETF
 * ciphertext and tag. The id is authenticated implicitly: opening under
 * another key fails. New data uses the highest configured id; any
 * configured id opens.
 *
 * Passwords: argon2id on the libuv thread pool, computed by libargon2 (the
 * reference implementation) into the PHC strings libsodium also writes and
 * reads. Each pool thread keeps its argon2 memory from one hash to the next
 * (see pw_alloc: up to UV_THREADPOOL_SIZE x argon2_mem_kib stays mapped),
 * because mapping and unmapping it per hash, as libsodium does, holds the
 * process's memory-map lock that the loops' brk and mprotect wait for. The
 * op owns a copy of the password, wiped right after hashing, and is freed
 * in the after-work callback on the loop, whether or not anyone still
 * waits for it (fcfs_crypto_pw_forget, which also drops a hash that has not
 * started yet), so a cancelled request never frees memory a pool thread is
 * using. The pool threads lower their own priority (nice 10) so the loops
 * win the CPU while hashes run.
 */
#include "crypto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <argon2.h>
#include <sodium.h>
#include <uv.h>

#define KEY_BYTES 32
#define SECRET_FILE_MAX (64 * 1024)
#define POOL_NICE 10
#define PWHASH_TAG_BYTES 32 /* the tag length of libsodium's crypto_pwhash_str, kept */

static const char demo_marker[] = "fcfs DEMO ";

enum { SEAL_KEYS, BLIND_KEY, TOKEN_KEY, NSECRETS };
static const char *const secret_names[NSECRETS] = {"FCFS_SECRET_SEAL_KEYS", "FCFS_SECRET_BLIND_KEY",
                                                   "FCFS_SECRET_TOKEN_KEY"};

struct fcfs_crypto_s {
  unsigned char seal[256][KEY_BYTES];
  unsigned char has_seal[256];
  int newest; /* highest configured seal id, 0 = none */
  int nseal;
  unsigned char blind[KEY_BYTES];
  unsigned char token[KEY_BYTES];
  crypto_auth_hmacsha256_state token_state; /* HMAC keyed once: a tag hashes only the message */
  int has_blind, has_token;
  unsigned long long ops;
  size_t mem; /* bytes */
};

struct fcfs_pw_op_s {
  uv_work_t req;
  fcfs_pw_cb cb; /* NULL once forgotten */
  void *arg;
  int verify, ok;
  const char *err;
  unsigned long long ops;
  size_t mem;
  size_t pwlen;
  char encoded[FCFS_PWHASH_STRBYTES];
  char pw[]; /* pwlen bytes and a NUL, wiped after use */
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- secrets ------------------------------------------------------------- */

static char *trim(char *s, char *end) {
  while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
    s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
    end--;
  *end = '\0';
  return s;
}

/* One base64 key of exactly KEY_BYTES bytes, in any of the four variants. */
static int decode_key(const char *text, size_t len, unsigned char out[KEY_BYTES]) {
  static const int variants[] = {
      sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
      sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
  for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
    size_t n;
    const char *end;
    if (sodium_base642bin(out, KEY_BYTES, text, len, NULL, &n, &end, variants[i]) == 0 &&
        end == text + len && n == KEY_BYTES)
      return 0;
  }
  sodium_memzero(out, KEY_BYTES);
  return -1;
}

static int is_demo(const unsigned char *key) {
  return memcmp(key, demo_marker, sizeof(demo_marker) - 1) == 0;
}

/* which: "" or " key N" for a seal key. */
static int check_demo(const fcfs_conf_t *conf, const unsigned char *key, const char *name,
                      const char *which, char *err, size_t errlen) {
  if (conf->dev || !is_demo(key)) return 0;
  return fail(err, errlen,
              "secrets: %s%s is a shipped DEMO key, refused with dev = false; set real keys in "
              "secrets_file or the environment (`etc/dev secrets FILE` writes random ones)",
              name, which);
}

static int parse_seal_keys(fcfs_crypto_t *c, const fcfs_conf_t *conf, char *text, char *err,
                           size_t errlen) {
  const char *name = secret_names[SEAL_KEYS];
  char *p = text;
  while (*p) {
    char *comma = strchr(p, ',');
    char *end = comma ? comma : p + strlen(p);
    char *item = trim(p, end);
    p = comma ? comma + 1 : end;
    if (*item == '\0') continue;
    char *colon = strchr(item, ':');
    char *idend;
    long id = colon ? strtol(item, &idend, 10) : 0;
    if (colon == NULL || idend != colon || id < 1 || id > 255)
      return fail(err, errlen, "secrets: %s must be a list of id:base64key, ids 1 to 255", name);
    if (c->has_seal[id]) return fail(err, errlen, "secrets: %s names key %ld twice", name, id);
    char *b64 = colon + 1;
    if (decode_key(b64, strlen(b64), c->seal[id]) != 0) {
      return fail(err, errlen, "secrets: %s key %ld is not 32 bytes of base64", name, id);
    }
    char which[16];
    snprintf(which, sizeof(which), " key %ld", id);
    if (check_demo(conf, c->seal[id], name, which, err, errlen) != 0) return -1;
    c->has_seal[id] = 1;
    c->nseal++;
    if (id > c->newest) c->newest = (int)id;
  }
  return 0;
}

static int parse_key(const fcfs_conf_t *conf, int which, const char *text, unsigned char *key,
                     int *has, char *err, size_t errlen) {
  const char *name = secret_names[which];
  if (*text == '\0') return 0;
  if (decode_key(text, strlen(text), key) != 0)
    return fail(err, errlen, "secrets: %s is not 32 bytes of base64", name);
  if (check_demo(conf, key, name, "", err, errlen) != 0) return -1;
  *has = 1;
  return 0;
}

/* Read the secrets file into a malloc'ed, NUL-terminated buffer. */
static char *read_secrets_file(const char *path, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fail(err, errlen, "secrets_file %s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(SECRET_FILE_MAX + 1);
  if (buf == NULL) {
    fclose(f);
    fail(err, errlen, "secrets_file %s: out of memory", path);
    return NULL;
  }
  size_t n = fread(buf, 1, SECRET_FILE_MAX + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > SECRET_FILE_MAX) {
    sodium_memzero(buf, n);
    free(buf);
    fail(err, errlen, "secrets_file %s: %s", path, bad ? "read error" : "larger than 64 KiB");
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* Point values[i] at the value of each NAME=value line of buf (edited in place). */
static int parse_secrets_file(const char *path, char *buf, char *values[NSECRETS], char *err,
                              size_t errlen) {
  char *line = buf;
  int lineno = 0;
  while (*line) {
    char *nl = strchr(line, '\n');
    char *end = nl ? nl : line + strlen(line);
    char *next = nl ? nl + 1 : end;
    lineno++;
    char *s = trim(line, end);
    line = next;
    if (*s == '\0' || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (eq == NULL)
      return fail(err, errlen, "secrets_file %s:%d: expected NAME=value", path, lineno);
    char *name = trim(s, eq);
    char *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
    int i = 0;
    while (i < NSECRETS && strcmp(name, secret_names[i]) != 0)
      i++;
    if (i == NSECRETS)
      return fail(err, errlen, "secrets_file %s:%d: unknown secret name", path, lineno);
    values[i] = value;
  }
  return 0;
}

fcfs_crypto_t *fcfs_crypto_new(const fcfs_conf_t *conf, char *err, size_t errlen) {
  if (sodium_init() < 0) {
    fail(err, errlen, "libsodium failed to start");
    return NULL;
  }
  fcfs_crypto_t *c = sodium_malloc(sizeof(*c));
  if (c == NULL) {
    fail(err, errlen, "secrets: out of memory");
    return NULL;
  }
  memset(c, 0, sizeof(*c));
  c->ops = (unsigned long long)conf->argon2_ops;
  c->mem = (size_t)conf->argon2_mem_kib * 1024;

  char *file = NULL;
  size_t filelen = 0;
  char *values[NSECRETS] = {NULL, NULL, NULL};
  char *envs[NSECRETS] = {NULL, NULL, NULL};
  int rc = -1;
  if (conf->secrets_file[0] != '\0') {
    file = read_secrets_file(conf->secrets_file, &filelen, err, errlen);
    if (file == NULL || parse_secrets_file(conf->secrets_file, file, values, err, errlen) != 0)
      goto done;
  }
  /* The environment wins; its values are copied so they can be edited. */
  for (int i = 0; i < NSECRETS; i++) {
    const char *v = getenv(secret_names[i]);
    if (v == NULL) continue;
    if ((envs[i] = strdup(v)) == NULL) {
      fail(err, errlen, "secrets: out of memory");
      goto done;
    }
    values[i] = envs[i];
  }
  if (values[SEAL_KEYS] && parse_seal_keys(c, conf, values[SEAL_KEYS], err, errlen) != 0) goto done;
  if (values[BLIND_KEY] &&
      parse_key(conf, BLIND_KEY, values[BLIND_KEY], c->blind, &c->has_blind, err, errlen) != 0)
    goto done;
  if (values[TOKEN_KEY] &&
      parse_key(conf, TOKEN_KEY, values[TOKEN_KEY], c->token, &c->has_token, err, errlen) != 0)
    goto done;
  if (c->has_token) crypto_auth_hmacsha256_init(&c->token_state, c->token, KEY_BYTES);
  rc = 0;
done:
  if (file) {
    sodium_memzero(file, filelen);
    free(file);
  }
  for (int i = 0; i < NSECRETS; i++)
    if (envs[i]) {
      sodium_memzero(envs[i], strlen(envs[i]));
      free(envs[i]);
    }
  if (rc != 0) {
    sodium_free(c);
    return NULL;
  }
  sodium_mprotect_readonly(c);
  return c;
}

void fcfs_crypto_free(fcfs_crypto_t *c) {
  if (c) sodium_free(c); /* makes it writable, wipes, unmaps */
}

int fcfs_crypto_seal_key_count(const fcfs_crypto_t *c) {
  return c->nseal;
}

int fcfs_crypto_has_blind_key(const fcfs_crypto_t *c) {
  return c->has_blind;
}

int fcfs_crypto_has_token_key(const fcfs_crypto_t *c) {
  return c->has_token;
}

/* ---- sealing, blind index, HMAC ---------------------------------------------------- */

int fcfs_crypto_seal(const fcfs_crypto_t *c, const unsigned char *pt, size_t ptlen,
                     const unsigned char *ad, size_t adlen, unsigned char *out) {
  if (c->newest == 0) return -1;
  out[0] = (unsigned char)c->newest;
  randombytes_buf(out + 1, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + FCFS_SEAL_HEADER, NULL, pt, ptlen, ad, adlen,
                                             NULL, out + 1, c->seal[c->newest]);
  return 0;
}

const char *fcfs_crypto_open(const fcfs_crypto_t *c, const unsigned char *in, size_t inlen,
                             const unsigned char *ad, size_t adlen, unsigned char *out) {
  if (inlen < FCFS_SEAL_OVERHEAD) return "forged";
  if (!c->has_seal[in[0]]) return "unknown key";
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, in + FCFS_SEAL_HEADER,
                                                 inlen - FCFS_SEAL_HEADER, ad, adlen, in + 1,
                                                 c->seal[in[0]]) != 0)
    return "forged";
  return NULL;
}

int fcfs_crypto_blind(const fcfs_crypto_t *c, const unsigned char *s, size_t len,
                      char hex[FCFS_BLIND_HEX]) {
  unsigned char h[32];
  if (!c->has_blind) return -1;
  crypto_generichash(h, sizeof(h), s, len, c->blind, KEY_BYTES);
  sodium_bin2hex(hex, FCFS_BLIND_HEX, h, sizeof(h));
  return 0;
}

int fcfs_crypto_hmac(const fcfs_crypto_t *c, const unsigned char *msg, size_t len,
                     unsigned char tag[FCFS_HMAC_BYTES]) {
  if (!c->has_token) return -1;
  /* from the keyed state: the key's two blocks are not hashed again for every tag (an access token
   * is checked once per token and worker, a new member's first request included) */
  crypto_auth_hmacsha256_state st = c->token_state;
  crypto_auth_hmacsha256_update(&st, msg, len);
  crypto_auth_hmacsha256_final(&st, tag);
  sodium_memzero(&st, sizeof st);
  return 0;
}

/* ---- passwords ------------------------------------------------------------------- */

/* argon2's memory: each pool thread maps one block at its first hash and
 * reuses it for every later one (libargon2 wipes it after each hash), so no
 * hash maps, faults in or unmaps memory once its thread has hashed, and the
 * loops' brk and mprotect never wait behind one for the process's
 * memory-map lock. The block grows to at most the configured
 * argon2_mem_kib (pw_keep); a verify of an older, costlier hash maps its
 * memory for that hash alone. The pool threads live as long as the process:
 * their blocks are never unmapped. */
static __thread uint8_t *pw_block;
static __thread size_t pw_block_size, pw_keep;

static int pw_alloc(uint8_t **memory, size_t bytes) {
  if (bytes <= pw_block_size) {
    *memory = pw_block;
    return ARGON2_OK;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  *memory = p == MAP_FAILED ? NULL : p; /* libargon2 reads NULL as out of memory */
  if (*memory == NULL) return ARGON2_MEMORY_ALLOCATION_ERROR;
  if (bytes <= pw_keep) {
    if (pw_block) munmap(pw_block, pw_block_size);
    pw_block = *memory;
    pw_block_size = bytes;
  }
  return ARGON2_OK;
}

static void pw_free(uint8_t *memory, size_t bytes) {
  if (memory != pw_block) munmap(memory, bytes);
}

/* The PHC string of an argon2id hash as libsodium and libargon2 write it
 * (standard base64 without padding), so either library verifies the other's:
 *   $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<tag>            */
#define PHC_PREFIX "$argon2id$v=19$"
#define PHC_B64 sodium_base64_VARIANT_ORIGINAL_NO_PADDING
#define PHC_FIELD_MAX 64 /* bytes of a salt or a tag read back */
_Static_assert(sizeof(PHC_PREFIX "m=4294967295,t=4294967295,p=1$") - 1 +
                       sodium_base64_ENCODED_LEN(crypto_pwhash_SALTBYTES, PHC_B64) +
                       sodium_base64_ENCODED_LEN(PWHASH_TAG_BYTES, PHC_B64) <=
                   FCFS_PWHASH_STRBYTES,
               "a PHC string fits the op's encoded buffer");

typedef struct {
  uint32_t m, t, p;
  unsigned char salt[PHC_FIELD_MAX], tag[PHC_FIELD_MAX];
  size_t saltlen, taglen;
} phc_t;

/* key, then decimal digits (no leading zero, at most UINT32_MAX), then
 * stop; what follows stop, or NULL. */
static const char *phc_number(const char *s, const char *key, char stop, uint32_t *out) {
  size_t klen = strlen(key);
  if (strncmp(s, key, klen) != 0) return NULL;
  const char *d = s + klen, *e = d;
  uint64_t v = 0;
  while (*e >= '0' && *e <= '9' && e - d < 10) v = v * 10 + (uint64_t)(*e++ - '0');
  if (e == d || *e != stop || v > UINT32_MAX || (*d == '0' && e - d > 1)) return NULL;
  *out = (uint32_t)v;
  return e + 1;
}

/* base64 up to stop (the end of the string when stop is NUL); what follows
 * stop, or NULL. */
static const char *phc_bytes(const char *s, char stop, unsigned char *out, size_t *len) {
  const char *e = strchr(s, stop), *end;
  if (e == NULL || sodium_base642bin(out, PHC_FIELD_MAX, s, (size_t)(e - s), NULL, len, &end,
                                     PHC_B64) != 0 || end != e)
    return NULL;
  return stop ? e + 1 : e;
}

static int phc_decode(const char *s, phc_t *h) {
  if (strncmp(s, PHC_PREFIX, sizeof(PHC_PREFIX) - 1) != 0) return -1;
  s += sizeof(PHC_PREFIX) - 1;
  return (s = phc_number(s, "m=", ',', &h->m)) && (s = phc_number(s, "t=", ',', &h->t)) &&
                 (s = phc_number(s, "p=", '$', &h->p)) &&
                 (s = phc_bytes(s, '$', h->salt, &h->saltlen)) &&
                 phc_bytes(s, '\0', h->tag, &h->taglen)
             ? 0
             : -1;
}

static void phc_encode(char *out, const phc_t *h) {
  int n = snprintf(out, FCFS_PWHASH_STRBYTES, PHC_PREFIX "m=%u,t=%u,p=%u$", h->m, h->t, h->p);
  sodium_bin2base64(out + n, FCFS_PWHASH_STRBYTES - (size_t)n, h->salt, h->saltlen, PHC_B64);
  n += (int)strlen(out + n);
  out[n++] = '$';
  sodium_bin2base64(out + n, FCFS_PWHASH_STRBYTES - (size_t)n, h->tag, h->taglen, PHC_B64);
}

/* argon2id of op's password under h's cost and salt, into tag (taglen bytes). */
static int pw_argon2(fcfs_pw_op_t *op, const phc_t *h, unsigned char *tag, size_t taglen) {
  argon2_context ctx = {.out = tag,
                        .outlen = (uint32_t)taglen,
                        .pwd = (uint8_t *)op->pw,
                        .pwdlen = (uint32_t)op->pwlen,
                        .salt = (uint8_t *)h->salt,
                        .saltlen = (uint32_t)h->saltlen,
                        .t_cost = h->t,
                        .m_cost = h->m,
                        .lanes = h->p,
                        .threads = 1,
                        .allocate_cbk = pw_alloc,
                        .free_cbk = pw_free,
                        .flags = ARGON2_DEFAULT_FLAGS,
                        .version = ARGON2_VERSION_13};
  return argon2id_ctx(&ctx);
}

/* On a pool thread: never touches the loop or Lua. */
static void pw_work(uv_work_t *req) {
  fcfs_pw_op_t *op = req->data;
  /* POOL_NICE below the main (loop) thread, which may itself run niced;
   * on Linux the nice value is per thread and pid names the main thread */
  errno = 0;
  int want = getpriority(PRIO_PROCESS, (id_t)getpid()) + POOL_NICE;
  if (errno == 0) setpriority(PRIO_PROCESS, (id_t)gettid(), want > 19 ? 19 : want);
  pw_keep = op->mem;
  phc_t h;
  if (op->verify) {
    /* a string that is not a hash, or whose cost argon2 refuses, matches
     * nothing; memory that cannot be had is an error, not a wrong password */
    unsigned char tag[PHC_FIELD_MAX];
    int rc = phc_decode(op->encoded, &h) == 0 ? pw_argon2(op, &h, tag, h.taglen) : ARGON2_DECODING_FAIL;
    op->ok = rc == ARGON2_OK && sodium_memcmp(tag, h.tag, h.taglen) == 0;
    if (rc == ARGON2_MEMORY_ALLOCATION_ERROR) op->err = "out of memory";
    sodium_memzero(tag, sizeof tag);
  } else {
    h = (phc_t){.m = (uint32_t)(op->mem / 1024), .t = (uint32_t)op->ops, .p = 1,
                .saltlen = crypto_pwhash_SALTBYTES, .taglen = PWHASH_TAG_BYTES};
    randombytes_buf(h.salt, h.saltlen);
    int rc = pw_argon2(op, &h, h.tag, h.taglen);
    if (rc == ARGON2_OK)
      phc_encode(op->encoded, &h);
    else
      op->err = rc == ARGON2_MEMORY_ALLOCATION_ERROR ? "out of memory" : argon2_error_message(rc);
  }
  sodium_memzero(op->pw, op->pwlen);
}

/* On the loop: report (unless forgotten) and free. status is UV_ECANCELED
 * when the op was forgotten before a pool thread picked it up. */
static void pw_after(uv_work_t *req, int status) {
  fcfs_pw_op_t *op = req->data;
  if (status != 0 && op->err == NULL) op->err = "cancelled";
  if (op->cb) op->cb(op->arg, op->err, op->err || op->verify ? NULL : op->encoded, op->ok);
  sodium_memzero(op->pw, op->pwlen);
  sodium_memzero(op->encoded, sizeof(op->encoded));
  free(op);
}

static fcfs_pw_op_t *pw_new(int verify, const char *pw, size_t pwlen, fcfs_pw_cb cb, void *arg) {
  if (pwlen > FCFS_PASSWORD_MAX) return NULL;
  fcfs_pw_op_t *op = malloc(sizeof(*op) + pwlen + 1);
  if (op == NULL) return NULL;
  memset(op, 0, sizeof(*op));
  memcpy(op->pw, pw, pwlen);
  op->pw[pwlen] = '\0';
  op->pwlen = pwlen;
  op->verify = verify;
  op->cb = cb;
  op->arg = arg;
  op->req.data = op;
  return op;
}

static fcfs_pw_op_t *pw_queue(uv_loop_t *loop, fcfs_pw_op_t *op) {
  if (uv_queue_work(loop, &op->req, pw_work, pw_after) != 0) {
    sodium_memzero(op->pw, op->pwlen);
    free(op);
    return NULL;
  }
  return op;
}

fcfs_pw_op_t *fcfs_crypto_pw_hash(uv_loop_t *loop, const fcfs_crypto_t *c, const char *pw,
                                  size_t pwlen, fcfs_pw_cb cb, void *arg) {
  fcfs_pw_op_t *op = pw_new(0, pw, pwlen, cb, arg);
  if (op == NULL) return NULL;
  op->ops = c->ops;
  op->mem = c->mem;
  return pw_queue(loop, op);
}

fcfs_pw_op_t *fcfs_crypto_pw_verify(uv_loop_t *loop, const fcfs_crypto_t *c, const char *encoded,
                                    size_t enclen, const char *pw, size_t pwlen, fcfs_pw_cb cb,
                                    void *arg) {
  if (enclen >= FCFS_PWHASH_STRBYTES || memchr(encoded, '\0', enclen) != NULL) return NULL;
  fcfs_pw_op_t *op = pw_new(1, pw, pwlen, cb, arg);
  if (op == NULL) return NULL;
  memcpy(op->encoded, encoded, enclen);
  op->encoded[enclen] = '\0';
  op->mem = c->mem;
  return pw_queue(loop, op);
}

/* A hash nobody waits for is dropped if it has not started (a flood of
 * requests that time out does not keep the pool busy); one already running
 * finishes and is freed by pw_after. */
void fcfs_crypto_pw_forget(fcfs_pw_op_t *op) {
  op->cb = NULL;
  uv_cancel((uv_req_t *)&op->req);
}

int fcfs_crypto_pw_needs_rehash(const fcfs_crypto_t *c, const char *encoded) {
  if (strncmp(encoded, crypto_pwhash_argon2id_STRPREFIX,
              sizeof(crypto_pwhash_argon2id_STRPREFIX) - 1) != 0)
    return 1;
  return crypto_pwhash_str_needs_rehash(encoded, c->ops, c->mem) != 0;
}
