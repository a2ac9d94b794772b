#include "accounting/cgroup_layout.h"

#include <stdlib.h>

namespace memward::accounting {
namespace {

// Splits `text` at the first `separator`; returns false when there is none.
bool SplitAt(std::string_view text, char separator, std::string_view* head,
             std::string_view* tail) {
  size_t at = text.find(separator);
  if (at == std::string_view::npos) return false;
  *head = text.substr(0, at);
  *tail = text.substr(at + 1);
  return true;
}

// Returns whether the comma-separated `list` contains `item` as a whole entry.
bool ListContains(std::string_view list, std::string_view item) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    if (entry == item) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// Decodes mountinfo's octal escapes ("\040" is a space, "\134" a backslash).
std::string DecodeMountField(std::string_view field) {
  std::string decoded;
  decoded.reserve(field.size());
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      std::string_view digits = field.substr(i + 1, 3);
      bool all_octal = true;
      for (char c : digits) all_octal = all_octal && c >= '0' && c <= '7';
      if (all_octal) {
        decoded.push_back(
            static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    decoded.push_back(field[i]);
  }
  return decoded;
}

// Splits a mountinfo line into its space-separated fields.
std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  while (!line.empty()) {
    size_t start = line.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    size_t end = line.find(' ');
    fields.push_back(line.substr(0, end));
    if (end == std::string_view::npos) break;
    line.remove_prefix(end);
  }
  return fields;
}

// Appends `part` to `path` with exactly one '/' between them; a part of ""
// or "/" appends nothing.
void AppendPathPart(std::string_view part, std::string* path) {
  while (!part.empty() && part.front() == '/') part.remove_prefix(1);
  while (!part.empty() && part.back() == '/') part.remove_suffix(1);
  if (part.empty()) return;
  if (path->empty() || path->back() != '/') path->push_back('/');
  path->append(part);
}

// Joins the prefix and a mount point into a directory ("/" + "/sys/fs/cgroup"
// is "/sys/fs/cgroup", "/tmp/tree/" + "/sys" is "/tmp/tree/sys").
std::string JoinUnderPrefix(std::string_view prefix, std::string_view mount_point) {
  std::string path(prefix);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty()) path = "/";
  AppendPathPart(mount_point, &path);
  return path;
}

// Picks the mount of the hierarchy that contains `cgroup_path`, preferring
// the one with the longest root (the most specific bind mount). Falls back to
// the first candidate when no root contains the path.
const CgroupMount* ChooseMount(const std::vector<const CgroupMount*>& candidates,
                               std::string_view cgroup_path) {
  const CgroupMount* best = nullptr;
  std::string ignored;
  for (const CgroupMount* mount : candidates) {
    if (!MapCgroupPath("/", *mount, cgroup_path, &ignored)) continue;
    if (best == nullptr || mount->root.size() > best->root.size()) best = mount;
  }
  if (best == nullptr && !candidates.empty()) best = candidates.front();
  return best;
}

// Removes the first line (without its newline) from `text` and returns it.
std::string_view TakeLine(std::string_view* text) {
  size_t newline = text->find('\n');
  std::string_view line = text->substr(0, newline);
  text->remove_prefix(newline == std::string_view::npos ? text->size() : newline + 1);
  return line;
}

}  // namespace

const ProcCgroupEntry* FindMemoryEntry(const std::vector<ProcCgroupEntry>& entries,
                                       CgroupVersion version) {
  for (const ProcCgroupEntry& entry : entries) {
    bool v2_line = entry.hierarchy_id == 0 && entry.controllers.empty();
    if (version == CgroupVersion::kV2 && v2_line) return &entry;
    if (version == CgroupVersion::kV1 && !v2_line && ListContains(entry.controllers, "memory")) {
      return &entry;
    }
  }
  return nullptr;
}

std::vector<ProcCgroupEntry> ParseProcCgroup(std::string_view text, int* malformed_lines) {
  std::vector<ProcCgroupEntry> entries;
  int malformed = 0;
  while (!text.empty()) {
    std::string_view line = TakeLine(&text);
    if (line.empty()) continue;

    // The path is everything after the second colon; it may contain colons.
    std::string_view id_text, rest, controllers, path;
    bool well_formed = SplitAt(line, ':', &id_text, &rest) &&
                       SplitAt(rest, ':', &controllers, &path) && !id_text.empty() &&
                       !path.empty() && path.front() == '/';
    int id = 0;
    for (char c : id_text) {
      if (c < '0' || c > '9' || id > 1000000) {
        well_formed = false;
        break;
      }
      id = id * 10 + (c - '0');
    }
    if (!well_formed) {
      malformed++;
      continue;
    }
    entries.push_back(ProcCgroupEntry{id, std::string(controllers), std::string(path)});
  }
  if (malformed_lines != nullptr) *malformed_lines = malformed;
  return entries;
}

std::vector<CgroupMount> ParseCgroupMounts(std::string_view text, int* malformed_lines) {
  std::vector<CgroupMount> mounts;
  int malformed = 0;
  while (!text.empty()) {
    std::string_view line = TakeLine(&text);
    if (line.empty()) continue;

    // "<id> <parent> <major:minor> <root> <mount point> <options> [optional
    // fields...] - <fs type> <source> <super options>"
    std::vector<std::string_view> fields = SplitFields(line);
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") separator++;
    if (fields.size() < 7 || separator + 1 >= fields.size()) {
      malformed++;
      continue;
    }
    std::string_view fs_type = fields[separator + 1];
    if (fs_type != "cgroup" && fs_type != "cgroup2") continue;

    CgroupMount mount;
    mount.v2 = fs_type == "cgroup2";
    mount.root = DecodeMountField(fields[3]);
    mount.mount_point = DecodeMountField(fields[4]);
    if (separator + 3 < fields.size()) mount.super_options = std::string(fields[separator + 3]);
    mounts.push_back(std::move(mount));
  }
  if (malformed_lines != nullptr) *malformed_lines = malformed;
  return mounts;
}

bool MapCgroupPath(std::string_view prefix, const CgroupMount& mount, std::string_view cgroup_path,
                   std::string* dir) {
  *dir = JoinUnderPrefix(prefix, mount.mount_point);
  std::string_view root = mount.root;
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);

  if (root == "/") {
    AppendPathPart(cgroup_path, dir);
    return true;
  }
  // A bind mount of a subtree: strip the subtree's path from the cgroup path.
  bool inside = cgroup_path.substr(0, root.size()) == root &&
                (cgroup_path.size() == root.size() || cgroup_path[root.size()] == '/');
  if (!inside) return false;
  AppendPathPart(cgroup_path.substr(root.size()), dir);
  return true;
}

bool ResolveCgroupLayout(std::string_view prefix, const std::vector<ProcCgroupEntry>& entries,
                         const std::vector<CgroupMount>& mounts, CgroupLayout* layout,
                         std::string* problem) {
  *layout = CgroupLayout();

  const ProcCgroupEntry* v1_memory = FindMemoryEntry(entries, CgroupVersion::kV1);
  const ProcCgroupEntry* v2_entry = FindMemoryEntry(entries, CgroupVersion::kV2);
  std::vector<const CgroupMount*> v1_mounts, v2_mounts;
  for (const CgroupMount& mount : mounts) {
    if (mount.v2) {
      v2_mounts.push_back(&mount);
    } else if (ListContains(mount.super_options, "memory")) {
      v1_mounts.push_back(&mount);
    }
  }

  const CgroupMount* v2_mount =
      v2_entry != nullptr ? ChooseMount(v2_mounts, v2_entry->path) : nullptr;
  std::string v2_dir;
  bool v2_mapped = v2_mount != nullptr && MapCgroupPath(prefix, *v2_mount, v2_entry->path, &v2_dir);
  if (v2_mount != nullptr && !v2_mapped && problem != nullptr) {
    *problem = "the cgroup2 mount's root " + v2_mount->root + " does not contain the cgroup " +
               v2_entry->path + " (a mount from outside the cgroup namespace)";
  }

  const CgroupMount* memory_mount =
      v1_memory != nullptr ? ChooseMount(v1_mounts, v1_memory->path) : nullptr;
  if (memory_mount != nullptr) {
    layout->memory_version = CgroupVersion::kV1;
    layout->memory_cgroup_path = v1_memory->path;
    layout->memory_mount_dir = JoinUnderPrefix(prefix, memory_mount->mount_point);
    if (!MapCgroupPath(prefix, *memory_mount, v1_memory->path, &layout->memory_dir) &&
        problem != nullptr) {
      *problem = "the memory mount's root " + memory_mount->root + " does not contain the cgroup " +
                 v1_memory->path + " (a mount from outside the cgroup namespace)";
    }
    layout->hybrid = v2_mount != nullptr;
    if (layout->hybrid) layout->pressure_dir = v2_dir;
    return true;
  }

  if (v2_mount != nullptr) {
    layout->memory_version = CgroupVersion::kV2;
    layout->memory_cgroup_path = v2_entry->path;
    layout->memory_mount_dir = JoinUnderPrefix(prefix, v2_mount->mount_point);
    layout->memory_dir = v2_dir;
    layout->pressure_dir = v2_dir;
    return true;
  }

  if (problem != nullptr) {
    if (v1_memory != nullptr) {
      *problem =
          "/proc/self/cgroup lists the memory controller but mountinfo has no cgroup "
          "mount with the memory option";
    } else if (v2_entry != nullptr) {
      *problem = "/proc/self/cgroup has a cgroup2 line but mountinfo has no cgroup2 mount";
    } else {
      *problem = "/proc/self/cgroup lists neither the memory controller nor a cgroup2 line";
    }
  }
  return false;
}

const char* CgroupVersionName(CgroupVersion version) {
  switch (version) {
    case CgroupVersion::kV1:
      return "v1";
    case CgroupVersion::kV2:
      return "v2";
    case CgroupVersion::kNone:
      break;
  }
  return "none";
}

}  // namespace memward::accounting
