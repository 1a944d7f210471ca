/* tap.h -- the TAP case runner of the C unit tests (include once per test
 * executable): run("name", fn) runs one case and prints `ok N - name` or
 * `not ok N - name`; EXPECT / EXPECT_STR inside a case print a `#` line for
 * each failed check and fail the case; main ends with tap_done().
 */
#ifndef FCFS_SPEC_TAP_H
#define FCFS_SPEC_TAP_H

#include <stdio.h>
#include <string.h>

static int ntests, nfailed, case_failed;

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

static void run(const char *name, void (*fn)(void)) {
  case_failed = 0;
  fn();
  ntests++;
  if (case_failed) nfailed++;
  printf("%s %d - %s\n", case_failed ? "not ok" : "ok", ntests, name);
  fflush(stdout);
}

/* Print the plan; the exit code of main. */
static int tap_done(void) {
  printf("1..%d\n", ntests);
  return nfailed ? 1 : 0;
}

#endif
