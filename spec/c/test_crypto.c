/* test_crypto.c -- unit tests of host/crypto.c: secrets parsing (file and
 * environment, demo keys, malformed values), sealing with rotation and
 * forgeries, blind index and HMAC, and password ops on a real libuv loop,
 * including an op forgotten while its hash runs (the ASan build reports a
 * leak or a use after free there), PHC strings read and written as
 * libsodium does and malformed ones refused, hashes that reuse their
 * thread's memory, and a hash that cannot get its memory.
 * Prints TAP; exits non-zero on failure.
 */
#include "crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "tap.h"

#define K1 "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" /* "0123456789abcdef" x2 */
#define K2 "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
#define DEMO "ZmNmcyBERU1PIHNlYWwga2V5ICMxIE5PVCBTRUNSRVQ="

static const char *names[] = {"FCFS_SECRET_SEAL_KEYS", "FCFS_SECRET_BLIND_KEY",
                              "FCFS_SECRET_TOKEN_KEY"};

/* A config with defaults, cheap argon2 and the given secrets in the
 * environment (NULL = unset). */
static fcfs_conf_t conf_with(const char *seal, const char *blind, const char *token) {
  fcfs_conf_t c;
  char err[256];
  const char *vals[] = {seal, blind, token};
  for (int i = 0; i < 3; i++)
    if (vals[i])
      setenv(names[i], vals[i], 1);
    else
      unsetenv(names[i]);
  setenv("FCFS_ARGON2_OPS", "1", 1);
  setenv("FCFS_ARGON2_MEM_KIB", "64", 1);
  if (fcfs_conf_load(&c, NULL, err, sizeof(err)) != 0) {
    printf("# conf: %s\n", err);
    exit(1);
  }
  return c;
}

static fcfs_crypto_t *load(fcfs_conf_t *c, char *err, size_t errlen) {
  fcfs_crypto_t *k = fcfs_crypto_new(c, err, errlen);
  fcfs_conf_free(c);
  return k;
}

static fcfs_crypto_t *keys(const char *seal, const char *blind, const char *token) {
  char err[512];
  fcfs_conf_t c = conf_with(seal, blind, token);
  fcfs_crypto_t *k = load(&c, err, sizeof(err));
  if (k == NULL) printf("# %s\n", err);
  return k;
}

static const char *refusal(const char *seal, const char *blind, int dev) {
  static char err[512];
  fcfs_conf_t c = conf_with(seal, blind, NULL);
  c.dev = dev;
  fcfs_crypto_t *k = load(&c, err, sizeof(err));
  if (k == NULL) return err;
  fcfs_crypto_free(k);
  return NULL;
}

static void test_secrets_env(void) {
  const char *e;
  EXPECT(refusal("1:" K1 ", 7:" K2, K1, 0) == NULL);
  e = refusal("1:" DEMO, NULL, 0);
  EXPECT(e && strstr(e, "FCFS_SECRET_SEAL_KEYS key 1 is a shipped DEMO key"));
  e = refusal("1:" K1, DEMO, 0);
  EXPECT(e && strstr(e, "FCFS_SECRET_BLIND_KEY is a shipped DEMO key"));
  EXPECT(refusal("1:" DEMO, DEMO, 1) == NULL); /* dev = true */
  e = refusal("256:" K1, NULL, 1);
  EXPECT(e && strstr(e, "ids 1 to 255"));
  e = refusal("1" K1, NULL, 1);
  EXPECT(e && strstr(e, "ids 1 to 255"));
  e = refusal("2:" K1 ",2:" K2, NULL, 1);
  EXPECT(e && strstr(e, "names key 2 twice"));
  e = refusal("1:" K1, "c2hvcnQ=", 1);
  EXPECT(e && strstr(e, "FCFS_SECRET_BLIND_KEY is not 32 bytes") && !strstr(e, "c2hvcnQ"));
  /* url-safe and unpadded base64 are accepted */
  EXPECT(refusal("1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk",
                 "__________________________________________8", 1) == NULL);
}

static void test_secrets_file(void) {
  char path[] = "/tmp/fcfs-test-secrets.XXXXXX";
  int fd = mkstemp(path);
  EXPECT(fd >= 0);
  const char *text = "# comment\n\n  FCFS_SECRET_SEAL_KEYS = 4:" K1 "\r\nFCFS_SECRET_TOKEN_KEY=" K2
                     "\nFCFS_SECRET_BLIND_KEY=" K1 "\n";
  EXPECT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  char err[512];
  fcfs_conf_t c = conf_with("5:" K1, NULL, NULL); /* the environment wins over the file... */
  free(c.secrets_file);
  c.secrets_file = strdup(path);
  fcfs_crypto_t *k = fcfs_crypto_new(&c, err, sizeof(err));
  EXPECT(k != NULL);
  if (k) {
    unsigned char out[FCFS_SEAL_OVERHEAD + 1];
    EXPECT(fcfs_crypto_seal(k, (const unsigned char *)"x", 1, NULL, 0, out) == 0 && out[0] == 5);
    EXPECT(fcfs_crypto_has_token_key(k) && fcfs_crypto_has_blind_key(k));
    fcfs_crypto_free(k);
  }
  /* ...and a bad line is refused with its number */
  FILE *f = fopen(path, "a");
  fputs("FCFS_SECRET_NOPE=1\n", f);
  fclose(f);
  k = fcfs_crypto_new(&c, err, sizeof(err));
  EXPECT(k == NULL && strstr(err, ":6: unknown secret name"));
  unlink(path);
  k = fcfs_crypto_new(&c, err, sizeof(err));
  EXPECT(k == NULL && strstr(err, "No such file"));
  fcfs_conf_free(&c);
}

static void test_seal(void) {
  fcfs_crypto_t *a = keys("1:" K1, NULL, NULL), *b = keys("1:" K1 ",2:" K2, NULL, NULL);
  fcfs_crypto_t *c = keys("2:" K2, NULL, NULL), *none = keys(NULL, NULL, NULL);
  EXPECT(a && b && c && none);
  if (!(a && b && c && none)) return;
  const char *pt = "비밀 메시지";
  size_t n = strlen(pt);
  unsigned char s1[64], s2[64], out[64];
  EXPECT(fcfs_crypto_seal(a, (const unsigned char *)pt, n, (const unsigned char *)"ad", 2, s1) ==
         0);
  EXPECT(s1[0] == 1);
  EXPECT(fcfs_crypto_open(b, s1, n + FCFS_SEAL_OVERHEAD, (const unsigned char *)"ad", 2, out) ==
         NULL);
  EXPECT(memcmp(out, pt, n) == 0);
  EXPECT(fcfs_crypto_seal(b, (const unsigned char *)pt, n, NULL, 0, s2) == 0 && s2[0] == 2);
  EXPECT(
      strcmp(fcfs_crypto_open(c, s1, n + FCFS_SEAL_OVERHEAD, (const unsigned char *)"ad", 2, out),
             "unknown key") == 0);
  EXPECT(fcfs_crypto_open(c, s2, n + FCFS_SEAL_OVERHEAD, NULL, 0, out) == NULL);
  EXPECT(strcmp(fcfs_crypto_open(b, s1, n + FCFS_SEAL_OVERHEAD, NULL, 0, out), "forged") == 0);
  for (size_t i = 1; i < n + FCFS_SEAL_OVERHEAD; i++) {
    s2[i] ^= 0x80;
    EXPECT(strcmp(fcfs_crypto_open(b, s2, n + FCFS_SEAL_OVERHEAD, NULL, 0, out), "forged") == 0);
    s2[i] ^= 0x80;
  }
  EXPECT(strcmp(fcfs_crypto_open(b, s2, FCFS_SEAL_OVERHEAD - 1, NULL, 0, out), "forged") == 0);
  /* a key id that was never configured, on a store that has no keys at all */
  EXPECT(strcmp(fcfs_crypto_open(none, s2, n + FCFS_SEAL_OVERHEAD, NULL, 0, out), "unknown key") ==
         0);
  EXPECT(fcfs_crypto_seal(none, (const unsigned char *)pt, n, NULL, 0, s2) == -1);
  fcfs_crypto_free(a);
  fcfs_crypto_free(b);
  fcfs_crypto_free(c);
  fcfs_crypto_free(none);
}

static void test_blind_hmac(void) {
  fcfs_crypto_t *a = keys(NULL, K1, K2), *b = keys(NULL, K2, K1), *none = keys(NULL, NULL, NULL);
  EXPECT(a && b && none);
  if (!(a && b && none)) return;
  char h1[FCFS_BLIND_HEX], h2[FCFS_BLIND_HEX], h3[FCFS_BLIND_HEX];
  const unsigned char *m = (const unsigned char *)"kim@example.com";
  EXPECT(fcfs_crypto_blind(a, m, 15, h1) == 0 && fcfs_crypto_blind(a, m, 15, h2) == 0);
  EXPECT(fcfs_crypto_blind(b, m, 15, h3) == 0);
  EXPECT(strlen(h1) == 64 && strcmp(h1, h2) == 0 && strcmp(h1, h3) != 0);
  unsigned char t1[FCFS_HMAC_BYTES], t2[FCFS_HMAC_BYTES];
  EXPECT(fcfs_crypto_hmac(a, m, 15, t1) == 0 && fcfs_crypto_hmac(b, m, 15, t2) == 0);
  EXPECT(memcmp(t1, t2, sizeof(t1)) != 0);
  EXPECT(fcfs_crypto_blind(none, m, 15, h1) == -1 && fcfs_crypto_hmac(none, m, 15, t1) == -1);
  fcfs_crypto_free(a);
  fcfs_crypto_free(b);
  fcfs_crypto_free(none);
}

/* The tag is HMAC-SHA256 under the token key at every message length, the same on every call (it
 * starts from a state keyed once at load: each call must copy it, never use it up), at every length
 * from 0 to 200 (one, two and more blocks, the padding in the last block or in one of its own). */
static void test_hmac_answers(void) {
  fcfs_crypto_t *a = keys(NULL, NULL, K2);
  EXPECT(a != NULL);
  if (!a) return;
  const unsigned char *key = (const unsigned char *)"ABCDEFGHIJKLMNOPQRSTUVWXYZ456789"; /* K2 */
  unsigned char msg[200], want[FCFS_HMAC_BYTES], got[FCFS_HMAC_BYTES];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (unsigned char)(i * 7 + 1);
  int same = 1;
  for (int round = 0; round < 2; round++)
    for (size_t len = 0; len <= sizeof msg; len++) {
      crypto_auth_hmacsha256(want, msg, len, key);
      same &= fcfs_crypto_hmac(a, msg, len, got) == 0 && memcmp(want, got, sizeof got) == 0;
    }
  EXPECT(same);
  fcfs_crypto_free(a);
}

typedef struct {
  int calls, ok;
  char encoded[FCFS_PWHASH_STRBYTES];
  const char *err;
} pw_result_t;

static void on_pw(void *arg, const char *err, const char *encoded, int ok) {
  pw_result_t *r = arg;
  r->calls++;
  r->err = err;
  r->ok = ok;
  if (encoded) snprintf(r->encoded, sizeof(r->encoded), "%s", encoded);
}

static void test_passwords(void) {
  fcfs_crypto_t *k = keys(NULL, NULL, NULL);
  EXPECT(k != NULL);
  if (!k) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  pw_result_t h = {0}, right = {0}, wrong = {0}, forgotten = {0};
  EXPECT(fcfs_crypto_pw_hash(&loop, k, "pässword", 9, on_pw, &h) != NULL);
  EXPECT(h.calls == 0); /* never from inside the call */
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT(h.calls == 1 && h.err == NULL);
  EXPECT(strncmp(h.encoded, "$argon2id$v=19$m=64,t=1,p=1$", 28) == 0);
  EXPECT(!fcfs_crypto_pw_needs_rehash(k, h.encoded));
  EXPECT(fcfs_crypto_pw_verify(&loop, k, h.encoded, strlen(h.encoded), "pässword", 9, on_pw, &right));
  EXPECT(fcfs_crypto_pw_verify(&loop, k, h.encoded, strlen(h.encoded), "password", 8, on_pw, &wrong));
  /* forgotten while running (the first ones) or still queued (more than the
   * pool has threads): no callback, each freed by its after-work callback */
  for (int i = 0; i < 12; i++) {
    fcfs_pw_op_t *op = fcfs_crypto_pw_hash(&loop, k, "gone", 4, on_pw, &forgotten);
    EXPECT(op != NULL);
    if (op) fcfs_crypto_pw_forget(op);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT(right.calls == 1 && right.ok == 1);
  EXPECT(wrong.calls == 1 && wrong.ok == 0);
  EXPECT(forgotten.calls == 0);
  EXPECT(fcfs_crypto_pw_verify(&loop, k, h.encoded, FCFS_PWHASH_STRBYTES, "x", 1, on_pw, &wrong) ==
         NULL);
  EXPECT(fcfs_crypto_pw_hash(&loop, k, "x", FCFS_PASSWORD_MAX + 1, on_pw, &h) == NULL);
  uv_loop_close(&loop);
  fcfs_crypto_free(k);

  fcfs_crypto_t *stronger = NULL;
  setenv("FCFS_ARGON2_OPS", "3", 1);
  fcfs_conf_t c;
  char err[256];
  if (fcfs_conf_load(&c, NULL, err, sizeof(err)) == 0) {
    stronger = fcfs_crypto_new(&c, err, sizeof(err));
    fcfs_conf_free(&c);
  }
  EXPECT(stronger && fcfs_crypto_pw_needs_rehash(stronger, h.encoded));
  EXPECT(stronger && fcfs_crypto_pw_needs_rehash(stronger, "$argon2i$v=19$m=64,t=3,p=1$x$y"));
  EXPECT(stronger && fcfs_crypto_pw_needs_rehash(stronger, "garbage"));
  fcfs_crypto_free(stronger);
}

/* Hash one password on the loop: the error, or NULL and the encoded string
 * in out (FCFS_PWHASH_STRBYTES bytes). */
static const char *hash_once(uv_loop_t *loop, const fcfs_crypto_t *k, const char *pw, char *out) {
  pw_result_t r = {0};
  if (fcfs_crypto_pw_hash(loop, k, pw, strlen(pw), on_pw, &r) == NULL) return "not started";
  uv_run(loop, UV_RUN_DEFAULT);
  if (r.calls != 1) return "not called back once";
  if (out) memcpy(out, r.encoded, sizeof r.encoded);
  return r.err;
}

/* Verify one encoded string on the loop: ok 0 or 1, -1 when the op did not
 * start or reported an error. */
static int verify_once(uv_loop_t *loop, const fcfs_crypto_t *k, const char *encoded,
                       const char *pw) {
  pw_result_t r = {0};
  if (fcfs_crypto_pw_verify(loop, k, encoded, strlen(encoded), pw, strlen(pw), on_pw, &r) == NULL)
    return -1;
  uv_run(loop, UV_RUN_DEFAULT);
  return r.calls == 1 && r.err == NULL ? r.ok : -1;
}

/* The PHC strings: libsodium verifies ours and we verify libsodium's; a
 * string that is not one (or whose numbers argon2 refuses) verifies
 * nothing, and crashes nothing. */
static void test_password_strings(void) {
  fcfs_crypto_t *k = keys(NULL, NULL, NULL);
  EXPECT(k != NULL);
  if (!k) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  pw_result_t h = {0};
  EXPECT(hash_once(&loop, k, "hunter2", h.encoded) == NULL);
  EXPECT(crypto_pwhash_str_verify(h.encoded, "hunter2", 7) == 0);
  EXPECT(crypto_pwhash_str_verify(h.encoded, "hunter3", 7) == -1);
  char theirs[crypto_pwhash_STRBYTES];
  EXPECT(crypto_pwhash_str_alg(theirs, "hunter2", 7, 2, 128 * 1024, crypto_pwhash_ALG_ARGON2ID13) ==
         0);
  EXPECT(verify_once(&loop, k, theirs, "hunter2") == 1);
  EXPECT(verify_once(&loop, k, theirs, "Hunter2") == 0);
  EXPECT(verify_once(&loop, k, h.encoded, "hunter2") == 1);

  /* the real hash with one field broken in turn, verified with its own
   * password: only the break can refuse it. {head, salt, tag}: NULL ends
   * the string there, and "%s" in salt or tag stands for the real one. */
  char salt[32], tag[64];
  EXPECT(sscanf(h.encoded, "$argon2id$v=19$m=64,t=1,p=1$%31[^$]$%63s", salt, tag) == 2);
  const char *H = "$argon2id$v=19$m=64,t=1,p=1";
  const struct {
    const char *head, *salt, *tag;
  } bad[] = {
      {"", NULL, NULL},
      {"$argon2id$v=19$", NULL, NULL},
      {"$argon2i$v=19$m=64,t=1,p=1", "%s", "%s"},
      {"$argon2id$v=16$m=64,t=1,p=1", "%s", "%s"},
      {"$argon2id$m=64,t=1,p=1", "%s", "%s"},
      {"$argon2id$v=19$m=0,t=1,p=1", "%s", "%s"},
      {"$argon2id$v=19$m=064,t=1,p=1", "%s", "%s"},
      {"$argon2id$v=19$m=4294967360,t=1,p=1", "%s", "%s"},         /* 2^32 + 64 */
      {"$argon2id$v=19$m=18446744073709551680,t=1,p=1", "%s", "%s"}, /* 2^64 + 64 */
      {"$argon2id$v=19$m=64,t=0,p=1", "%s", "%s"},
      {"$argon2id$v=19$m=64,p=1", "%s", "%s"},
      {"$argon2id$v=19$m=64,t=1,p=0", "%s", "%s"},
      {"$argon2id$v=19$m=64,t=1,p=+1", "%s", "%s"},
      {"$argon2id$v=19$m=64,t=1,p=1,x=1", "%s", "%s"},
      {H, "c29tZQ", "%s"}, /* a 4-byte salt */
      {H, "%s==", "%s"},
      {H, "%s!", "%s"},
      {H, "!%s", "%s"},
      {H, "%s", NULL},
      {H, "%s", ""},
      {H, "%s", "%.8s"},
      {H, "%s", "%s$"},
      {H, "%s", "%s "},
      {H, "%s", "%s="},
      {H, "c29tZXNhbHQ", /* a 65-byte tag: one more than is read back */
       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char s[FCFS_PWHASH_STRBYTES], f[FCFS_PWHASH_STRBYTES];
    int n = snprintf(s, sizeof s, "%s", bad[i].head);
    if (bad[i].salt) {
      snprintf(f, sizeof f, bad[i].salt, salt);
      n += snprintf(s + n, sizeof s - (size_t)n, "$%s", f);
    }
    if (bad[i].tag) {
      snprintf(f, sizeof f, bad[i].tag, tag);
      snprintf(s + n, sizeof s - (size_t)n, "$%s", f);
    }
    int ok = verify_once(&loop, k, s, "hunter2");
    EXPECT(ok == 0);
    if (ok != 0) printf("# %s verified as %d\n", s, ok);
  }
  /* every single character of a real hash changed: never the password */
  size_t n = strlen(h.encoded), changed = 0;
  for (size_t i = 0; i < n; i++) {
    char mutated[FCFS_PWHASH_STRBYTES];
    memcpy(mutated, h.encoded, n + 1);
    mutated[i] = mutated[i] == 'A' ? 'B' : 'A';
    changed += verify_once(&loop, k, mutated, "hunter2") == 0;
  }
  EXPECT(changed == n);
  if (changed != n) printf("# %zu of %zu one-character changes refused\n", changed, n);
  uv_loop_close(&loop);
  fcfs_crypto_free(k);
}

/* The process's address space in bytes (VmSize of /proc/self/status). */
static unsigned long vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %lu kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib * 1024;
}

/* Minor page faults of the whole process so far (field 10 of /proc/self/stat;
 * the command name, field 2, contains no space here). */
static long minor_faults(void) {
  FILE *f = fopen("/proc/self/stat", "r");
  long n = -1;
  if (f) {
    if (fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %ld", &n) != 1) n = -1;
    fclose(f);
  }
  return n;
}

/* A hash reuses the memory its pool thread mapped for the last one: once
 * the thread has hashed, further hashes fault in no new pages. (libsodium
 * mapped, populated and unmapped argon2_mem_kib for every hash, holding the
 * process's memory-map lock that a loop growing its heap waits for.) The
 * pool has one thread here (main), so the warm-up hash was that thread's. */
static void test_password_memory_reused(void) {
  enum { MEM_KIB = 8192, MEASURED = 4 };
  fcfs_conf_t c = conf_with(NULL, NULL, NULL);
  c.argon2_mem_kib = MEM_KIB;
  char err[256];
  fcfs_crypto_t *k = load(&c, err, sizeof(err));
  EXPECT(k != NULL);
  if (!k) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  EXPECT(hash_once(&loop, k, "warm", NULL) == NULL);
  long before = minor_faults();
  for (int i = 0; i < MEASURED; i++) EXPECT(hash_once(&loop, k, "again", NULL) == NULL);
  long faults = minor_faults() - before, pages = MEM_KIB / 4;
  EXPECT(before >= 0 && faults < pages / 2);
  if (faults >= pages / 2)
    printf("# %ld page faults in %d hashes of %ld pages\n", faults, MEASURED, pages);

  /* a verify of an older, costlier hash (4x the memory) maps its memory for
   * that hash alone: the address space comes back to what it was */
  char older[crypto_pwhash_STRBYTES];
  EXPECT(crypto_pwhash_str_alg(older, "old", 3, 1, 4ul * MEM_KIB * 1024,
                               crypto_pwhash_ALG_ARGON2ID13) == 0);
  unsigned long vm = vm_size();
  EXPECT(verify_once(&loop, k, older, "old") == 1);
  EXPECT(vm_size() <= vm);
  if (vm_size() > vm) printf("# address space %lu -> %lu bytes\n", vm, vm_size());
  uv_loop_close(&loop);
  fcfs_crypto_free(k);
}

/* A hash or a verify whose memory cannot be had answers "out of memory"
 * (the address space capped under the argon2 memory asked for), not a
 * mismatch, and the pool hashes again once it can. */
static void test_password_out_of_memory(void) {
  fcfs_conf_t c = conf_with(NULL, NULL, NULL);
  c.argon2_mem_kib = 1024 * 1024; /* 1 GiB */
  char err[256];
  fcfs_crypto_t *huge = load(&c, err, sizeof(err));
  fcfs_crypto_t *small = keys(NULL, NULL, NULL);
  EXPECT(huge != NULL && small != NULL);
  if (!huge || !small) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  EXPECT(hash_once(&loop, small, "threads", NULL) == NULL); /* the pool exists before the cap */
  struct rlimit old, capped;
  EXPECT(getrlimit(RLIMIT_AS, &old) == 0);
  capped = old;
  capped.rlim_cur = vm_size() + 256ul * 1024 * 1024;
  EXPECT(setrlimit(RLIMIT_AS, &capped) == 0);
  const char *err_big = hash_once(&loop, huge, "big", NULL);
  pw_result_t v = {0}; /* a well-formed hash of the same cost */
  const char *costly = "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$"
                       "q7oyL5WvLM8uNfNkOGXkGpqOfMmk4Dg+eBtNiKOSHr0";
  EXPECT(fcfs_crypto_pw_verify(&loop, huge, costly, strlen(costly), "big", 3, on_pw, &v) != NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT(setrlimit(RLIMIT_AS, &old) == 0);
  EXPECT(err_big != NULL && strcmp(err_big, "out of memory") == 0);
  EXPECT(v.calls == 1 && v.ok == 0 && v.err != NULL && strcmp(v.err, "out of memory") == 0);
  EXPECT(hash_once(&loop, small, "again", NULL) == NULL);
  uv_loop_close(&loop);
  fcfs_crypto_free(huge);
  fcfs_crypto_free(small);
}

int main(void) {
  /* one pool thread: test_password_memory_reused knows which thread hashed */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  run("secrets from the environment: demo keys, ids, malformed values", test_secrets_env);
  run("secrets file: format, environment wins, bad lines", test_secrets_file);
  run("seal/open: rotation, unknown key, every flipped byte forged", test_seal);
  run("blind index and HMAC depend on their keys", test_blind_hmac);
  run("HMAC answers HMAC-SHA256 under the token key at every length, on every call",
      test_hmac_answers);
  run("password hash/verify on the thread pool, forgotten op, rehash", test_passwords);
  run("password strings: libsodium's and ours verify both ways; malformed ones verify nothing",
      test_password_strings);
  run("password hashes reuse their thread's memory; a costlier old hash's memory is not kept",
      test_password_memory_reused);
  run("a hash or verify without memory answers \"out of memory\"; the next one works",
      test_password_out_of_memory);
  return tap_done();
}
