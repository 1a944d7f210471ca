/* tap.h -- the TAP output of the C unit tests (include once per test
 * executable). Two ways to count, sharing one counter pair:
 *   CHECK(cond, name)   one check, one line: `ok N - name` or `not ok N - name`
 *                       with the file, line and failed condition as a diagnostic;
 *   run("name", fn)     one case of several checks: EXPECT / EXPECT_STR inside fn
 *                       print a `#` line for each failed check and fail the case.
 * main ends with `return tap_done();` (prints the plan; non-zero when a test
 * failed).
 */
#ifndef FCFS_SPEC_TAP_H
#define FCFS_SPEC_TAP_H

#include <stdio.h>
#include <string.h>

static int ntests, nfail, case_failed;

#define CHECK(cond, name)                                                                          \
  do {                                                                                             \
    ntests++;                                                                                      \
    if (cond) {                                                                                    \
      printf("ok %d - %s\n", ntests, name);                                                        \
    } else {                                                                                       \
      nfail++;                                                                                     \
      printf("not ok %d - %s\n#   %s:%d: %s\n", ntests, name, __FILE__, __LINE__, #cond);          \
    }                                                                                              \
    fflush(stdout);                                                                                \
  } while (0)

#define EXPECT(c)                                                                                  \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      case_failed = 1;                                                                             \
      printf("# %s:%d: expected %s\n", __FILE__, __LINE__, #c);                                    \
    }                                                                                              \
  } while (0)

#define EXPECT_STR(got, want)                                                                      \
  do {                                                                                             \
    const char *g_ = (got), *w_ = (want);                                                          \
    if (strcmp(g_, w_) != 0) {                                                                     \
      case_failed = 1;                                                                             \
      printf("# %s:%d: got\n#   [%s]\n# want\n#   [%s]\n", __FILE__, __LINE__, g_, w_);            \
    }                                                                                              \
  } while (0)

static inline void run(const char *name, void (*fn)(void)) {
  case_failed = 0;
  fn();
  ntests++;
  if (case_failed) nfail++;
  printf("%s %d - %s\n", case_failed ? "not ok" : "ok", ntests, name);
  fflush(stdout);
}

/* Print the plan; the exit code of main. */
static inline int tap_done(void) {
  printf("1..%d\n", ntests);
  return nfail ? 1 : 0;
}

#endif
