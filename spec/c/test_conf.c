/* test_conf.c -- unit tests of the list-valued and address keys of
 * host/conf.c: real_ip_from from a Lua array and from the environment, its
 * CIDR matching (fcfs_conf_trusted, IPv4, IPv6, IPv4-mapped), refusals
 * naming the key, admin_listen (unix socket or loopback only), and
 * redis_sentinels (IP:port entries, fcfs_conf_ip_port). Prints
 * TAP; exits non-zero on failure.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

int main(void) {
  snprintf(conf_path, sizeof(conf_path), "/tmp/fcfs-test-conf-%d.lua", (int)getpid());
  unsetenv("FCFS_REAL_IP_FROM");
  unsetenv("FCFS_ADMIN_LISTEN");
  unsetenv("FCFS_REDIS_SENTINELS");
  unsetenv("FCFS_REDIS_MASTER_NAME");
  run("real_ip_from from a Lua array: CIDRs, single addresses, IPv6, mapped IPv4",
      test_real_ip_from_table);
  run("real_ip_from from the environment: comma-separated, blanks skipped", test_real_ip_from_env);
  run("bad real_ip_from entries are refused, naming the key", test_refusals);
  run("admin_listen: unix sockets and loopback ports only", test_admin_listen);
  run("redis_sentinels: IP:port entries ([IPv6]:port), a master name", test_redis_sentinels);
  unlink(conf_path);
  return tap_done();
}
