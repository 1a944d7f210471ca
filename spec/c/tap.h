/* tap.h -- the TAP output of the C tests: CHECK(cond, name) prints one
 * "ok N - name" or "not ok N - name" line (with the file, line and failed
 * condition as a diagnostic); the test ends with printf("1..%d\n", ntests)
 * and exits non-zero when nfail > 0. One counter pair per test executable.
 */
#ifndef FCFS_TAP_H
#define FCFS_TAP_H

#include <stdio.h>

static int ntests, nfail;

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

#endif
