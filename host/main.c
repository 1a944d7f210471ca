/* main.c -- the fcfs command line.
 *
 *   fcfs [-c FILE]                 run a node (master + workers, or one
 *                                  process in the foreground with workers = 0)
 *   fcfs [-c FILE] -t              load the config and all Lua, exit 1 with
 *                                  file:line on error
 *   fcfs [-c FILE] -s SIGNAL       reload | quit | stop | reopen the running
 *                                  node (pid file); reload first runs -t and
 *                                  exits 1 with the error instead of signalling,
 *                                  then waits for the node's outcome (exit 1
 *                                  and the error when it refused the code)
 *   fcfs [-c FILE] migrate [status]
 *   fcfs [-c FILE] run SCRIPT.lua [ARGS...]
 *                                  run a script as one task with the pools
 *                                  open (no listener, no app.lua); its return
 *                                  value is the exit code
 *   fcfs -c FILE --worker N --worker-count M   (internal: started by the master)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "crypto.h"
#include "master.h"
#include "migrate.h"
#include "reload.h"
#include "server.h"
#include "worker.h"

static void usage(FILE *f) {
  fprintf(f, "usage: fcfs [-c FILE] [-t] [-s reload|quit|stop|reopen] [migrate [status]]\n"
             "       fcfs [-c FILE] run SCRIPT.lua [ARGS...]\n"
             "  -c FILE   config (a Lua file returning a table); keys may be overridden by\n"
             "            FCFS_<KEY> environment variables\n"
             "  -t        test the config and the Lua app, then exit\n"
             "  -s SIG    send a signal to the running node\n"
             "  migrate   apply pending migrations; `migrate status` lists them\n"
             "  run       run a Lua script with Redis and MySQL (lua_dir on package.path);\n"
             "            ARGS are its `...`, its return value the exit code\n");
}

static pid_t read_pid(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  long pid = 0;
  if (fscanf(f, "%ld", &pid) != 1) pid = 0;
  fclose(f);
  return (pid_t)pid;
}

/* pid runs: exists and is not a zombie (a killed master stays one until its parent reaps it, which
 * a container's init may never do). */
static int pid_alive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return 0;
  char path[64], buf[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')');
  return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* mkdir -p for the directory part of path. */
static void make_parent(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0755);
      *p = '/';
    }
}

static int write_pid(const char *path) {
  pid_t old = read_pid(path);
  if (old > 0 && old != getpid() && pid_alive(old)) {
    fprintf(stderr, "fcfs: already running as pid %d (%s)\n", (int)old, path);
    return -1;
  }
  make_parent(path);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "fcfs: cannot write pid file %s: %s\n", path, strerror(errno));
    return -1;
  }
  fprintf(f, "%d\n", (int)getpid());
  fclose(f);
  return 0;
}

/* Wait for the node to decide a reload newer than `before` (the workers
 * load the code and run init_worker, which -t cannot), bounded. */
static int reload_outcome(const fcfs_conf_t *c, pid_t pid, uint64_t before) {
  char err[4096];
  int ticks = (int)(c->reload_timeout * 20) + 100; /* 50 ms each: reload_timeout + 5 s */
  for (int i = 0; i < ticks && pid_alive(pid); i++) {
    uint64_t gen;
    int state;
    if (fcfs_reload_status_read(c, &gen, &state, err, sizeof(err)) == 0 && gen > before &&
        state != FCFS_RELOAD_PENDING) {
      if (state == FCFS_RELOAD_OK) {
        printf("fcfs: reloaded: generation %llu\n", (unsigned long long)gen);
        return 0;
      }
      fprintf(stderr, "fcfs: reload failed, the running code keeps serving: %s\n", err);
      return 1;
    }
    usleep(50000);
  }
  fprintf(stderr, "fcfs: reload: no outcome from pid %d within %g s\n", (int)pid,
          c->reload_timeout + 5);
  return 1;
}

static int send_signal(const fcfs_conf_t *c, const char *name) {
  static const struct {
    const char *name;
    int sig;
  } sigs[] = {{"reload", SIGHUP}, {"quit", SIGQUIT}, {"stop", SIGTERM}, {"reopen", SIGUSR1}};
  int sig = 0;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    if (strcmp(name, sigs[i].name) == 0) sig = sigs[i].sig;
  if (sig == 0) {
    fprintf(stderr, "fcfs: unknown signal \"%s\" (reload, quit, stop, reopen)\n", name);
    return 1;
  }
  pid_t pid = read_pid(c->pid_file);
  if (!pid_alive(pid)) {
    fprintf(stderr, "fcfs: not running (no live pid in %s)\n", c->pid_file);
    return 1;
  }
  uint64_t before = 0;
  if (sig == SIGHUP) {
    char err[4096];
    if (fcfs_worker_check(c, err, sizeof(err)) != 0) {
      fprintf(stderr, "fcfs: reload refused, the running code keeps serving: %s\n", err);
      return 1;
    }
    int state;
    fcfs_reload_status_read(c, &before, &state, err, sizeof(err));
  }
  if (kill(pid, sig) != 0) {
    fprintf(stderr, "fcfs: kill %d: %s\n", (int)pid, strerror(errno));
    return 1;
  }
  if (sig == SIGHUP) return reload_outcome(c, pid, before);
  if (sig == SIGQUIT || sig == SIGTERM) /* wait for it to go, bounded */
    for (int i = 0; i < (int)(c->drain_timeout * 10) + 100 && pid_alive(pid); i++)
      usleep(100000);
  return 0;
}

/* Refuse to start (before binding anything) when the secrets are
 * malformed or are the shipped demo keys with dev = false; each worker
 * loads them again for itself. */
static int check_secrets(const fcfs_conf_t *c) {
  char err[1024];
  fcfs_crypto_t *keys = fcfs_crypto_new(c, err, sizeof(err));
  if (keys == NULL) {
    fprintf(stderr, "fcfs: %s\n", err);
    return -1;
  }
  fcfs_crypto_free(keys);
  return 0;
}

/* The admin listener into *fd (none when admin_listen is ""), created only
 * once the pid file says no node runs here: a unix socket file left behind
 * is replaced. 0, or -1 with the message printed. */
static int listen_admin(const fcfs_conf_t *c, int *fd) {
  char err[512];
  if (c->admin_listen[0] == '\0') return 0;
  if (strncmp(c->admin_listen, "unix:", 5) == 0) make_parent(c->admin_listen + 5);
  *fd = fcfs_listen_socket(c->admin_listen, c->backlog, err, sizeof(err));
  if (*fd >= 0) return 0;
  fprintf(stderr, "fcfs: admin_listen: %s\n", err);
  return -1;
}

/* The public listener. A pid file naming a dead pid means the last master was killed (SIGKILL,
 * OOM): its workers still hold the port until they notice, within 100 ms, stop accepting and drain.
 * A master restarted at once by a supervisor (etc/fcfs.service) then waits for the port, at most
 * drain_timeout, instead of failing; otherwise a taken port fails the start at once. */
static int listen_public(const fcfs_conf_t *c, char *err, size_t errlen) {
  pid_t old = read_pid(c->pid_file);
  int stale = old > 0 && !pid_alive(old);
  for (int waited_ms = 0;; waited_ms += 50) {
    int fd = fcfs_listen_socket(c->listen, c->backlog, err, errlen);
    if (fd >= 0 || !stale || errno != EADDRINUSE || waited_ms >= c->drain_timeout * 1000) return fd;
    if (waited_ms == 0)
      fprintf(stderr, "fcfs: the killed master %d's workers still hold %s, waiting\n", (int)old,
              c->listen);
    usleep(50000);
  }
}

/* 10,000 keep-alive connections need more than the usual 1024 descriptors. */
static void raise_fd_limit(const fcfs_conf_t *c) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t want = (rlim_t)c->max_connections + 256;
  if (rl.rlim_cur >= want) return;
  rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv) {
  const char *conf_path = NULL, *sig = NULL;
  int test = 0, worker = -1, worker_count = 1, argi = 1;
  for (; argi < argc; argi++) {
    const char *a = argv[argi];
    if (strcmp(a, "-c") == 0 && argi + 1 < argc)
      conf_path = argv[++argi];
    else if (strcmp(a, "-t") == 0)
      test = 1;
    else if (strcmp(a, "-s") == 0 && argi + 1 < argc)
      sig = argv[++argi];
    else if (strcmp(a, "--worker") == 0 && argi + 1 < argc)
      worker = atoi(argv[++argi]);
    else if (strcmp(a, "--worker-count") == 0 && argi + 1 < argc)
      worker_count = atoi(argv[++argi]);
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (a[0] != '-')
      break;
    else {
      fprintf(stderr, "fcfs: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  fcfs_conf_t conf;
  char err[4096];
  if (fcfs_conf_load(&conf, conf_path, err, sizeof(err)) != 0) {
    fprintf(stderr, "fcfs: config: %s\n", err);
    return 1;
  }
  int code = 0;
  if (argi < argc && strcmp(argv[argi], "migrate") == 0) {
    code = fcfs_migrate_main(&conf, argc - argi - 1, argv + argi + 1);
  } else if (argi < argc && strcmp(argv[argi], "run") == 0) {
    if (argi + 1 < argc) {
      code = fcfs_worker_run(&conf, argv[argi + 1], argc - argi - 2, argv + argi + 2);
    } else {
      usage(stderr);
      code = 2;
    }
  } else if (argi < argc) {
    fprintf(stderr, "fcfs: unknown command %s\n", argv[argi]);
    usage(stderr);
    code = 2;
  } else if (test) {
    if (fcfs_worker_check(&conf, err, sizeof(err)) != 0) {
      fprintf(stderr, "fcfs: test failed: %s\n", err);
      code = 1;
    } else {
      printf("fcfs: configuration %s and %s/app.lua are ok\n",
             conf.conf_file[0] ? conf.conf_file : "(defaults)", conf.lua_dir);
    }
  } else if (sig) {
    code = send_signal(&conf, sig);
  } else if (worker < 0 && check_secrets(&conf) != 0) {
    code = 1;
  } else if (worker >= 0) {
    raise_fd_limit(&conf);
    code = fcfs_worker_main(&conf, worker, worker_count, 3, conf.admin_listen[0] ? 5 : -1, 4);
  } else {
    raise_fd_limit(&conf);
    make_parent(conf.error_log);
    make_parent(conf.access_log);
    int fd = listen_public(&conf, err, sizeof(err)), admin = -1;
    const char *admin_unix =
        strncmp(conf.admin_listen, "unix:", 5) == 0 ? conf.admin_listen + 5 : 0;
    if (fd < 0) {
      fprintf(stderr, "fcfs: %s\n", err);
      code = 1;
    } else if (write_pid(conf.pid_file) != 0) {
      close(fd);
      code = 1;
    } else if (listen_admin(&conf, &admin) != 0) {
      close(fd);
      unlink(conf.pid_file);
      code = 1;
    } else {
      code = conf.workers == 0 ? fcfs_worker_main(&conf, 0, 1, fd, admin, -1)
                               : fcfs_master_main(&conf, fd, admin);
      if (read_pid(conf.pid_file) == getpid()) unlink(conf.pid_file);
      if (admin_unix) unlink(admin_unix);
    }
  }
  fcfs_conf_free(&conf);
  return code;
}
