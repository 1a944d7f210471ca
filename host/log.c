/* log.c -- error and access logs.
 *
 * Error log lines look like nginx's, so ops tooling that greps them keeps
 * working:
 *   2026/11/25 21:07:42 [error] 4242#1 *7f3a9c01 message, client: 127.0.0.1, request: "GET /
 * HTTP/1.1" The error log is written unbuffered with one write(2) per line (O_APPEND keeps lines of
 * several processes whole). The access log is buffered in this process and flushed at 64 KiB, by
 * the worker's periodic timer, and at exit. USR1 reopens both (after logrotate renamed them).
 *
 * State is process-wide on purpose: a process has one error log. Nothing
 * here allocates after fcfs_log_open() except the copies of the paths.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *level_names[] = {"debug", "info", "notice", "warn", "error"};

static struct {
  int error_fd, access_fd;
  char *error_path, *access_path;
  int level, worker_id;
  char abuf[65536];
  size_t alen;
} lg = {2, -1, NULL, NULL, FCFS_LOG_INFO, -1, {0}, 0};

int fcfs_log_level_parse(const char *name) {
  for (int i = 0; i < 5; i++)
    if (strcmp(level_names[i], name) == 0) return i;
  return -1;
}

const char *fcfs_log_level_name(int level) {
  return level >= 0 && level < 5 ? level_names[level] : "?";
}

static int open_one(const char *path) {
  if (path == NULL || strcmp(path, "off") == 0) return -1;
  if (strcmp(path, "stderr") == 0) return 2;
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int fcfs_log_open(const char *error_log, const char *access_log, const char *level, int worker_id) {
  int l = fcfs_log_level_parse(level);
  lg.level = l < 0 ? FCFS_LOG_INFO : l;
  lg.worker_id = worker_id;
  free(lg.error_path);
  free(lg.access_path);
  lg.error_path = strdup(error_log);
  lg.access_path = strdup(access_log);
  int efd = open_one(error_log);
  if (efd < 0) {
    fprintf(stderr, "fcfs: cannot open error log %s: %s\n", error_log, strerror(errno));
    return -1;
  }
  int afd = open_one(access_log);
  if (afd < 0 && strcmp(access_log, "off") != 0) {
    fprintf(stderr, "fcfs: cannot open access log %s: %s\n", access_log, strerror(errno));
    if (efd > 2) close(efd);
    return -1;
  }
  lg.error_fd = efd;
  lg.access_fd = afd;
  return 0;
}

int fcfs_log_reopen(void) {
  fcfs_log_flush();
  int efd = open_one(lg.error_path), afd = open_one(lg.access_path);
  if (efd >= 0) {
    if (lg.error_fd > 2) close(lg.error_fd);
    lg.error_fd = efd;
  }
  if (afd >= 0) {
    if (lg.access_fd > 2) close(lg.access_fd);
    lg.access_fd = afd;
  }
  return efd >= 0 ? 0 : -1;
}

void fcfs_log_close(void) {
  fcfs_log_flush();
  if (lg.error_fd > 2) close(lg.error_fd);
  if (lg.access_fd > 2) close(lg.access_fd);
  lg.error_fd = 2;
  lg.access_fd = -1;
  free(lg.error_path);
  free(lg.access_path);
  lg.error_path = lg.access_path = NULL;
}

int fcfs_log_enabled(int level) {
  return level >= lg.level;
}

void fcfs_logv(int level, const char *request_id, const char *client, const char *request_line,
               const char *fmt, va_list ap) {
  if (level < lg.level) return;
  char line[8192];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  localtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
  if (lg.worker_id >= 0)
    n += snprintf(line + n, sizeof(line) - n, " [%s] %d#%d ", level_names[level], (int)getpid(),
                  lg.worker_id);
  else
    n +=
        snprintf(line + n, sizeof(line) - n, " [%s] %d#master ", level_names[level], (int)getpid());
  if (request_id) n += snprintf(line + n, sizeof(line) - n, "*%s ", request_id);
  int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  if (m > 0) n += (size_t)m;
  if (n > sizeof(line) - 256) n = sizeof(line) - 256; /* truncated; keep room for the tail */
  if (client) n += snprintf(line + n, sizeof(line) - n, ", client: %s", client);
  if (request_line)
    n += snprintf(line + n, sizeof(line) - n, ", request: \"%.200s\"", request_line);
  if (n >= sizeof(line)) n = sizeof(line) - 1;
  line[n++] = '\n';
  ssize_t w = write(lg.error_fd, line, n);
  (void)w;
}

void fcfs_log(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fcfs_logv(level, NULL, NULL, NULL, fmt, ap);
  va_end(ap);
}

void fcfs_log_req(int level, const char *request_id, const char *client, const char *request_line,
                  const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fcfs_logv(level, request_id, client, request_line, fmt, ap);
  va_end(ap);
}

int fcfs_access_log_on(void) {
  return lg.access_fd >= 0;
}

void fcfs_access_log(const char *line, size_t len) {
  if (lg.access_fd < 0) return;
  if (lg.alen + len + 1 > sizeof(lg.abuf)) fcfs_log_flush();
  if (len + 1 > sizeof(lg.abuf)) return; /* a single line cannot be larger than the buffer */
  memcpy(lg.abuf + lg.alen, line, len);
  lg.alen += len;
  lg.abuf[lg.alen++] = '\n';
}

void fcfs_log_flush(void) {
  size_t off = 0;
  while (lg.access_fd >= 0 && off < lg.alen) {
    ssize_t w = write(lg.access_fd, lg.abuf + off, lg.alen - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  lg.alen = 0;
}
