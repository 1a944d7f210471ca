/* migrate.c -- `fcfs migrate` and `fcfs migrate status`.
 *
 * Migrations are files NNNN_name.sql in conf->migrations_dir, applied in
 * version order, each recorded in schema_migrations (version, name, sha256
 * checksum of the file, applied_at). Each file runs inside one transaction,
 * which protects data changes; DDL commits implicitly in MySQL, so a file
 * mixing DDL and a later failing statement can be left half-applied -- keep
 * one DDL change per file. A file may hold several statements
 * (CLIENT_MULTI_STATEMENTS; every result is drained).
 *
 * Before applying anything the runner refuses (exit 1, naming the file)
 * when an applied file changed since (checksum) or disappeared. A
 * GET_LOCK() keeps two runners from interleaving. This is a command-line
 * tool, not the event loop: it uses the blocking client API. Everything it
 * allocates is freed before it returns.
 */
#include "migrate.h"

#include <dirent.h>
#include <mariadb/mysql.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

typedef struct mig_s {
  unsigned long version;
  char *file;   /* NNNN_name.sql */
  char *name;   /* name part */
  char sum[65]; /* of the file now, "" when missing */
  int present;  /* file exists */
  int applied;
  char applied_sum[65];
  char applied_at[32];
} mig_t;

typedef struct {
  mig_t *v;
  size_t n, cap;
} migs_t;

static mig_t *migs_find(migs_t *ms, unsigned long version) {
  for (size_t i = 0; i < ms->n; i++)
    if (ms->v[i].version == version) return &ms->v[i];
  return NULL;
}

static mig_t *migs_add(migs_t *ms, unsigned long version) {
  if (ms->n == ms->cap) {
    size_t cap = ms->cap ? ms->cap * 2 : 16;
    mig_t *v = realloc(ms->v, cap * sizeof(*v));
    if (!v) return NULL;
    ms->v = v;
    ms->cap = cap;
  }
  mig_t *m = &ms->v[ms->n++];
  memset(m, 0, sizeof(*m));
  m->version = version;
  return m;
}

static void migs_free(migs_t *ms) {
  for (size_t i = 0; i < ms->n; i++) {
    free(ms->v[i].file);
    free(ms->v[i].name);
  }
  free(ms->v);
}

static int mig_cmp(const void *a, const void *b) {
  unsigned long x = ((const mig_t *)a)->version, y = ((const mig_t *)b)->version;
  return x < y ? -1 : x > y;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (cap - n < 4096) {
      char *nb = realloc(buf, cap + 65536);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
      cap += 65536;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static void sha256_hex(const char *data, size_t len, char out[65]) {
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)data, len);
  sodium_bin2hex(out, 65, h, sizeof(h));
}

static int is_migration_name(const char *s, unsigned long *version, const char **name) {
  const char *p = s;
  while (*p >= '0' && *p <= '9')
    p++;
  if (p == s || *p != '_') return 0;
  size_t len = strlen(s);
  if (len < 5 || strcmp(s + len - 4, ".sql") != 0 || (size_t)(p + 1 - s) >= len - 4) return 0;
  *version = strtoul(s, NULL, 10);
  *name = p + 1;
  return 1;
}

/* The files of dir, sorted, with their checksums. */
static int scan_dir(const char *dir, migs_t *ms) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "fcfs migrate: cannot open migrations_dir %s\n", dir);
    return -1;
  }
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    unsigned long version;
    const char *name;
    if (!is_migration_name(e->d_name, &version, &name)) continue;
    mig_t *dup = migs_find(ms, version);
    if (dup) {
      fprintf(stderr, "fcfs migrate: %s and %s share version %lu\n", dup->file, e->d_name, version);
      rc = -1;
      break;
    }
    mig_t *m = migs_add(ms, version);
    if (!m) {
      rc = -1;
      break;
    }
    m->file = strdup(e->d_name);
    m->name = strndup(name, strlen(name) - 4);
    m->present = 1;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    size_t len;
    char *text = read_file(path, &len);
    if (!m->file || !m->name || !text) {
      fprintf(stderr, "fcfs migrate: cannot read %s\n", path);
      free(text);
      rc = -1;
      break;
    }
    sha256_hex(text, len, m->sum);
    free(text);
  }
  closedir(d);
  return rc;
}

static int run(MYSQL *my, const char *sql, size_t len) {
  if (mysql_real_query(my, sql, (unsigned long)len) != 0) return -1;
  /* drain every result of a multi-statement text */
  for (;;) {
    MYSQL_RES *res = mysql_store_result(my);
    if (res)
      mysql_free_result(res);
    else if (mysql_field_count(my) != 0)
      return -1;
    int st = mysql_next_result(my);
    if (st > 0) return -1;
    if (st < 0) return 0;
  }
}

static int runs(MYSQL *my, const char *sql) {
  return run(my, sql, strlen(sql));
}

static int only_space(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
  return 1;
}

static MYSQL *connect_db(const fcfs_conf_t *c) {
  MYSQL *my = mysql_init(NULL);
  if (!my) return NULL;
  int sock = c->mysql_socket && c->mysql_socket[0];
  unsigned int proto = sock ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
  unsigned int ct = (unsigned int)(c->mysql_connect_timeout + 0.999);
  if (ct == 0) ct = 1;
  mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_options(my, MYSQL_OPT_PROTOCOL, &proto);
  mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
  const char *db = c->mysql_database && c->mysql_database[0] ? c->mysql_database : NULL;
  if (!mysql_real_connect(my, sock ? "localhost" : c->mysql_host, c->mysql_user, c->mysql_password,
                          db, sock ? 0 : (unsigned int)c->mysql_port, sock ? c->mysql_socket : NULL,
                          CLIENT_MULTI_STATEMENTS)) {
    fprintf(stderr, "fcfs migrate: cannot connect to MySQL: %s\n", mysql_error(my));
    mysql_close(my);
    return NULL;
  }
  return my;
}

static int load_applied(MYSQL *my, migs_t *ms) {
  if (runs(my, "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
               " name VARCHAR(255) NOT NULL,"
               " checksum CHAR(64) NOT NULL,"
               " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
               ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") != 0)
    return -1;
  if (mysql_query(my, "SELECT version, name, checksum, applied_at FROM schema_migrations") != 0)
    return -1;
  MYSQL_RES *res = mysql_store_result(my);
  if (!res) return -1;
  MYSQL_ROW row;
  int rc = 0;
  while ((row = mysql_fetch_row(res)) != NULL) {
    unsigned long version = strtoul(row[0], NULL, 10);
    mig_t *m = migs_find(ms, version);
    if (!m) {
      m = migs_add(ms, version);
      if (!m) {
        rc = -1;
        break;
      }
      size_t n = strlen(row[1]) + 32;
      m->file = malloc(n);
      m->name = strdup(row[1]);
      if (m->file) snprintf(m->file, n, "%04lu_%s.sql", version, row[1]);
    }
    m->applied = 1;
    snprintf(m->applied_sum, sizeof(m->applied_sum), "%s", row[2] ? row[2] : "");
    snprintf(m->applied_at, sizeof(m->applied_at), "%s", row[3] ? row[3] : "");
  }
  mysql_free_result(res);
  return rc;
}

/* 0 when every applied migration is still there, unchanged. */
static int check_applied(const fcfs_conf_t *c, migs_t *ms) {
  int bad = 0;
  for (size_t i = 0; i < ms->n; i++) {
    mig_t *m = &ms->v[i];
    if (!m->applied) continue;
    if (!m->present) {
      fprintf(stderr, "fcfs migrate: %s was applied but is missing from %s\n",
              m->file ? m->file : "?", c->migrations_dir);
      bad = 1;
    } else if (strcmp(m->sum, m->applied_sum) != 0) {
      fprintf(stderr,
              "fcfs migrate: %s/%s changed since it was applied (checksum %s, applied %s)\n",
              c->migrations_dir, m->file, m->sum, m->applied_sum);
      bad = 1;
    }
  }
  return bad ? -1 : 0;
}

static int apply_one(const fcfs_conf_t *c, MYSQL *my, mig_t *m) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", c->migrations_dir, m->file);
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    fprintf(stderr, "fcfs migrate: cannot read %s\n", path);
    return -1;
  }
  char sum[65];
  sha256_hex(text, len, sum);
  size_t nlen = strlen(m->name);
  char *esc = malloc(2 * nlen + 1);
  char *ins = malloc(2 * nlen + 256);
  int rc = -1;
  if (!esc || !ins) goto done;
  mysql_real_escape_string(my, esc, m->name, (unsigned long)nlen);
  snprintf(ins, 2 * nlen + 256,
           "INSERT INTO schema_migrations (version, name, checksum) VALUES (%lu, '%s', '%s')",
           m->version, esc, sum);
  if (runs(my, "START TRANSACTION") != 0) goto fail;
  if (!only_space(text) && run(my, text, len) != 0) goto fail;
  if (runs(my, ins) != 0 || runs(my, "COMMIT") != 0) goto fail;
  printf("applied %s\n", m->file);
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "fcfs migrate: %s failed: %s (%u)\n", path, mysql_error(my), mysql_errno(my));
  runs(my, "ROLLBACK");
done:
  free(esc);
  free(ins);
  free(text);
  return rc;
}

int fcfs_migrate_main(const fcfs_conf_t *c, int argc, char **argv) {
  int status = 0;
  if (argc > 1 || (argc == 1 && strcmp(argv[0], "status") != 0)) {
    fprintf(stderr, "usage: fcfs migrate [status]\n");
    return 2;
  }
  status = argc == 1;
  if (sodium_init() < 0) {
    fprintf(stderr, "fcfs migrate: libsodium failed to start\n");
    return 1;
  }
  migs_t ms = {0};
  MYSQL *my = NULL;
  int code = 1, locked = 0;
  if (scan_dir(c->migrations_dir, &ms) != 0) goto out;
  if (!(my = connect_db(c))) goto out;
  if (mysql_query(my, "SELECT GET_LOCK('fcfs_migrate', 30)") == 0) {
    MYSQL_RES *res = mysql_store_result(my);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    locked = row && row[0] && strcmp(row[0], "1") == 0;
    if (res) mysql_free_result(res);
  }
  if (!locked) {
    fprintf(stderr, "fcfs migrate: another migration is running (GET_LOCK)\n");
    goto out;
  }
  if (load_applied(my, &ms) != 0) {
    fprintf(stderr, "fcfs migrate: schema_migrations: %s\n", mysql_error(my));
    goto out;
  }
  qsort(ms.v, ms.n, sizeof(*ms.v), mig_cmp);
  int consistent = check_applied(c, &ms) == 0;
  if (status) {
    printf("%-8s %-40s %-8s %s\n", "version", "name", "state", "applied_at");
    for (size_t i = 0; i < ms.n; i++) {
      mig_t *m = &ms.v[i];
      const char *state = !m->applied                           ? "pending"
                          : !m->present                         ? "MISSING"
                          : strcmp(m->sum, m->applied_sum) != 0 ? "CHANGED"
                                                                : "applied";
      printf("%-8lu %-40s %-8s %s\n", m->version, m->name ? m->name : "?", state,
             m->applied ? m->applied_at : "-");
    }
    code = consistent ? 0 : 1;
    goto out;
  }
  if (!consistent) goto out;
  int n = 0;
  for (size_t i = 0; i < ms.n; i++) {
    if (ms.v[i].applied) continue;
    if (apply_one(c, my, &ms.v[i]) != 0) goto out;
    n++;
  }
  printf("%d migration(s) applied\n", n);
  code = 0;
out:
  if (my) {
    if (locked) runs(my, "DO RELEASE_LOCK('fcfs_migrate')");
    mysql_close(my);
  }
  migs_free(&ms);
  return code;
}
