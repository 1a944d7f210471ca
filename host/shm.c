/* shm.c -- creating and mapping the node's shared-memory segment (see
 * shm.h for what lives in it). A memfd is used rather than a named POSIX
 * segment so nothing is left behind in /dev/shm when a node is killed. The
 * segment is the fcfs_shm_t struct, then (page-aligned) the shared
 * dictionaries laid out by shared.c, then the stock gates (stock.c); its size is recorded in the
 * struct and learnt from the descriptor by processes that attach. Pages are committed only when
 * first touched, so unused worker slots and dictionary space cost nothing. */
#include "shm.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared.h"
#include "stock.h"

#define SHM_MAGIC 0x66636673686d3033ull /* "fcfsshm03" */
#define PAGE 4096

fcfs_shm_t *fcfs_shm_create(const fcfs_conf_t *conf, int *fd) {
  size_t head = (sizeof(fcfs_shm_t) + PAGE - 1) / PAGE * PAGE;
  size_t dicts = fcfs_shared_region_size(&conf->shared_dicts);
  size_t stock = fcfs_stock_region_size(conf->stock_slots);
  int f = memfd_create("fcfs-shm", 0);
  if (f < 0) return NULL;
  if (ftruncate(f, (off_t)(head + dicts + stock)) != 0) goto fail;
  fcfs_shm_t *shm = fcfs_shm_attach(f);
  if (shm == NULL) goto fail;
  if ((dicts && fcfs_shared_region_init((char *)shm + head, dicts, &conf->shared_dicts) != 0) ||
      fcfs_stock_region_init((char *)shm + head + dicts, stock, conf->stock_slots) != 0) {
    fcfs_shm_detach(shm);
    goto fail;
  }
  shm->dicts_off = dicts ? head : 0;
  shm->stock_off = head + dicts;
  shm->magic = SHM_MAGIC;
  *fd = f;
  return shm;
fail:
  close(f);
  return NULL;
}

fcfs_shm_t *fcfs_shm_attach(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(fcfs_shm_t)) return NULL;
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return NULL;
  fcfs_shm_t *shm = p;
  if (shm->magic != 0 && (shm->magic != SHM_MAGIC || shm->size != (uint64_t)st.st_size)) {
    munmap(p, (size_t)st.st_size);
    return NULL;
  }
  if (shm->magic == 0) shm->size = (uint64_t)st.st_size; /* being created */
  return shm;
}

void fcfs_shm_detach(fcfs_shm_t *shm) {
  if (shm) munmap(shm, shm->size);
}

void *fcfs_shm_dicts(const fcfs_shm_t *shm) {
  return shm->dicts_off ? (char *)shm + shm->dicts_off : NULL;
}

void *fcfs_shm_stock(const fcfs_shm_t *shm) {
  return (char *)shm + shm->stock_off;
}
