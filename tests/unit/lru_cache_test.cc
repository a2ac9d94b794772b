// memward::LruCache: eviction order, the byte bound, Reclaim as memward's
// warden calls it, and registration as a reclaimer.
#include "memward/lru_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

// Every entry is charged 100 bytes, so the bounds are easy to follow.
std::size_t HundredBytes(const int&, const std::string&) { return 100; }

using Cache = memward::LruCache<int, std::string>;

TEST(LruCacheTest, EvictsLeastRecentlyUsedPastBound) {
  Cache cache(300, HundredBytes);
  cache.Put(1, "one");
  cache.Put(2, "two");
  cache.Put(3, "three");
  ASSERT_TRUE(cache.Get(1).has_value());  // 1 is now the most recently used
  cache.Put(4, "four");                   // evicts 2, the least recently used
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.bytes(), 300u);
  EXPECT_FALSE(cache.Get(2).has_value());
  EXPECT_EQ(cache.Get(1), std::optional<std::string>("one"));
  EXPECT_EQ(cache.Get(3), std::optional<std::string>("three"));
  EXPECT_EQ(cache.Get(4), std::optional<std::string>("four"));
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 4u);
}

TEST(LruCacheTest, ReplaceKeepsOneEntry) {
  Cache cache(1000, HundredBytes);
  cache.Put(7, "a");
  cache.Put(7, "b");
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), 100u);
  EXPECT_EQ(cache.Get(7), std::optional<std::string>("b"));
  EXPECT_TRUE(cache.Erase(7));
  EXPECT_FALSE(cache.Erase(7));
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(LruCacheTest, ReclaimEvictsOldestUntilTarget) {
  Cache cache(10000, HundredBytes);
  for (int key = 0; key < 10; key++) cache.Put(key, "v");
  EXPECT_EQ(cache.ReclaimableBytes(), 1000u);
  EXPECT_EQ(cache.Reclaim(250), 300u);  // whole entries: 0, 1 and 2
  EXPECT_FALSE(cache.Get(2).has_value());
  EXPECT_TRUE(cache.Get(3).has_value());
  EXPECT_EQ(cache.reclaimed_bytes(), 300u);
  EXPECT_EQ(cache.Reclaim(1 << 30), 700u);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Reclaim(100), 0u);
}

TEST(LruCacheTest, DefaultChargeCountsStringCapacity) {
  memward::LruCache<int, std::string> cache(1 << 20);
  cache.Put(1, std::string(1000, 'x'));
  EXPECT_GE(cache.bytes(), 1000u + sizeof(std::string));
}

TEST(LruCacheTest, RegistersOnceWithMemward) {
  Cache cache(1000, HundredBytes);
  ASSERT_TRUE(cache.Register("lru-test").ok());
  EXPECT_TRUE(cache.registered());
  EXPECT_EQ(cache.Register("lru-test").code(), MEMWARD_ERROR_INVALID);
  cache.Unregister();
  EXPECT_FALSE(cache.registered());
}

}  // namespace
