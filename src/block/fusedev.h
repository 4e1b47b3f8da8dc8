/*
 * fusedev.h - a block device exported as a single file through FUSE, and loop devices over
 * files: the mount path for hosts without the nbd kernel module (see fusedev.c).
 */
#ifndef ORCH_FUSEDEV_H
#define ORCH_FUSEDEV_H

#include <stddef.h>
#include <stdint.h>

#include "../nbd/nbd.h"

struct fusedev;
/* Mount a FUSE file system at mountpoint (an existing empty directory) holding one file
 * `file` of size bytes whose I/O goes to ops/opaque (thread-safe ops: FUSE calls them from
 * several threads). Served by a background thread until fusedev_stop. */
struct fusedev *fusedev_start(const char *mountpoint, const char *file, uint64_t size,
			      const struct nbd_dev_ops *ops, void *opaque);
/* Unmount, stop the thread, free. Anything using the file (a loop device) must be gone. */
void fusedev_stop(struct fusedev *f);

/* Attach file to a free loop device (LOOP_CONFIGURE, autoclear). dev gets "/dev/loopN";
 * *loop_fd is the open device, released with loop_detach. */
int loop_attach(const char *file, uint32_t block_size, char *dev, size_t devlen, int *loop_fd);
void loop_detach(int loop_fd);

#endif
