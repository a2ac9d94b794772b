// A thread-safe, byte-bounded LRU cache that gives memory back to memward
// under memory pressure.
//
//   memward::LruCache<std::string, std::string> cache(256 << 20);
//   cache.Register("completions");  // memward may now shrink it
//   cache.Put("key", "value");
//   std::optional<std::string> hit = cache.Get("key");
//
// Each entry is charged `charge(key, value)` bytes (by default the sizes of
// the key and value objects plus a fixed per-entry overhead, and the
// capacity of std::string and std::vector contents). Put evicts the least
// recently used entries while the total passes `max_bytes`; Reclaim, called
// by memward's warden thread, evicts until the requested bytes are freed.
// Header-only, over the C API: without memward, Register returns an error
// and the cache still works as a plain LRU cache.
#ifndef MEMWARD_LRU_CACHE_HPP_
#define MEMWARD_LRU_CACHE_HPP_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memward/memward.hpp"

namespace memward {

// The default charge of a cache entry's part, in bytes.
template <typename T>
std::size_t LruChargeOf(const T& value) {
  return sizeof(value);
}
inline std::size_t LruChargeOf(const std::string& value) {
  return sizeof(value) + (value.capacity() > 15 ? value.capacity() + 1 : 0);
}
template <typename T>
std::size_t LruChargeOf(const std::vector<T>& value) {
  return sizeof(value) + value.capacity() * sizeof(T);
}

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruCache : public Reclaimer {
 public:
  using ChargeFunction = std::function<std::size_t(const Key&, const Value&)>;

  // An estimate of the list node and hash node around each entry on 64-bit
  // libstdc++: two list pointers, the node's next pointer, the cached hash
  // and the iterator, rounded up to jemalloc's size classes.
  static constexpr std::size_t kEntryOverhead = 64;

  explicit LruCache(std::size_t max_bytes, ChargeFunction charge = nullptr)
      : max_bytes_(max_bytes), charge_(std::move(charge)) {}
  ~LruCache() override { Unregister(); }

  // Inserts or replaces `key`, makes it the most recently used entry and
  // evicts the least recently used entries while the cache is over max_bytes.
  void Put(const Key& key, Value value) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = index_.find(key);
    if (found != index_.end()) RemoveLocked(found->second);
    const std::size_t charge = ChargeOf(key, value);
    entries_.push_front(Entry{key, std::move(value), charge});
    index_[key] = entries_.begin();
    bytes_ += charge;
    EvictLocked(max_bytes_);
  }

  // Returns a copy of the value and marks it most recently used.
  std::optional<Value> Get(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) {
      misses_++;
      return std::nullopt;
    }
    hits_++;
    entries_.splice(entries_.begin(), entries_, found->second);
    return found->second->value;
  }

  bool Erase(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return false;
    RemoveLocked(found->second);
    return true;
  }

  std::size_t bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return bytes_;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return index_.size();
  }
  // Bytes evicted by Reclaim (memward's requests) since construction.
  std::uint64_t reclaimed_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return reclaimed_bytes_;
  }
  std::uint64_t hits() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return hits_;
  }
  std::uint64_t misses() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return misses_;
  }

  std::uint64_t ReclaimableBytes() override { return bytes(); }

  std::uint64_t Reclaim(std::uint64_t target_bytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t before = bytes_;
    const std::size_t keep = target_bytes >= bytes_ ? 0 : bytes_ - target_bytes;
    EvictLocked(keep);
    const std::uint64_t freed = before - bytes_;
    reclaimed_bytes_ += freed;
    return freed;
  }

 private:
  struct Entry {
    Key key;
    Value value;
    std::size_t charge;
  };
  using Iterator = typename std::list<Entry>::iterator;

  std::size_t ChargeOf(const Key& key, const Value& value) const {
    if (charge_) return charge_(key, value);
    return LruChargeOf(key) + LruChargeOf(value) + kEntryOverhead;
  }

  void RemoveLocked(Iterator entry) {
    bytes_ -= entry->charge;
    index_.erase(entry->key);
    entries_.erase(entry);
  }

  // Evicts from the least recently used end until bytes_ <= `keep_bytes`.
  void EvictLocked(std::size_t keep_bytes) {
    while (bytes_ > keep_bytes && !entries_.empty()) RemoveLocked(std::prev(entries_.end()));
  }

  const std::size_t max_bytes_;
  const ChargeFunction charge_;
  mutable std::mutex mutex_;  // guards everything below
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<Key, Iterator, Hash> index_;
  std::size_t bytes_ = 0;
  std::uint64_t reclaimed_bytes_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
};

}  // namespace memward

#endif  // MEMWARD_LRU_CACHE_HPP_
