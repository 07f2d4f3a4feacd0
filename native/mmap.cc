#include "mmap.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>

namespace qvl {
namespace {
std::mutex g_mu;
std::map<uintptr_t, size_t> g_maps;  // live mappings: base → size
}  // namespace

bool map_file(const std::string& path, Mapping* m, std::string* err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    m->err = errno;
    *err = "cannot open " + path + ": " + strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    m->err = errno;
    *err = "cannot stat " + path + ": " + strerror(errno);
    close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    m->err = EINVAL;
    *err = "cannot map " + path + ": not a regular file";
    close(fd);
    return false;
  }
  m->size = size_t(st.st_size);
  if (m->size == 0) {
    close(fd);
    return true;
  }
  void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    m->err = e;
    *err = "cannot map " + path + ": " + strerror(e);
    return false;
  }
  m->base = p;
  std::lock_guard<std::mutex> lk(g_mu);
  g_maps[uintptr_t(p)] = m->size;
  return true;
}

void unmap(void* base, size_t size) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_maps.erase(uintptr_t(base));
  }
  munmap(base, size);
}

int64_t advise_dontneed(void* base, size_t size, int64_t off, int64_t len) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_maps.find(uintptr_t(base));
    if (it == g_maps.end() || it->second != size) return -1;
  }
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t s = uintptr_t(base) + uintptr_t(off), e = s + uintptr_t(len);
  s = (s + page - 1) & ~(page - 1);
  e &= ~(page - 1);
  if (e <= s) return 0;
  if (madvise((void*)s, e - s, MADV_DONTNEED) != 0) return 0;
  return int64_t(e - s);
}

bool is_mapped(const void* p, size_t len) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_maps.upper_bound(uintptr_t(p));
  if (it == g_maps.begin()) return false;
  --it;
  return uintptr_t(p) + len <= it->first + it->second;
}

int64_t advise_dontneed_at(const void* p, size_t len) {
  void* base = nullptr;
  size_t size = 0;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_maps.upper_bound(uintptr_t(p));  // the first mapping after p; the one before may hold it
    if (it == g_maps.begin()) return -1;
    --it;
    if (uintptr_t(p) + len > it->first + it->second) return -1;
    base = (void*)it->first;
    size = it->second;
  }
  return advise_dontneed(base, size, int64_t(uintptr_t(p) - uintptr_t(base)), int64_t(len));
}

void* map_pages(size_t bytes, size_t* mapped) {
  const size_t huge = size_t(2) << 20;
  const size_t len = (bytes + huge - 1) & ~(huge - 1);
  if (len == 0 || len < bytes) {
    errno = EINVAL;
    return nullptr;
  }
  // one huge page more than needed, then the unaligned slack at either end is given back
  void* raw = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t r = uintptr_t(raw), a = (r + huge - 1) & ~(huge - 1), end = r + len + huge;
  if (a > r) munmap(raw, a - r);
  if (end > a + len) munmap((void*)(a + len), end - (a + len));
#if defined(MADV_HUGEPAGE)
  madvise((void*)a, len, MADV_HUGEPAGE);
#endif
  *mapped = len;
  return (void*)a;
}

void unmap_pages(void* p, size_t mapped) { munmap(p, mapped); }

}  // namespace qvl
