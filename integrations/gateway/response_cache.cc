#include "response_cache.h"

#include <cstdio>
#include <limits>

namespace memward::gateway {
namespace {

// Bookkeeping per entry on top of the key and body: the list node, the
// shared_ptr control block, the map node and bucket. An estimate, so that
// many small entries cannot exceed max_bytes by much.
constexpr std::uint64_t kEntryOverheadBytes = 256;

std::uint64_t ChargedBytes(const std::string& key, const CachedResponse& response) {
  return key.size() + response.body.size() + response.content_type.size() + kEntryOverheadBytes;
}

std::uint64_t CountReclaimable(void* context) {
  return static_cast<ResponseCache*>(context)->bytes();
}

std::uint64_t ReclaimBytes(void* context, std::uint64_t target_bytes) {
  return static_cast<ResponseCache*>(context)->Reclaim(target_bytes);
}

}  // namespace

ResponseCache::ResponseCache(const CacheSettings& settings) : settings_(settings) {}

ResponseCache::~ResponseCache() {
  // After unregistering, memward makes no further call, so the callbacks
  // never see a destroyed cache.
  if (registered_) memward_reclaimer_unregister(reclaimer_id_);
}

bool ResponseCache::RegisterReclaimer() {
  memward_reclaimer reclaimer{};
  reclaimer.name = "gateway-response-cache";
  reclaimer.priority = 0;
  reclaimer.context = this;
  reclaimer.count = CountReclaimable;
  reclaimer.reclaim = ReclaimBytes;
  int status = memward_reclaimer_register(&reclaimer, &reclaimer_id_);
  if (status != MEMWARD_OK) {
    // With memward loaded, NOT_LOADED means this memward lacks reclaimers.
    const char* reason = status == MEMWARD_ERROR_NOT_LOADED && memward_version() != nullptr
                             ? "this memward has no memward_reclaimer_register"
                             : memward_strerror(status);
    std::fprintf(stderr,
                 "memward-gateway: the response cache is not registered as a memward reclaimer: "
                 "%s; it stays bounded by cache.max_bytes only\n",
                 reason);
    return false;
  }
  registered_ = true;
  return true;
}

std::shared_ptr<const CachedResponse> ResponseCache::Lookup(const std::string& key) {
  std::list<Entry> released;
  std::shared_ptr<const CachedResponse> result;
  {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    Lru::iterator entry = found->second;
    if (Clock::now() >= entry->expires) {
      ++stats_.expirations;
      ++stats_.misses;
      EraseLocked(entry, released);
    } else {
      ++stats_.hits;
      entry->last_used = Clock::now();
      lru_.splice(lru_.begin(), lru_, entry);
      result = entry->response;
    }
  }
  return result;
}

bool ResponseCache::Insert(std::string key, std::shared_ptr<const CachedResponse> response) {
  if (!enabled()) return false;
  std::uint64_t charged = ChargedBytes(key, *response);
  if (response->body.size() > settings_.max_entry_bytes || charged > settings_.max_bytes) {
    return false;
  }
  // The list node is built before the lock to keep the critical section short.
  std::list<Entry> fresh;
  const Clock::time_point now = Clock::now();
  fresh.push_back(Entry{std::move(key), std::move(response), now + settings_.ttl, now, charged});
  std::list<Entry> released;
  {
    std::lock_guard lock(mutex_);
    auto found = index_.find(fresh.front().key);
    if (found != index_.end()) EraseLocked(found->second, released);
    if (bytes_ + charged > settings_.max_bytes) {
      EvictLocked(bytes_ + charged - settings_.max_bytes, released);
    }
    lru_.splice(lru_.begin(), fresh, fresh.begin());
    index_.emplace(lru_.front().key, lru_.begin());
    bytes_ += charged;
    ++stats_.inserts;
  }
  return true;
}

std::uint64_t ResponseCache::Reclaim(std::uint64_t target_bytes) {
  std::list<Entry> released;
  std::uint64_t freed = 0;
  {
    std::lock_guard lock(mutex_);
    std::uint64_t before = bytes_;
    EvictLocked(target_bytes, released);
    freed = before - bytes_;
    stats_.reclaimed_bytes += freed;
  }
  return freed;
}

std::uint64_t ResponseCache::ReclaimUnused(Clock::duration unused_for) {
  std::list<Entry> released;
  std::uint64_t freed = 0;
  {
    std::lock_guard lock(mutex_);
    const Clock::time_point now = Clock::now();
    // The list is ordered by last use, so the unused entries are its tail.
    while (!lru_.empty() && now - lru_.back().last_used >= unused_for) {
      freed += lru_.back().charged_bytes;
      EraseLocked(std::prev(lru_.end()), released);
    }
    // An entry can expire before it becomes unused when ttl < unused_for.
    freed += EraseExpiredLocked(now, std::numeric_limits<std::uint64_t>::max(), released);
    stats_.unused_reclaimed_bytes += freed;
  }
  return freed;
}

std::uint64_t ResponseCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

CacheStats ResponseCache::stats() const {
  std::lock_guard lock(mutex_);
  CacheStats stats = stats_;
  stats.bytes = bytes_;
  stats.entries = lru_.size();
  return stats;
}

void ResponseCache::EraseLocked(Lru::iterator entry, std::list<Entry>& released) {
  index_.erase(std::string_view(entry->key));
  bytes_ -= entry->charged_bytes;
  released.splice(released.end(), lru_, entry);
}

std::uint64_t ResponseCache::EraseExpiredLocked(Clock::time_point now, std::uint64_t target_bytes,
                                                std::list<Entry>& released) {
  std::uint64_t freed = 0;
  for (auto entry = lru_.begin(); entry != lru_.end() && freed < target_bytes;) {
    auto next = std::next(entry);
    if (now >= entry->expires) {
      freed += entry->charged_bytes;
      ++stats_.expirations;
      EraseLocked(entry, released);
    }
    entry = next;
  }
  return freed;
}

void ResponseCache::EvictLocked(std::uint64_t target_bytes, std::list<Entry>& released) {
  // Expired entries go first, wherever they sit in the LRU order.
  std::uint64_t freed = EraseExpiredLocked(Clock::now(), target_bytes, released);
  while (freed < target_bytes && !lru_.empty()) {
    freed += lru_.back().charged_bytes;
    ++stats_.evictions;
    EraseLocked(std::prev(lru_.end()), released);
  }
}

}  // namespace memward::gateway
