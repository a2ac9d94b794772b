// MutexLock: holds a pthread mutex for the lifetime of a scope.
//
// memward's locks are plain pthread mutexes with static initialisers, so
// that they work before any constructor has run and can be taken and reset
// by the fork handlers. Locking allocates nothing, so code inside malloc may
// use it.
#ifndef MEMWARD_BASE_MUTEX_LOCK_H_
#define MEMWARD_BASE_MUTEX_LOCK_H_

#include <pthread.h>

namespace memward::base {

class MutexLock {
 public:
  explicit MutexLock(pthread_mutex_t* mutex) : mutex_(mutex) { pthread_mutex_lock(mutex_); }
  ~MutexLock() { pthread_mutex_unlock(mutex_); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  pthread_mutex_t* mutex_;
};

}  // namespace memward::base

#endif  // MEMWARD_BASE_MUTEX_LOCK_H_
