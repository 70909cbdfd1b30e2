// Layers only point down (docs/architecture.md): every #include of the tree
// is checked against the layer order, so an include that points up or
// sideways fails here, naming the file and line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// Bottom to top; a layer may include its own files and those of lower ones.
// cli and bench are both tops: neither includes the other.
const std::map<std::string, int> kRank = {
    {"core", 0},    {"format", 1}, {"templates", 2}, {"generator", 3}, {"backends", 4},
    {"cache", 5},   {"runtime", 6}, {"tuner", 7},    {"cli", 8},       {"bench", 8},
};

// The public headers (include/samoyeds/), each in the layer that implements it.
const std::map<std::string, std::string> kPublicHeader = {
    {"error.hpp", "core"},          {"environment.hpp", "core"},      {"device.hpp", "core"},
    {"dtype.hpp", "core"},          {"format.hpp", "format"},         {"reference.hpp", "format"},
    {"moe_reference.hpp", "format"}, {"moe_routing.hpp", "format"}, {"kernel_spec.hpp", "generator"}, {"loaded_kernel.hpp", "generator"},
    {"backends.hpp", "backends"},   {"tuning_record.hpp", "cache"}, {"config_selector.hpp", "runtime"}, {"kernel_runtime.hpp", "runtime"},
    {"expert_ops.hpp", "runtime"},  {"moe_layer.hpp", "runtime"},     {"moe_router.hpp", "runtime"},
    {"samoyeds.h", "runtime"},
    {"model_preset.hpp", "tuner"},
};

// The layer of a path relative to the source root ("runtime/x.cpp",
// "include/samoyeds/x.hpp"), or of an include as written ("samoyeds/x.cuh"
// is a template, "samoyeds/x.hpp" a public header); nullopt outside them.
std::optional<std::string> layer_of(const std::string& path) {
  const auto slash = path.find('/');
  if (slash == std::string::npos) return std::nullopt;
  std::string top = path.substr(0, slash), rest = path.substr(slash + 1);
  if (top == "include") {
    if (rest.rfind("samoyeds/", 0) != 0) return std::nullopt;
    top = "samoyeds";
    rest = rest.substr(9);
  }
  if (top == "samoyeds") {
    if (rest.size() > 4 && rest.compare(rest.size() - 4, 4, ".cuh") == 0) return "templates";
    const auto it = kPublicHeader.find(rest);
    if (it == kPublicHeader.end()) return "unknown public header " + rest;
    return it->second;
  }
  if (!kRank.count(top)) return std::nullopt;
  return top;
}

struct Include {
  std::string file;  // relative to the root
  int line;
  std::string target;
};

// The backend folder of a path ("backends/wgmma_sp/x.cpp" -> "wgmma_sp"),
// "" for the shared interface (backends/*.hpp) and anything else.
std::string backend_folder(const std::string& path) {
  if (path.rfind("backends/", 0) != 0) return "";
  const auto slash = path.find('/', 9);
  return slash == std::string::npos ? "" : path.substr(9, slash - 9);
}

// Why `inc` breaks the order, or nullopt where it does not. `exists`
// tells whether a path relative to the root is a file of the tree.
std::optional<std::string> violation(const Include& inc, bool (*exists)(const std::string&) = nullptr) {
  const auto from = layer_of(inc.file), to = layer_of(inc.target);
  const std::string where = inc.file + ":" + std::to_string(inc.line) + " includes " + inc.target;
  if (!from) return std::nullopt;
  if (!to) {  // a file of the tree outside the layers (tests/, examples/, ...) is never a dependency
    if (exists && exists(inc.target)) return where + ": outside the layers";
    return std::nullopt;
  }
  if (!kRank.count(*to)) return where + " (" + *to + ")";
  if (*from == *to) {
    // Backends are siblings: each keeps its config fields to its own folder.
    const std::string a = backend_folder(inc.file), b = backend_folder(inc.target);
    if (!b.empty() && a != b) return where + ": one backend's folder reaches into another's";
    return std::nullopt;
  }
  if (kRank.at(*to) > kRank.at(*from)) return where + ": " + *from + " points up to " + *to;
  if (kRank.at(*to) == kRank.at(*from)) return where + ": " + *from + " points sideways to " + *to;
  return std::nullopt;
}

std::vector<Include> includes_of_tree(const fs::path& root) {
  std::vector<Include> out;
  const std::regex include_line(R"(^\s*#\s*include\s*"([^"]+)\")");
  for (const std::string top : {"core", "format", "templates", "generator", "backends", "cache", "runtime", "tuner",
                                "cli", "bench", "include"}) {
    if (!fs::exists(root / top)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      if (!entry.is_regular_file()) continue;
      const std::string ext = entry.path().extension().string();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".cuh" && ext != ".h" && ext != ".inc") continue;
      std::ifstream in(entry.path());
      std::string text;
      int n = 0;
      const std::string rel = fs::relative(entry.path(), root).generic_string();
      while (std::getline(in, text)) {
        ++n;
        std::smatch m;
        if (std::regex_search(text, m, include_line)) out.push_back({rel, n, m[1].str()});
      }
    }
  }
  return out;
}

TEST(Layering, NoIncludePointsUpOrSideways) {
  const auto all = includes_of_tree(SAMOYEDS_SOURCE_DIR);
  ASSERT_GT(all.size(), 200u) << "the tree was not found at " << SAMOYEDS_SOURCE_DIR;
  std::string report;
  static const fs::path root = SAMOYEDS_SOURCE_DIR;
  const auto in_tree = [](const std::string& path) { return fs::is_regular_file(root / path); };
  for (const Include& inc : all)
    if (auto why = violation(inc, in_tree)) report += *why + "\n";
  EXPECT_TRUE(report.empty()) << report;
}

TEST(Layering, TheCheckCatchesUpwardSidewaysAndUnknownIncludes) {
  EXPECT_TRUE(violation({"core/device.cpp", 3, "runtime/kernel_builder.hpp"}));
  EXPECT_TRUE(violation({"generator/x.cpp", 1, "samoyeds/kernel_runtime.hpp"}));
  EXPECT_TRUE(violation({"cli/x.cpp", 1, "bench/ingress_probe_kernel.hpp"}));
  EXPECT_TRUE(violation({"format/x.cpp", 1, "samoyeds/no_such_header.hpp"}));
  EXPECT_TRUE(violation({"backends/mma_sp/x.cpp", 1, "backends/wgmma_sp/wgmma_sp_config.hpp"}));
  EXPECT_TRUE(violation({"runtime/x.cpp", 1, "tests/test_util/gpu_check.hpp"}, [](const std::string&) { return true; }));
  EXPECT_FALSE(violation({"backends/mma_sp/x.cpp", 1, "backends/launch_common.hpp"}));
  EXPECT_FALSE(violation({"runtime/x.cpp", 1, "backends/backend.hpp"}));
  EXPECT_FALSE(violation({"backends/wgmma_sp/x.cpp", 1, "templates/kernel_args.cuh"}));
  EXPECT_FALSE(violation({"templates/a.cuh", 1, "samoyeds/common.cuh"}));
  EXPECT_FALSE(violation({"include/samoyeds/moe_layer.hpp", 1, "samoyeds/expert_ops.hpp"}));
}

}  // namespace
