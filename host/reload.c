/* reload.c -- generation snapshots of lua_dir and the reload outcome file
 * (see reload.h). Plain blocking file I/O: it runs in the master (which
 * serves no requests) and in single-process mode's rare reloads.
 *
 * Ownership: nothing is kept between calls; paths live on the stack.
 */
#include "reload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_LEN 4096
#define MAX_DEPTH 32 /* lua_dir's nesting: past it, a symlink loop or run_dir inside lua_dir */

void fcfs_reload_dir(const fcfs_conf_t *c, uint64_t gen, char *buf, size_t len) {
  snprintf(buf, len, "%s/lua.%llu", c->run_dir, (unsigned long long)gen);
}

static void remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) {
    unlink(path);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char sub[PATH_LEN];
    snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
    struct stat st;
    if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(sub);
    else
      unlink(sub);
  }
  closedir(d);
  rmdir(path);
}

static int copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return -1;
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    close(in);
    return -1;
  }
  char buf[65536];
  ssize_t n;
  int rc = 0;
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (write(out, buf, (size_t)n) != n) {
      rc = -1;
      break;
    }
  if (n < 0) rc = -1;
  close(in);
  if (close(out) != 0) rc = -1;
  return rc;
}

/* Copy the tree at from into to (created), following symlinks, at most
 * MAX_DEPTH levels deep (a loop would recurse until the stack ends). */
static int copy_tree(const char *from, const char *to, int depth, char *err, size_t errlen) {
  if (depth > MAX_DEPTH) {
    snprintf(err, errlen,
             "%s: more than %d directories deep (a symlink loop, or run_dir inside lua_dir?)", from,
             MAX_DEPTH);
    return -1;
  }
  if (mkdir(to, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "mkdir %s: %s", to, strerror(errno));
    return -1;
  }
  DIR *d = opendir(from);
  if (d == NULL) {
    snprintf(err, errlen, "%s: %s", from, strerror(errno));
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue; /* ., .., editor and VCS files */
    char src[PATH_LEN], dst[PATH_LEN];
    snprintf(src, sizeof(src), "%s/%s", from, e->d_name);
    snprintf(dst, sizeof(dst), "%s/%s", to, e->d_name);
    struct stat st;
    if (stat(src, &st) != 0) continue; /* a dangling symlink */
    if (S_ISDIR(st.st_mode)) {
      rc = copy_tree(src, dst, depth + 1, err, errlen);
    } else if (S_ISREG(st.st_mode) && copy_file(src, dst) != 0) {
      snprintf(err, errlen, "copying %s: %s", src, strerror(errno));
      rc = -1;
    }
  }
  closedir(d);
  return rc;
}

int fcfs_reload_snapshot(const fcfs_conf_t *c, uint64_t gen, char *err, size_t errlen) {
  char dir[PATH_LEN];
  fcfs_reload_dir(c, gen, dir, sizeof(dir));
  mkdir(c->run_dir, 0755);
  remove_tree(dir); /* left over by a node that was killed */
  if (copy_tree(c->lua_dir, dir, 0, err, errlen) != 0) {
    remove_tree(dir);
    return -1;
  }
  return 0;
}

void fcfs_reload_forget(const fcfs_conf_t *c, uint64_t gen) {
  char dir[PATH_LEN];
  fcfs_reload_dir(c, gen, dir, sizeof(dir));
  remove_tree(dir);
}

void fcfs_reload_forget_all(const fcfs_conf_t *c) {
  DIR *d = opendir(c->run_dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *p = e->d_name;
    if (strncmp(p, "lua.", 4) != 0 || p[4] == '\0' || strspn(p + 4, "0123456789") != strlen(p + 4))
      continue;
    char dir[PATH_LEN];
    snprintf(dir, sizeof(dir), "%s/%s", c->run_dir, p);
    remove_tree(dir);
  }
  closedir(d);
}

static void status_path(const fcfs_conf_t *c, char *buf, size_t len) {
  snprintf(buf, len, "%s/reload.status", c->run_dir);
}

void fcfs_reload_status_write(const fcfs_conf_t *c, uint64_t gen, int state, const char *err) {
  static const char *const names[] = {"pending", "ok", "failed"};
  char path[PATH_LEN], tmp[PATH_LEN + 8];
  status_path(c, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
  mkdir(c->run_dir, 0755);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return;
  fprintf(f, "%llu %s\n%s", (unsigned long long)gen, names[state], err ? err : "");
  if (fclose(f) != 0 || rename(tmp, path) != 0) unlink(tmp);
}

int fcfs_reload_status_read(const fcfs_conf_t *c, uint64_t *gen, int *state, char *err,
                            size_t errlen) {
  char path[PATH_LEN], word[16];
  unsigned long long g = 0;
  *gen = 0;
  status_path(c, path, sizeof(path));
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int rc = fscanf(f, "%llu %15s", &g, word) == 2 ? 0 : -1;
  size_t n = 0;
  if (rc == 0 && fgetc(f) == '\n') n = fread(err, 1, errlen - 1, f);
  err[n] = '\0';
  fclose(f);
  if (rc != 0) return -1;
  *gen = g;
  *state = strcmp(word, "ok") == 0       ? FCFS_RELOAD_OK
           : strcmp(word, "failed") == 0 ? FCFS_RELOAD_FAILED
                                         : FCFS_RELOAD_PENDING;
  return 0;
}
