/* test_conf.c -- unit tests of the list-valued and address keys of
 * host/conf.c: real_ip_from from a Lua array and from the environment, its
 * CIDR matching (fcfs_conf_trusted, IPv4, IPv6, IPv4-mapped), refusals
 * naming the key, admin_listen (unix socket or loopback only), and
 * redis_sentinels (IP:port entries, fcfs_conf_ip_port), and
 * worker_cpu_affinity with the pinning it asks for (cpu.c). Prints TAP;
 * exits non-zero on failure.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu.h"
#include "tap.h"

static char conf_path[64];

/* Load a config whose file holds `body` (the inside of the returned table);
 * 0 or -1 with the message in err. */
static int load(fcfs_conf_t *c, const char *body, char *err, size_t errlen) {
  FILE *f = fopen(conf_path, "w");
  if (f == NULL) return -1;
  fprintf(f, "return { %s }\n", body);
  fclose(f);
  return fcfs_conf_load(c, conf_path, err, errlen);
}

static int trusted(const fcfs_conf_t *c, const char *ip) {
  unsigned char a[16];
  int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
  if (inet_pton(family, ip, a) != 1) return -1;
  return fcfs_conf_trusted(c, family, a);
}

static void test_real_ip_from_table(void) {
  fcfs_conf_t c;
  char err[512];
  EXPECT(load(&c,
              "real_ip_from = { '10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1/128', "
              "'172.16.5.9/12' }",
              err, sizeof(err)) == 0);
  EXPECT(c.real_ip_ncidrs == 5);
  EXPECT_STR(c.real_ip_from[1], "192.168.1.7");
  EXPECT(c.real_ip_from[5] == NULL);
  EXPECT(trusted(&c, "10.0.0.1") == 1);
  EXPECT(trusted(&c, "10.255.255.255") == 1);
  EXPECT(trusted(&c, "11.0.0.1") == 0);
  EXPECT(trusted(&c, "192.168.1.7") == 1);
  EXPECT(trusted(&c, "192.168.1.8") == 0);
  EXPECT(trusted(&c, "172.31.0.1") == 1); /* host bits of 172.16.5.9/12 are ignored */
  EXPECT(trusted(&c, "172.32.0.1") == 0);
  EXPECT(trusted(&c, "2001:db8:ffff::1") == 1);
  EXPECT(trusted(&c, "2001:db9::1") == 0);
  EXPECT(trusted(&c, "::1") == 1);
  EXPECT(trusted(&c, "::2") == 0);
  EXPECT(trusted(&c, "::ffff:10.1.2.3") == 1); /* IPv4-mapped matches as IPv4 */
  EXPECT(trusted(&c, "::ffff:11.1.2.3") == 0);
  fcfs_conf_free(&c);

  EXPECT(load(&c, "", err, sizeof(err)) == 0); /* default: nobody is trusted */
  EXPECT(c.real_ip_ncidrs == 0 && c.real_ip_from[0] == NULL);
  EXPECT(trusted(&c, "127.0.0.1") == 0);
  EXPECT_STR(c.real_ip_header, "X-Forwarded-For");
  fcfs_conf_free(&c);

  EXPECT(load(&c, "real_ip_from = { '0.0.0.0/0' }", err, sizeof(err)) == 0);
  EXPECT(trusted(&c, "203.0.113.9") == 1);
  EXPECT(trusted(&c, "::1") == 0);
  fcfs_conf_free(&c);
}

static void test_real_ip_from_env(void) {
  fcfs_conf_t c;
  char err[512];
  setenv("FCFS_REAL_IP_FROM", " 127.0.0.1/32 ,, ::1 ", 1);
  EXPECT(load(&c, "real_ip_from = { '10.0.0.0/8' }", err, sizeof(err)) == 0); /* env wins */
  EXPECT(c.real_ip_ncidrs == 2);
  EXPECT_STR(c.real_ip_from[0], "127.0.0.1/32");
  EXPECT_STR(c.real_ip_from[1], "::1");
  EXPECT(trusted(&c, "127.0.0.1") == 1 && trusted(&c, "::1") == 1 && trusted(&c, "10.0.0.1") == 0);
  fcfs_conf_free(&c);
  unsetenv("FCFS_REAL_IP_FROM");
}

static void test_refusals(void) {
  static const char *const bad[] = {
      "real_ip_from = { '10.0.0.0/33' }",
      "real_ip_from = { '10.0.0/8' }",
      "real_ip_from = { 'example.com' }",
      "real_ip_from = { '::1/129' }",
      "real_ip_from = { '10.0.0.0/' }",
      "real_ip_from = { '10.0.0.0/-1' }",
      "real_ip_from = { 1 }",
      "real_ip_from = { 'a,b' }",
      "real_ip_from = { x = '1.2.3.4' }",
      "real_ip_from = true",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fcfs_conf_t c;
    char err[512] = "";
    int rc = load(&c, bad[i], err, sizeof(err));
    EXPECT(rc != 0);
    if (rc == 0) {
      printf("#   accepted: %s\n", bad[i]);
      fcfs_conf_free(&c);
    } else if (strstr(err, "real_ip_from") == NULL) {
      printf("#   %s: message does not name the key: %s\n", bad[i], err);
      case_failed = 1;
    }
  }
}

/* Each of the n values, put in the config line fmt (one %s), is refused
 * with a message naming key. */
static void expect_refused(const char *fmt, const char *key, const char *const *bad, size_t n) {
  char body[256], err[512];
  fcfs_conf_t c;
  for (size_t i = 0; i < n; i++) {
    snprintf(body, sizeof(body), fmt, bad[i]);
    int rc = load(&c, body, err, sizeof(err));
    EXPECT(rc != 0 && strstr(err, key) != NULL);
    if (rc == 0) {
      printf("#   accepted %s\n", bad[i]);
      fcfs_conf_free(&c);
    }
  }
}

static void test_admin_listen(void) {
  static const char *const good[] = {"unix:var/run/admin.sock",
                                     "unix:/tmp/a.sock",
                                     "127.0.0.1:9145",
                                     "127.9.9.9:1",
                                     "[::1]:9145",
                                     ""};
  static const char *const bad[] = {"0.0.0.0:9145", "10.0.0.1:9145",  "[::]:9145",
                                    "*:9145",       "localhost:9145", "127.0.0.1",
                                    "127.0.0.1:0",  "unix:",          "::1:9145"};
  char body[256], err[512];
  fcfs_conf_t c;
  EXPECT(load(&c, "", err, sizeof(err)) == 0);
  EXPECT_STR(c.admin_listen, "unix:var/run/admin.sock");
  fcfs_conf_free(&c);
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    snprintf(body, sizeof(body), "admin_listen = '%s'", good[i]);
    int rc = load(&c, body, err, sizeof(err));
    EXPECT(rc == 0);
    if (rc == 0)
      fcfs_conf_free(&c);
    else
      printf("#   refused %s: %s\n", good[i], err);
  }
  expect_refused("admin_listen = '%s'", "admin_listen", bad, sizeof(bad) / sizeof(bad[0]));
}

static void test_redis_sentinels(void) {
  static const char *const bad[] = {
      "sentinel.example:26379", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
      "127.0.0.1:1x",           "::1:26379", ":26379"};
  char err[512] = "";
  fcfs_conf_t c;
  EXPECT(load(&c, "", err, sizeof(err)) == 0);
  EXPECT(c.redis_sentinels[0] == NULL);
  EXPECT_STR(c.redis_master_name, "mymaster");
  fcfs_conf_free(&c);
  EXPECT(load(&c, "redis_sentinels = { '10.0.0.5:26379', '[::1]:26380' }, redis_master_name = 'm'",
              err, sizeof(err)) == 0);
  EXPECT_STR(c.redis_sentinels[1], "[::1]:26380");
  EXPECT(c.redis_sentinels[2] == NULL);
  EXPECT_STR(c.redis_master_name, "m");
  struct sockaddr_storage ss;
  EXPECT(fcfs_conf_ip_port(c.redis_sentinels[0], &ss) == 0 && ss.ss_family == AF_INET &&
         ntohs(((struct sockaddr_in *)&ss)->sin_port) == 26379);
  EXPECT(fcfs_conf_ip_port(c.redis_sentinels[1], &ss) == 0 && ss.ss_family == AF_INET6 &&
         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 26380);
  fcfs_conf_free(&c);
  expect_refused("redis_sentinels = { '%s' }", "redis_sentinels", bad,
                 sizeof(bad) / sizeof(bad[0]));
  EXPECT(load(&c, "redis_sentinels = { '127.0.0.1:26379' }, redis_master_name = ''", err,
              sizeof(err)) != 0 &&
         strstr(err, "redis_master_name") != NULL);
}

/* The CPUs this process may run on, in order; their count. */
static int allowed_cpus(int *cpus, int max) {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
    if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
  return n;
}

static void test_worker_cpu_affinity(void) {
  int cpus[CPU_SETSIZE], n = allowed_cpus(cpus, CPU_SETSIZE);
  EXPECT(n > 0);
  if (n == 0) return;
  char body[128], err[512];
  fcfs_conf_t c;
  EXPECT(load(&c, "", err, sizeof(err)) == 0); /* off by default */
  EXPECT(c.worker_cpu_affinity[0] == NULL && fcfs_cpu_of_worker(c.worker_cpu_affinity, 0) == -1);
  fcfs_conf_free(&c);
  EXPECT(load(&c, "worker_cpu_affinity = 'off'", err, sizeof(err)) == 0);
  EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, 1) == -1);
  fcfs_conf_free(&c);
  EXPECT(load(&c, "worker_cpu_affinity = 'auto'", err, sizeof(err)) == 0);
  for (int id = 0; id < 2 * n + 1; id++) /* one per allowed CPU, then around again */
    EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, id) == cpus[id % n]);
  fcfs_conf_free(&c);
  /* CPU numbers, as Lua numbers: worker i on list[i % n] */
  snprintf(body, sizeof(body), "worker_cpu_affinity = { %d, %d }", cpus[n - 1], cpus[0]);
  EXPECT(load(&c, body, err, sizeof(err)) == 0);
  EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, 0) == cpus[n - 1]);
  EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, 1) == cpus[0]);
  EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, 2) == cpus[n - 1]);
  fcfs_conf_free(&c);
  snprintf(body, sizeof(body), "%d", cpus[0]); /* the environment: comma-separated */
  setenv("FCFS_WORKER_CPU_AFFINITY", body, 1);
  EXPECT(load(&c, "worker_cpu_affinity = 'auto'", err, sizeof(err)) == 0); /* env wins */
  EXPECT(fcfs_cpu_of_worker(c.worker_cpu_affinity, n) == cpus[0]);
  fcfs_conf_free(&c);
  unsetenv("FCFS_WORKER_CPU_AFFINITY");

  cpu_set_t set;
  sched_getaffinity(0, sizeof set, &set);
  int outside = 0;
  while (outside < CPU_SETSIZE - 1 && CPU_ISSET(outside, &set))
    outside++;
  char outside_text[16];
  snprintf(outside_text, sizeof(outside_text), "%d", outside);
  const char *bad[] = {"x",           "-1",           "1.5",       "01",       "1024",
                       "99999999999", "auto', 'auto", "auto', '0", "0', 'off", outside_text};
  expect_refused("worker_cpu_affinity = { '%s' }", "worker_cpu_affinity", bad,
                 sizeof(bad) / sizeof(bad[0]));
  EXPECT(load(&c, "worker_cpu_affinity = { 0.5 }", err, sizeof(err)) != 0 &&
         strstr(err, "worker_cpu_affinity") != NULL);
  snprintf(body, sizeof(body), "worker_cpu_affinity = { %d }", outside);
  EXPECT(load(&c, body, err, sizeof(err)) != 0 && strstr(err, "may run on") != NULL);
}

static int pool_ncpus;

static void probe_pool(uv_work_t *w) {
  int cpus[CPU_SETSIZE];
  pool_ncpus = allowed_cpus(cpus, CPU_SETSIZE);
}

static void probe_done(uv_work_t *w, int status) {}

/* In a child (pinning is for good): the loop thread runs on one CPU only,
 * a thread of libuv's pool on all the process had. */
static void test_pin_loop(void) {
  int cpus[CPU_SETSIZE], n = allowed_cpus(cpus, CPU_SETSIZE);
  int last = cpus[n - 1];
  pid_t pid = fork();
  if (pid == 0) {
    uv_loop_t loop;
    uv_work_t start, probe;
    uv_loop_init(&loop);
    if (fcfs_cpu_pin_loop(&loop, &start, last) != 0) _exit(10);
    uv_queue_work(&loop, &probe, probe_pool, probe_done);
    uv_run(&loop, UV_RUN_DEFAULT);
    int mine[CPU_SETSIZE];
    if (allowed_cpus(mine, CPU_SETSIZE) != 1 || mine[0] != last) _exit(11);
    _exit(pool_ncpus == n ? 0 : 12);
  }
  int status = 0;
  EXPECT(pid > 0 && waitpid(pid, &status, 0) == pid);
  EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("#   child status %d\n", status);
}

int main(void) {
  snprintf(conf_path, sizeof(conf_path), "/tmp/fcfs-test-conf-%d.lua", (int)getpid());
  unsetenv("FCFS_REAL_IP_FROM");
  unsetenv("FCFS_ADMIN_LISTEN");
  unsetenv("FCFS_REDIS_SENTINELS");
  unsetenv("FCFS_REDIS_MASTER_NAME");
  unsetenv("FCFS_WORKER_CPU_AFFINITY");
  run("real_ip_from from a Lua array: CIDRs, single addresses, IPv6, mapped IPv4",
      test_real_ip_from_table);
  run("real_ip_from from the environment: comma-separated, blanks skipped", test_real_ip_from_env);
  run("bad real_ip_from entries are refused, naming the key", test_refusals);
  run("admin_listen: unix sockets and loopback ports only", test_admin_listen);
  run("redis_sentinels: IP:port entries ([IPv6]:port), a master name", test_redis_sentinels);
  run("worker_cpu_affinity: off, auto over the allowed CPUs, CPU lists; bad ones refused",
      test_worker_cpu_affinity);
  run("a pinned loop runs on its CPU only", test_pin_loop);
  unlink(conf_path);
  return tap_done();
}
