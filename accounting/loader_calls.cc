#include "accounting/loader_calls.h"

#include <pthread.h>

namespace memward::accounting {
namespace {

constinit pthread_mutex_t g_loader_call_lock = PTHREAD_MUTEX_INITIALIZER;

}  // namespace

LoaderCallLock::LoaderCallLock() { pthread_mutex_lock(&g_loader_call_lock); }

LoaderCallLock::~LoaderCallLock() { pthread_mutex_unlock(&g_loader_call_lock); }

void LockLoaderCallsForFork() { pthread_mutex_lock(&g_loader_call_lock); }

void UnlockLoaderCallsAfterFork() { pthread_mutex_unlock(&g_loader_call_lock); }

}  // namespace memward::accounting
