/* log.h -- the error log (nginx-shaped lines with levels) and the access
 * log (one JSON object per request, buffered). Process-wide: each process
 * opens its own descriptors on the same files (O_APPEND). */
#ifndef FCFS_LOG_H
#define FCFS_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum { FCFS_LOG_DEBUG, FCFS_LOG_INFO, FCFS_LOG_NOTICE, FCFS_LOG_WARN, FCFS_LOG_ERROR };

/* Returns -1 on an unknown level name. */
int fcfs_log_level_parse(const char *name);
const char *fcfs_log_level_name(int level);

/* Paths may be "stderr"; access_log may be "off". worker_id < 0 for the master. */
int fcfs_log_open(const char *error_log, const char *access_log, const char *level, int worker_id);
int fcfs_log_reopen(void); /* USR1: logrotate moved the files */
void fcfs_log_close(void);
int fcfs_log_enabled(int level);

void fcfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fcfs_log_req(int level, const char *request_id, const char *client, const char *request_line,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void fcfs_logv(int level, const char *request_id, const char *client, const char *request_line,
               const char *fmt, va_list ap);

/* Access log: line is one complete JSON object without the newline. Buffered
 * and written at 64 KiB or by fcfs_log_flush() (called by a worker timer). */
int fcfs_access_log_on(void);
void fcfs_access_log(const char *line, size_t len);
void fcfs_log_flush(void);

#endif
