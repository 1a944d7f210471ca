/* bench/alloc_count.c -- an LD_PRELOAD shim for bench/hello_cost.sh that counts
 * the calls to malloc, calloc, realloc, posix_memalign/aligned_alloc and free
 * of a process (LuaJIT's own allocator does not go through them) and rewrites
 * the counts into $ALLOC_COUNT_DIR/<pid> every 20 ms from a thread of its own:
 * "malloc N calloc N realloc N memalign N free N". Without ALLOC_COUNT_DIR it
 * only counts. Build: cc -O2 -shared -fPIC -o alloc_count.so alloc_count.c -lpthread */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static unsigned long n_malloc, n_calloc, n_realloc, n_memalign, n_free;

#define COUNT(x) __atomic_add_fetch(&(x), 1, __ATOMIC_RELAXED)

void *malloc(size_t n) {
  COUNT(n_malloc);
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  COUNT(n_calloc);
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  COUNT(n_realloc);
  return __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n) {
  COUNT(n_memalign);
  void *p = __libc_memalign(align, n);
  if (p == NULL) return 12; /* ENOMEM */
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  COUNT(n_memalign);
  return __libc_memalign(align, n);
}
void free(void *p) {
  if (p) COUNT(n_free);
  __libc_free(p);
}

static char path[512];

static void *writer(void *arg) {
  (void)arg;
  char tmp[520], line[160];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  for (;;) {
    int n = snprintf(line, sizeof(line), "malloc %lu calloc %lu realloc %lu memalign %lu free %lu\n",
                     __atomic_load_n(&n_malloc, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_calloc, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_realloc, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_memalign, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_free, __ATOMIC_RELAXED));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      if (write(fd, line, (size_t)n) == n) rename(tmp, path);
      close(fd);
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* In every process that maps the shim, including the children it re-executes. */
__attribute__((constructor)) static void start(void) {
  const char *dir = getenv("ALLOC_COUNT_DIR");
  if (dir == NULL || dir[0] == '\0') return;
  snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_create(&t, &a, writer, NULL);
  pthread_attr_destroy(&a);
}
