// Dirty page decay of jemalloc's arenas. The automatic arenas, which serve
// memory outside any scope, follow the `dirty_decay` setting, and so does
// the sampler's arena: its blocks are ordinary allocations that happened to
// be sampled, most of them outside any scope. The other arenas memward
// creates (tenants' shared and dedicated arenas, request arenas and
// memward's own) follow the shorter of `dirty_decay` and
// `scope_dirty_decay`.
//
// Why those arenas purge sooner: jemalloc 5.3 serves a new block from the
// dirty pages of freed ones before it maps fresh pages, and a dirty page is
// resident whether or not the new block writes it. A gateway's large
// buffers are sized for the largest request and mostly filled in part, so
// each reuse keeps the whole block resident. Purging freed pages at once
// leaves only the written pages resident. In the reference gateway's
// footprint run (bench/gateway/footprint.py, memward with hooks, 2 shared
// vCPUs) a decay of 0 for these arenas lowered the mean RSS from 35.7 to
// 32.3-32.8 MiB over four runs, where dirty_decay=1s for every arena had
// given 35.1 MiB. The automatic arenas keep the longer decay, because
// programs without scopes, such as a loop of 5-25 MiB blocks, would fault
// purged pages in again at every reuse.
//
// NOTE: the price is CPU time in scopes, for blocks too large for the slot
// caches and jemalloc's thread caches (above 32 KiB): each free is purged
// (madvise) and the next block faults its pages in again. A 64 KiB
// malloc/free pair in a tenant scope that writes one page took 18.6 us
// with 0 against 0.56 us with `never` (wall time, 2 shared vCPUs). A
// service that allocates such blocks in scopes at a high rate may prefer
// a decay of some seconds.
#ifndef MEMWARD_ALLOC_ARENA_DECAY_H_
#define MEMWARD_ALLOC_ARENA_DECAY_H_

#include <stdint.h>

namespace memward::alloc {

// Returns the decay in milliseconds (-1 for never) of the arenas memward
// creates while `dirty_decay_ms` is in force for the automatic arenas: the
// shorter of it and `scope_decay_ms`, where -1 is longer than any time.
int64_t ScopeArenaDecay(int64_t dirty_decay_ms, int64_t scope_decay_ms);

// Sets `dirty_decay_ms` (-1 for never) on the automatic arenas, existing and
// new, and the matching ScopeArenaDecay on every arena memward created.
// Called by the pressure ladder and the admin server, outside malloc.
void SetDirtyDecayOfArenas(int64_t dirty_decay_ms);

// Returns the automatic arenas' decay in milliseconds (-1 for never): the
// last value SetDirtyDecayOfArenas set, else the `dirty_decay` setting.
int64_t DirtyDecayInForce();

// Sets the decay of arena `arena_index`, which memward has just created,
// from the decay now in force: the automatic arenas' one when
// `is_sampler_arena`, else ScopeArenaDecay. Called under g_arena_lock,
// outside malloc.
void ApplyNewArenaDecay(unsigned arena_index, bool is_sampler_arena);

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ARENA_DECAY_H_
