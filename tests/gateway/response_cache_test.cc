// The gateway's response cache on its own: the byte bound, LRU order, the
// TTL and reclaiming for memward.
#include "response_cache.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace memward::gateway {
namespace {

std::shared_ptr<const CachedResponse> Body(std::size_t bytes) {
  return std::make_shared<CachedResponse>(CachedResponse{"application/json", std::string(bytes, 'x')});
}

CacheSettings Settings(std::uint64_t max_bytes, std::chrono::milliseconds ttl = std::chrono::minutes(5)) {
  CacheSettings settings;
  settings.max_bytes = max_bytes;
  settings.max_entry_bytes = max_bytes;
  settings.ttl = ttl;
  return settings;
}

TEST(ResponseCache, HitReturnsStoredBody) {
  ResponseCache cache(Settings(1 << 20));
  ASSERT_TRUE(cache.Insert("k", Body(100)));
  auto hit = cache.Lookup("k");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->body.size(), 100u);
  EXPECT_EQ(cache.Lookup("other"), nullptr);
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.entries, 1u);
}

TEST(ResponseCache, StaysUnderMaxBytesEvictingOldest) {
  ResponseCache cache(Settings(10000));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(cache.Insert("k" + std::to_string(i), Body(2000)));
  EXPECT_LE(cache.bytes(), 10000u);
  EXPECT_EQ(cache.Lookup("k0"), nullptr);
  EXPECT_NE(cache.Lookup("k9"), nullptr);
  EXPECT_GT(cache.stats().evictions, 0u);
}

TEST(ResponseCache, LookupRefreshesRecency) {
  ResponseCache cache(Settings(7000));
  ASSERT_TRUE(cache.Insert("a", Body(2000)));
  ASSERT_TRUE(cache.Insert("b", Body(2000)));
  ASSERT_NE(cache.Lookup("a"), nullptr);
  ASSERT_TRUE(cache.Insert("c", Body(2000)));
  ASSERT_TRUE(cache.Insert("d", Body(2000)));  // evicts b, the least recently used
  EXPECT_NE(cache.Lookup("a"), nullptr);
  EXPECT_EQ(cache.Lookup("b"), nullptr);
}

TEST(ResponseCache, RejectsEntryOverMaxEntryBytes) {
  CacheSettings settings = Settings(1 << 20);
  settings.max_entry_bytes = 1000;
  ResponseCache cache(settings);
  EXPECT_FALSE(cache.Insert("big", Body(1001)));
  EXPECT_TRUE(cache.Insert("small", Body(1000)));
  EXPECT_EQ(cache.stats().entries, 1u);
}

TEST(ResponseCache, ExpiredEntryIsMiss) {
  ResponseCache cache(Settings(1 << 20, std::chrono::milliseconds(50)));
  ASSERT_TRUE(cache.Insert("k", Body(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_EQ(cache.Lookup("k"), nullptr);
  EXPECT_EQ(cache.stats().expirations, 1u);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ResponseCache, ReclaimFreesAtLeastTarget) {
  ResponseCache cache(Settings(1 << 20));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(cache.Insert("k" + std::to_string(i), Body(1000)));
  std::uint64_t before = cache.bytes();
  std::uint64_t freed = cache.Reclaim(2500);
  EXPECT_GE(freed, 2500u);
  EXPECT_EQ(cache.bytes(), before - freed);
  EXPECT_EQ(cache.stats().reclaimed_bytes, freed);
  std::uint64_t rest = cache.Reclaim(1ULL << 40);
  EXPECT_EQ(rest, before - freed);
  EXPECT_EQ(cache.stats().reclaimed_bytes, before);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ResponseCache, ReclaimUnusedKeepsRecentlyRead) {
  ResponseCache cache(Settings(1 << 20));
  ASSERT_TRUE(cache.Insert("read", Body(1000)));
  ASSERT_TRUE(cache.Insert("unread", Body(1000)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_NE(cache.Lookup("read"), nullptr);
  std::uint64_t before = cache.bytes();

  std::uint64_t freed = cache.ReclaimUnused(std::chrono::milliseconds(100));

  EXPECT_GT(freed, 1000u);
  EXPECT_EQ(cache.bytes(), before - freed);
  EXPECT_EQ(cache.stats().unused_reclaimed_bytes, freed);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_NE(cache.Lookup("read"), nullptr);
  EXPECT_EQ(cache.Lookup("unread"), nullptr);
}

TEST(ResponseCache, ReclaimUnusedDropsExpired) {
  ResponseCache cache(Settings(1 << 20, std::chrono::milliseconds(50)));
  ASSERT_TRUE(cache.Insert("k", Body(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(80));

  EXPECT_GT(cache.ReclaimUnused(std::chrono::hours(1)), 0u);

  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.stats().expirations, 1u);
}

TEST(ResponseCache, HitSurvivesEviction) {
  ResponseCache cache(Settings(1 << 20));
  ASSERT_TRUE(cache.Insert("k", Body(500)));
  auto hit = cache.Lookup("k");
  cache.Reclaim(1ULL << 40);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->body, std::string(500, 'x'));
}

TEST(ResponseCache, ConcurrentUseKeepsBound) {
  ResponseCache cache(Settings(50000));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string key = "k" + std::to_string((t * 7 + i) % 300);
        if (cache.Lookup(key) == nullptr) cache.Insert(key, Body(100 + i % 900));
        if (i % 100 == 0) cache.Reclaim(5000);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_LE(cache.bytes(), 50000u);
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.hits + stats.misses, 8000u);
}

}  // namespace
}  // namespace memward::gateway
