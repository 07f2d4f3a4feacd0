// Read-only file mappings handed to JavaScript as external ArrayBuffers.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <string>

namespace qvl {

struct Mapping {
  void* base = nullptr;
  size_t size = 0;
  int err = 0;
};

/** Maps the whole file read-only (private); size 0 gives no mapping. False with *err set on failure. */
bool map_file(const std::string& path, Mapping* m, std::string* err);
void unmap(void* base, size_t size);
/**
 * Tells the kernel that bytes [off, off+len) of a mapping made by map_file are not needed now
 * (MADV_DONTNEED; the pages come back from the file if read again). Only whole pages inside
 * the range are released. Returns the bytes released, or −1 if `base` is not such a mapping.
 */
int64_t advise_dontneed(void* base, size_t size, int64_t off, int64_t len);
/** Whether bytes [p, p+len) lie in one map_file mapping. */
bool is_mapped(const void* p, size_t len);
/** advise_dontneed for bytes [p, p+len) wherever they lie in a map_file mapping; −1 if in none. */
int64_t advise_dontneed_at(const void* p, size_t len);

/**
 * Zero-filled anonymous memory of `bytes`, 2 MiB aligned, with transparent huge pages asked for
 * (MADV_HUGEPAGE: a request, honoured where THP is "madvise" or "always"); *mapped is what
 * unmap_pages must be given. Null on failure (errno set).
 */
void* map_pages(size_t bytes, size_t* mapped);
void unmap_pages(void* p, size_t mapped);

}  // namespace qvl
