// A binary's key hashes the templates its source includes, directly or
// through other templates, and no others: editing a header only a benchmark
// includes keeps every cached kernel.
#include <gtest/gtest.h>

#include <algorithm>

#include "backends/backend.hpp"
#include "generator/template_library.hpp"
#include "runtime/kernel_builder.hpp"
#include "samoyeds/error.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

// A wgmma_sp kernel as untuned dispatch compiles it: the grouped gated up
// projection of an 8-expert layer on sm_90a.
GeneratedKernel wgmma_sp_kernel() {
  KernelSpec s = test::mixtral_gated_up();
  s.backend = Backend::WgmmaSp;
  s.arch = "sm_90a";
  s.grouped = true;
  const KernelFamily& family = kernel_family(Backend::WgmmaSp);
  return family.generate(s, family.default_config(s, 4096, kReferenceSmCount));
}

// The embedded library with one template's text changed.
TemplateLibrary::Texts edited(const std::string& name) {
  TemplateLibrary::Texts texts = TemplateLibrary::embedded().texts();
  EXPECT_EQ(texts.count(name), 1u) << name << " is not in the library";
  texts[name] += "\n// edited\n";
  return texts;
}

bool holds(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(BinaryKey, InjectedCopyOfTheEmbeddedLibraryGivesTheSameKey) {
  const GeneratedKernel g = wgmma_sp_kernel();
  const TemplateLibrary copy(TemplateLibrary::embedded().texts());
  EXPECT_EQ(binary_key(g, "sm_90a", copy), binary_key(g, "sm_90a"));
}

TEST(BinaryKey, IgnoresTemplatesTheKernelDoesNotInclude) {
  const GeneratedKernel g = wgmma_sp_kernel();
  const std::vector<std::string> included = TemplateLibrary::embedded().included_by(g.source);
  const std::string base = binary_key(g, "sm_90a");
  // The benchmark's probe, the sm_80 MMA wrappers and the routing kernels.
  for (const char* other : {"samoyeds/ingress_probe.cuh", "samoyeds/mma_sp_sm80.cuh", "samoyeds/moe_routing.cuh"}) {
    ASSERT_FALSE(holds(included, other)) << other;
    const TemplateLibrary library(edited(other));
    EXPECT_EQ(binary_key(g, "sm_90a", library), base) << "editing " << other << " changed the key";
  }
}

TEST(BinaryKey, ChangesWhenAnIncludedTemplateChanges) {
  const GeneratedKernel g = wgmma_sp_kernel();
  const std::vector<std::string> included = TemplateLibrary::embedded().included_by(g.source);
  const std::string base = binary_key(g, "sm_90a");
  // Included by the source itself, and only through other templates.
  ASSERT_NE(g.source.find("#include \"samoyeds/ssmm_wgmma_ws.cuh\""), std::string::npos);
  ASSERT_EQ(g.source.find("#include \"samoyeds/row_select.cuh\""), std::string::npos);
  for (const char* name : {"samoyeds/ssmm_wgmma_ws.cuh", "samoyeds/row_select.cuh", "samoyeds/common.cuh"}) {
    ASSERT_TRUE(holds(included, name)) << name;
    const TemplateLibrary library(edited(name));
    EXPECT_NE(binary_key(g, "sm_90a", library), base) << "editing " << name << " kept the key";
  }
}

TEST(BinaryKey, AnIncludeTheLibraryLacksIsAnError) {
  GeneratedKernel g;
  g.kernel_name = "k";
  g.source = "#include \"samoyeds/common.cuh\"\n#include \"samoyeds/no_such_header.cuh\"\n"
             "extern \"C\" __global__ void k() {}\n";
  try {
    binary_key(g, "sm_90a");
    FAIL() << "an unknown include gave a key";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::CompileError);
    EXPECT_NE(std::string(e.what()).find("samoyeds/no_such_header.cuh"), std::string::npos) << e.what();
  }
  // Also where a template, not the source, names it.
  TemplateLibrary::Texts texts = TemplateLibrary::embedded().texts();
  texts["samoyeds/common.cuh"] += "\n#include <samoyeds/missing_too.cuh>\n";
  const TemplateLibrary library(std::move(texts));
  EXPECT_THROW(binary_key(wgmma_sp_kernel(), "sm_90a", library), Error);
}

TEST(BinaryKey, IncludeClosureFollowsTemplatesAndSkipsCommentedIncludes) {
  const TemplateLibrary library({{"samoyeds/a.cuh", "#pragma once\n#include \"samoyeds/b.cuh\"\n"},
                                 {"samoyeds/b.cuh", "  #  include \"samoyeds/c.cuh\"\n"},
                                 {"samoyeds/c.cuh", "// #include \"samoyeds/d.cuh\"\n"},
                                 {"samoyeds/d.cuh", ""}});
  EXPECT_EQ(library.included_by("#include \"samoyeds/a.cuh\"\n"),
            (std::vector<std::string>{"samoyeds/a.cuh", "samoyeds/b.cuh", "samoyeds/c.cuh"}));
  // The digest is remembered per include list; another source with the same
  // includes shares it, another include list does not.
  const std::string a = library.digest_of_included("#include \"samoyeds/a.cuh\"\nint x;\n");
  EXPECT_EQ(library.digest_of_included("#include \"samoyeds/a.cuh\"\nint y;\n"), a);
  EXPECT_NE(library.digest_of_included("#include \"samoyeds/d.cuh\"\n"), a);
}

}  // namespace
}  // namespace samoyeds
