/* control/reap.h: orphans. A child subreaper (the control plane) inherits whatever its
 * instances fork and abandon; this reaps those that died and, at `down`, kills those
 * still alive. supervise.c says which children are its instances (libuv reaps those). */
#ifndef CMESH_CONTROL_REAP_H
#define CMESH_CONTROL_REAP_H

/* 1 when pid is an instance the caller reaps itself. */
typedef int (*cm_reap_ours_fn)(int pid, void *arg);

/* Scans /proc for this process's children that ours() disowns: reaps the zombies, and
 * with kill_live SIGKILLs (and reaps) the living ones too. */
void cm_reap_orphans(cm_reap_ours_fn ours, void *arg, int kill_live);

#endif
