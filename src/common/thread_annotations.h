// Clang's thread-safety attributes (-Wthread-safety) as macros: a mutex
// declares what it guards (GUARDED_BY) and functions what they need held
// (REQUIRES), and clang checks every access at compile time. They expand to
// nothing on other compilers. `make check-thread-safety` builds with them.
// See https://clang.llvm.org/docs/ThreadSafetyAnalysis.html.
#pragma once

#if defined(__clang__)
#define TERN_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define TERN_THREAD_ANNOTATION_(x)
#endif

// A class that is a lock (tern::Mutex); `x` names the kind in messages.
#define CAPABILITY(x) TERN_THREAD_ANNOTATION_(capability(x))
// An RAII class that holds a lock for its lifetime (tern::MutexLock).
#define SCOPED_CAPABILITY TERN_THREAD_ANNOTATION_(scoped_lockable)

// A data member that may only be touched with `x` held.
#define GUARDED_BY(x) TERN_THREAD_ANNOTATION_(guarded_by(x))
// A pointer member whose pointee may only be touched with `x` held.
#define PT_GUARDED_BY(x) TERN_THREAD_ANNOTATION_(pt_guarded_by(x))

// The caller must hold these (exclusively, or at least shared).
#define REQUIRES(...) TERN_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) \
  TERN_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
// The function takes / releases these (none named: the object itself).
#define ACQUIRE(...) TERN_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) \
  TERN_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) TERN_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) \
  TERN_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
// The caller must not hold these (the function takes them itself).
#define EXCLUDES(...) TERN_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
// Tells the analysis that the lock is held from here on (checked at run
// time or by construction, where the analysis cannot follow).
#define ASSERT_CAPABILITY(x) TERN_THREAD_ANNOTATION_(assert_capability(x))
// The function returns a reference to this lock.
#define RETURN_CAPABILITY(x) TERN_THREAD_ANNOTATION_(lock_returned(x))

// Turns the analysis off for one function; say why next to each use.
#define NO_THREAD_SAFETY_ANALYSIS \
  TERN_THREAD_ANNOTATION_(no_thread_safety_analysis)
