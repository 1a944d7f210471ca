/* watch.c -- dev-mode file watching for hot reload on save.
 *
 * Linux inotify (behind uv_fs_event_t) is not recursive, so one handle per
 * directory under the root is started (up to MAX_DIRS). Editors save in
 * bursts (write, rename, chmod), so events restart a 150 ms debounce timer
 * and the callback runs once the burst is over. Directories created later
 * are not picked up until the next start; files in known ones are.
 *
 * Ownership: the watch owns its handles; fcfs_watch_stop closes them and the
 * last close callback frees the struct.
 */
#include "watch.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_DIRS 64
#define DEBOUNCE_MS 150

struct fcfs_watch_s {
  uv_fs_event_t ev[MAX_DIRS];
  int nev;
  uv_timer_t debounce;
  int open; /* handles not yet closed */
  void (*cb)(void *arg);
  void *arg;
};

static void fired(uv_timer_t *t) {
  fcfs_watch_t *w = t->data;
  w->cb(w->arg);
}

static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  fcfs_watch_t *w = h->data;
  if (status != 0) return;
  if (name && (name[0] == '.' || strchr(name, '~') || strstr(name, ".sw")))
    return; /* editor temp files */
  uv_timer_start(&w->debounce, fired, DEBOUNCE_MS, 0);
}

static void add_dir(fcfs_watch_t *w, uv_loop_t *loop, const char *dir, int depth) {
  if (w->nev >= MAX_DIRS || depth > 8) return;
  uv_fs_event_t *ev = &w->ev[w->nev];
  uv_fs_event_init(loop, ev);
  ev->data = w;
  if (uv_fs_event_start(ev, on_event, dir, 0) != 0) {
    uv_close((uv_handle_t *)ev, NULL);
    fcfs_log(FCFS_LOG_WARN, "dev: cannot watch %s", dir);
    return;
  }
  w->nev++;
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || e->d_type != DT_DIR) continue;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    add_dir(w, loop, path, depth + 1);
  }
  closedir(d);
}

fcfs_watch_t *fcfs_watch_start(uv_loop_t *loop, const char *dir, void (*cb)(void *arg), void *arg) {
  fcfs_watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  w->cb = cb;
  w->arg = arg;
  add_dir(w, loop, dir, 0);
  uv_timer_init(loop, &w->debounce);
  w->debounce.data = w;
  fcfs_log(FCFS_LOG_NOTICE, "dev: watching %d director%s under %s", w->nev,
           w->nev == 1 ? "y" : "ies", dir);
  return w;
}

static void closed(uv_handle_t *h) {
  fcfs_watch_t *w = h->data;
  if (--w->open == 0) free(w);
}

void fcfs_watch_stop(fcfs_watch_t *w) {
  if (w == NULL) return;
  w->open = w->nev + 1;
  for (int i = 0; i < w->nev; i++)
    uv_close((uv_handle_t *)&w->ev[i], closed);
  uv_close((uv_handle_t *)&w->debounce, closed);
}
