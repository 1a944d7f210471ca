/* test_request.c -- unit tests of request.c's FFI face: fcfs_request_header
 * refuses what it cannot answer (no VM, a name req.headers cannot hold, no
 * room for the answer) with -1 and touches nothing, before it looks for a
 * running request. Its answers for a running request are covered by the
 * black-box host spec (host.header against req.headers). Prints TAP.
 */
#include "request.h"

#include "tap.h"

static void test_refusals(void) {
  /* never dereferenced: every call below is refused on its arguments first */
  int dummy_vm;
  void *vm = &dummy_vm;
  const char *value = "untouched";
  size_t len = 7;
  EXPECT(fcfs_request_header(NULL, "host", 4, &value, &len) == -1);
  EXPECT(fcfs_request_header(vm, NULL, 4, &value, &len) == -1);
  EXPECT(fcfs_request_header(vm, "", 0, &value, &len) == -1);
  char longname[200];
  memset(longname, 'n', sizeof(longname));
  EXPECT(fcfs_request_header(vm, longname, 128, &value, &len) == -1);
  EXPECT(fcfs_request_header(vm, longname, sizeof(longname), &value, &len) == -1);
  EXPECT(fcfs_request_header(vm, "host", 4, NULL, &len) == -1);
  EXPECT(fcfs_request_header(vm, "host", 4, &value, NULL) == -1);
  EXPECT(strcmp(value, "untouched") == 0 && len == 7);
}

int main(void) {
  run("fcfs_request_header refuses bad arguments with -1", test_refusals);
  return tap_done();
}
